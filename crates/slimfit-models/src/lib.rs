//! # slimfit-models
//!
//! Transformer models in [burn](https://burn.dev) that load Hugging Face checkpoints and give
//! PyTorch's numbers, built for SlimFit's per-tensor freezing: every weight tensor (each Q, K,
//! V, attention-output, FFN1, FFN2 weight, every LayerNorm γ, each embedding table) is a
//! separate, named field.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use slimfit_models::{BertModel, CheckpointDir};
//!
//! # fn main() -> Result<(), slimfit_models::LoadError> {
//! let device = Default::default();
//! let ckpt = CheckpointDir::new("all-MiniLM-L6-v2");
//! let config = ckpt.config()?;
//! let model: BertModel<Flex> = BertModel::load(&mut ckpt.weights(&device)?, &config, true)?;
//! # Ok(()) }
//! ```
//!
//! The crate is backend-generic (`B: Backend`); choosing a backend is the application's job.

mod bert;
mod config;
mod dense;
mod heads;
mod layer_norm;
mod loader;
mod pretrained;
pub mod slim;
mod units;

pub use bert::{
    BertEmbeddings, BertInput, BertLayer, BertModel, BertOutput, BertResidualOutput,
    BertSelfAttention,
};
pub use config::BertConfig;
pub use dense::Dense;
pub use heads::{
    BertForQuestionAnswering, BertForSequenceClassification, SequenceTask, SpanLogits,
};
pub use layer_norm::LayerNorm;
pub use loader::{Init, InitSource, LoadError, ParamSource, SafetensorsSource};
pub use pretrained::CheckpointDir;
pub use slim::{Compression, CompressionConfig, SlimOps};
pub use units::{HasUnits, Unit, UnitKind, UnitList};
