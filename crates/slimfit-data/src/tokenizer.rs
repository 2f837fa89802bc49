//! BERT WordPiece tokenization with the `tokenizers` crate.

use std::path::{Path, PathBuf};

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

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
            max_len,
            pad_id,
        })
    }

    /// Encodes one sentence, or a sentence pair when `pair` is given.
    pub fn encode(&self, text: &str, pair: Option<&str>) -> Result<Encoded, TokenizerError> {
        let result = match pair {
            Some(b) => self.inner.encode((text, b), true),
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
