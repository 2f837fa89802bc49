//! BERT WordPiece tokenization with the `tokenizers` crate.

use std::path::{Path, PathBuf};

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::utils::truncation::truncate_encodings;
use tokenizers::{
    Encoding, PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

/// Smallest `max_len` that leaves room for one token of each sentence of a pair beside
/// `[CLS]` and two `[SEP]`.
const MIN_MAX_LEN: usize = 5;

/// Errors of tokenizer construction and encoding.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A tokenizer file could not be read or parsed.
    #[error("cannot load tokenizer from {path}: {reason}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Neither `tokenizer.json` nor `vocab.txt` exists in a checkpoint directory.
    #[error("{dir} has neither tokenizer.json nor vocab.txt")]
    NoTokenizer {
        /// The directory.
        dir: PathBuf,
    },
    /// `max_len` is out of range.
    #[error("max_len {max_len} is out of range: it must be at least {MIN_MAX_LEN}")]
    MaxLen {
        /// The rejected value.
        max_len: usize,
    },
    /// The tokenizer failed on an input.
    #[error("cannot encode {text:?}: {reason}")]
    Encode {
        /// The start of the offending text.
        text: String,
        /// What went wrong.
        reason: String,
    },
}

/// One encoded sequence (or sentence pair): `[CLS] a [SEP] (b [SEP])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// WordPiece ids including special tokens.
    pub input_ids: Vec<u32>,
    /// 0 for `[CLS] a [SEP]`, 1 for `b [SEP]`.
    pub token_type_ids: Vec<u32>,
}

/// A BERT WordPiece tokenizer that truncates (longest-first) to `max_len` and never pads:
/// padding is per batch ([`crate::PaddedBatch`]).
#[derive(Clone)]
pub struct WordPieceTokenizer {
    inner: Tokenizer,
    /// `inner` without truncation: each sentence of a pair is encoded whole with it, then
    /// truncated ([`WordPieceTokenizer::encode`]).
    untruncated: Tokenizer,
    max_len: usize,
    pad_id: u32,
}

impl std::fmt::Debug for WordPieceTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordPieceTokenizer")
            .field("max_len", &self.max_len)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

impl WordPieceTokenizer {
    /// From a checkpoint directory: `tokenizer.json` when present, else `vocab.txt` (with
    /// lower-casing as `tokenizer_config.json` says, default on).
    pub fn from_dir(dir: impl AsRef<Path>, max_len: usize) -> Result<Self, TokenizerError> {
        let dir = dir.as_ref();
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        if json.is_file() {
            Self::from_tokenizer_json(json, max_len)
        } else if vocab.is_file() {
            Self::from_vocab(vocab, lowercase_setting(dir), max_len)
        } else {
            Err(TokenizerError::NoTokenizer {
                dir: dir.to_path_buf(),
            })
        }
    }

