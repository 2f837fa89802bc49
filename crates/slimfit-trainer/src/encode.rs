//! Sentence encoding with a pretrained BERT: the `encode` subcommand's engine.

use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use serde::{Deserialize, Serialize};
use slimfit_data::{PaddedBatch, TokenizerError, WordPieceTokenizer};
use slimfit_models::{BertConfig, BertInput, BertModel, CheckpointDir, LoadError, SlimOps};

/// One input line: a sentence, or a sentence pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodeRequest {
    /// The (first) sentence.
    pub text: String,
    /// The optional second sentence (token type 1).
    #[serde(default)]
    pub text_pair: Option<String>,
}

/// One output line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodeResponse {
    /// WordPiece ids with special tokens, after truncation.
    pub input_ids: Vec<u32>,
    /// Segment ids.
    pub token_type_ids: Vec<u32>,
    /// Last hidden state at position 0 (`[CLS]`).
    pub cls: Vec<f32>,
    /// Mean of the last hidden state over real (unpadded) tokens.
    pub mean: Vec<f32>,
    /// Pooler output, `tanh(W h_[CLS] + b)`.
    pub pooled: Vec<f32>,
}

/// Errors of the encoder.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The checkpoint could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The tokenizer could not be built or failed on an input.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// `max_len` exceeds what the model's position table can hold.
    #[error("max_len {max_len} exceeds the model's max_position_embeddings ({limit})")]
    TooLong {
        /// Requested truncation length.
        max_len: usize,
        /// The model's limit.
        limit: usize,
    },
    /// The tokenizer and the model do not fit together, or an input needs what the model
    /// lacks.
    #[error("{0}")]
    Mismatch(String),
    /// A line of input is not a request.
    #[error("stdin line {line}: expected {{\"text\": ..., \"text_pair\": ...}}: {reason}")]
    Request {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// The request on input line `line` (1-based) of `encode`: `None` for a blank line.
pub fn parse_request(line: usize, text: &str) -> Result<Option<EncodeRequest>, EncodeError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str::<EncodeRequest>(text)
        .map(Some)
        .map_err(|e| EncodeError::Request {
            line,
            reason: e.to_string(),
        })
}

/// Checks that every id `tokenizer` can produce has a row in the model's word table.
pub fn check_tokenizer(
    tokenizer: &WordPieceTokenizer,
    config: &BertConfig,
    dir: &Path,
) -> Result<(), EncodeError> {
    if tokenizer.vocab_size() > config.vocab_size {
        return Err(EncodeError::Mismatch(format!(
            "the tokenizer in {} has {} tokens but the model's vocab_size is {}: ids above it \
             have no embedding (a tokenizer from another model?)",
            dir.display(),
            tokenizer.vocab_size(),
            config.vocab_size
        )));
    }
    Ok(())
}

/// Checks that the model can tell the two sentences of a pair apart (a token-type table of
/// at least two rows).
pub fn check_pairs(config: &BertConfig) -> Result<(), EncodeError> {
    if config.type_vocab_size < 2 {
        return Err(EncodeError::Mismatch(format!(
            "sentence pairs need token types 0 and 1, but the model's type_vocab_size is {}",
            config.type_vocab_size
        )));
    }
    Ok(())
}

/// A pretrained BERT encoder with its tokenizer.
#[derive(Debug)]
pub struct Encoder<B: SlimOps> {
    model: BertModel<B>,
    config: BertConfig,
    tokenizer: WordPieceTokenizer,
    device: B::Device,
}

impl<B: SlimOps> Encoder<B> {
    /// Loads `config.json`, `model.safetensors` (with pooler) and the tokenizer from `dir`.
    pub fn load(dir: &Path, max_len: usize, device: &B::Device) -> Result<Self, EncodeError> {
        let checkpoint = CheckpointDir::new(dir);
        let config = checkpoint.config()?;
        if max_len > config.max_position_embeddings {
            return Err(EncodeError::TooLong {
                max_len,
                limit: config.max_position_embeddings,
            });
        }
        let mut weights = checkpoint.weights::<B>(device)?;
        let model = BertModel::load(&mut weights, &config, true)?;
        weights.finish()?;
        let tokenizer = WordPieceTokenizer::from_dir(dir, max_len)?;
        check_tokenizer(&tokenizer, &config, dir)?;
        Ok(Self {
            model,
            config,
            tokenizer,
            device: device.clone(),
        })
    }

    /// Encodes a batch of requests together (dynamic padding to the longest).
    pub fn encode(&self, requests: &[EncodeRequest]) -> Result<Vec<EncodeResponse>, EncodeError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        if requests.iter().any(|r| r.text_pair.is_some()) {
            check_pairs(&self.config)?;
        }
        let encoded = requests
            .iter()
            .map(|r| self.tokenizer.encode(&r.text, r.text_pair.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        let batch = PaddedBatch::new(&encoded, self.tokenizer.pad_id());
        let input = batch_to_input::<B>(&batch, &self.device);
        let mask = input.attention_mask.clone();
        let output = self.model.forward(input);
        let hidden = output.last_hidden_state;
        let [n, seq_len, width] = hidden.dims();

        let mask = mask.float().unsqueeze_dim::<3>(2);
        let summed = (hidden.clone() * mask.clone())
            .sum_dim(1)
            .reshape([n, width]);
        let counts = mask.sum_dim(1).reshape([n, 1]);
        let mean = summed / counts;
        let cls = hidden.slice([0..n, 0..1]).reshape([n, width]);
        let pooled = output.pooled.expect("encoder is built with a pooler");
        debug_assert!(seq_len > 0);

        let rows = |t: Tensor<B, 2>| -> Vec<Vec<f32>> {
            let values = t
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .expect("f32 data");
            values.chunks(width).map(<[f32]>::to_vec).collect()
        };
        let (cls, mean, pooled) = (rows(cls), rows(mean), rows(pooled));
        Ok(encoded
            .into_iter()
            .zip(cls.into_iter().zip(mean).zip(pooled))
            .map(|(e, ((cls, mean), pooled))| EncodeResponse {
                input_ids: e.input_ids,
                token_type_ids: e.token_type_ids,
                cls,
                mean,
                pooled,
            })
            .collect())
    }

    /// The tokenizer in use.
    pub fn tokenizer(&self) -> &WordPieceTokenizer {
        &self.tokenizer
    }
}

/// Moves a padded batch onto `device` as model input.
pub fn batch_to_input<B: Backend>(batch: &PaddedBatch, device: &B::Device) -> BertInput<B> {
    let shape = [batch.batch_size, batch.seq_len];
    let tensor = |values: &[i64]| {
        Tensor::<B, 2, Int>::from_data(TensorData::new(values.to_vec(), shape), device)
    };
    BertInput {
        input_ids: tensor(&batch.input_ids),
        token_type_ids: tensor(&batch.token_type_ids),
        attention_mask: tensor(&batch.attention_mask),
    }
}