    /// From a Hugging Face `tokenizer.json`. Its own truncation and padding settings are
    /// replaced: truncation to `max_len`, no padding.
    pub fn from_tokenizer_json(
        path: impl AsRef<Path>,
        max_len: usize,
    ) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let inner = Tokenizer::from_file(path).map_err(|e| TokenizerError::Load {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::configure(inner, path, max_len)
    }

    /// From a BERT `vocab.txt` (one token per line), as `BertTokenizer` builds it.
    pub fn from_vocab(
        path: impl AsRef<Path>,
        lowercase: bool,
        max_len: usize,
    ) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let load_err = |reason: String| TokenizerError::Load {
            path: path.to_path_buf(),
            reason,
        };
        let path_str = path
            .to_str()
            .ok_or_else(|| load_err("path is not UTF-8".into()))?;
        let model = WordPiece::from_file(path_str)
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| load_err(e.to_string()))?;
        let special = |token: &str| {
            tokenizers::Model::token_to_id(&model, token)
                .ok_or_else(|| load_err(format!("vocabulary lacks {token}")))
        };
        let (cls, sep) = (special("[CLS]")?, special("[SEP]")?);
        let mut inner = Tokenizer::new(model);
        inner
            .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(BertProcessing::new(
                ("[SEP]".into(), sep),
                ("[CLS]".into(), cls),
            )));
        Self::configure(inner, path, max_len)
    }

    fn configure(
        mut inner: Tokenizer,
        path: &Path,
        max_len: usize,
    ) -> Result<Self, TokenizerError> {
        if max_len < MIN_MAX_LEN {
            return Err(TokenizerError::MaxLen { max_len });
        }
        let mut untruncated = inner.clone();
        untruncated
            .with_truncation(None)
            .map_err(|e| TokenizerError::Load {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        untruncated.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| TokenizerError::Load {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        inner.with_padding(None);
        let pad_id = inner.token_to_id("[PAD]").unwrap_or(0);
        Ok(Self {
            inner,
            untruncated,
            max_len,
            pad_id,
        })
    }

    /// Encodes one sentence, or a sentence pair when `pair` is given.
    pub fn encode(&self, text: &str, pair: Option<&str>) -> Result<Encoded, TokenizerError> {
        let result = match pair {
            Some(b) => self.encode_pair(text, b),
            None => self.inner.encode(text, true),
        };
        let encoding = result.map_err(|e| TokenizerError::Encode {
            text: text.chars().take(60).collect(),
            reason: e.to_string(),
        })?;
        Ok(Encoded {
            input_ids: encoding.get_ids().to_vec(),
            token_type_ids: encoding.get_type_ids().to_vec(),
        })
    }

    /// A sentence pair, as `tokenizers` encodes it (each sentence alone, longest-first
    /// truncation, then `[CLS] a [SEP] b [SEP]`) but in time linear in the input: its own
    /// pair path combines every overflowing piece of one sentence with every piece of the
    /// other (38 s for a pair of 20 000-word sentences). The pieces are dropped here before
    /// the two are joined; the ids and type ids are the same (tested).
    fn encode_pair(&self, a: &str, b: &str) -> tokenizers::Result<Encoding> {
        let first = self.untruncated.encode(a, false)?;
        let mut second = self.untruncated.encode(b, false)?;
        second.set_type_ids(vec![1; second.len()]);
        second.set_sequence_id(1);
        let added = self
            .inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true));
        let params = TruncationParams {
            max_length: self.max_len.saturating_sub(added),
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        };
        let (mut first, second) = truncate_encodings(first, Some(second), &params)?;
        let mut second = second.expect("a pair stays a pair");
        first.take_overflowing();
        second.take_overflowing();
        self.inner.post_process(first, Some(second), true)
    }

    /// The id used for padding (`[PAD]`).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The truncation length, special tokens included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Size of the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// `do_lower_case` from `tokenizer_config.json` next to the vocabulary; BERT's default (true)
/// when the file or field is absent.
fn lowercase_setting(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("do_lower_case").and_then(|b| b.as_bool()))
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDS: [&str; 14] = [
        "the",
        "man",
        "is",
        "playing",
        "guitar",
        "music",
        "someone",
        "plays",
        ".",
        ",",
        "!",
        "zyzzyva",
        "unknownish",
        "a",
    ];

    fn tokenizer(max_len: usize) -> (tempfile::TempDir, WordPieceTokenizer) {
        let dir = tempfile::tempdir().unwrap();
        let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nman\nis\nplay\n##ing\n##s\n\
                     guitar\nmusic\nsome\n##one\n.\n,\n!\na\n";
        std::fs::write(dir.path().join("vocab.txt"), vocab).unwrap();
        let t = WordPieceTokenizer::from_vocab(dir.path().join("vocab.txt"), true, max_len);
        (dir, t.unwrap())
    }

    /// A sentence of `n` words drawn from [`WORDS`] by `state`.
    fn sentence(n: usize, state: &mut u64) -> String {
        (0..n)
            .map(|_| {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                WORDS[(*state % WORDS.len() as u64) as usize]
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `count` random pairs of up to `words` words each encode as the `tokenizers` pair
    /// path encodes them: the same ids and type ids.
    fn assert_pairs_match(t: &WordPieceTokenizer, count: usize, words: u64, state: &mut u64) {
        for _ in 0..count {
            let (na, nb) = ((*state % words) as usize, ((*state >> 8) % words) as usize);
            let (a, b) = (sentence(na, state), sentence(nb, state));
            let ours = t.encode(&a, Some(&b)).unwrap();
            let reference = t.inner.encode((a.as_str(), b.as_str()), true).unwrap();
            let context = format!("max_len {}: {a:?} / {b:?}", t.max_len);
            assert_eq!(ours.input_ids, reference.get_ids(), "{context}");
            assert_eq!(ours.token_type_ids, reference.get_type_ids(), "{context}");
        }
    }

    #[test]
    fn pairs_encode_as_the_tokenizers_pair_path_does() {
        let mut state = 0x2545_f491_4f6c_dd1d;
        for max_len in [5, 6, 16, 17, 64] {
            let (_dir, t) = tokenizer(max_len);
            assert_pairs_match(&t, 150, 40, &mut state);
        }
    }

    /// MiniLM's `tokenizer.json` (a template post-processor), where the cache has it.
    #[test]
    fn pairs_encode_as_the_pair_path_with_minilms_tokenizer_json() {
        let dir = crate::assets::MINILM_L6_V2.cache_dir();
        if !dir.join("tokenizer.json").is_file() {
            eprintln!("SKIPPED: {} has no tokenizer.json", dir.display());
            return;
        }
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for max_len in [7, 128] {
            let t = WordPieceTokenizer::from_dir(&dir, max_len).unwrap();
            assert_pairs_match(&t, 100, 90, &mut state);
        }
    }

    #[test]
    fn a_very_long_pair_is_truncated_to_max_len() {
        // 20 000 words each: minutes through the tokenizers pair path, a fraction of a
        // second here (docs/BENCHMARKS.md).
        let (_dir, t) = tokenizer(128);
        let mut state = 7;
        let (a, b) = (sentence(20_000, &mut state), sentence(20_000, &mut state));
        let e = t.encode(&a, Some(&b)).unwrap();
        assert_eq!(e.input_ids.len(), 128);
        // Both sentences are longer than the 125 tokens left: 62 and 63 tokens, the longer
        // sentence keeping the odd one; the second's [SEP] is type 1 too.
        let second = e.token_type_ids.iter().filter(|&&x| x == 1).count();
        assert!(second == 63 || second == 64, "{second}");
    }
}
