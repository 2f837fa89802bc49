//! # slimfit-models
//!
//! Transformer models in [burn](https://burn.dev) that load Hugging Face checkpoints and give
//! PyTorch's numbers, built for SlimFit's per-tensor freezing: every weight tensor (each Q, K,
//! V, attention-output, FFN1, FFN2 weight, every LayerNorm γ, each embedding table) is a
//! separate, named field.
//!
//! - [`BertModel`] and its task heads: Hugging Face `BertModel` (post-LN).
//! - [`ViTModel`] and [`ViTForImageClassification`]: Hugging Face `ViTModel` and
//!   `Dinov2Model` (pre-LN, DINOv2 layer scale) from one [`ViTConfig`], with bicubic
//!   position-embedding interpolation to any image size; checked against onnxruntime on a
//!   real DINOv2-S/14 backbone.
//! - [`save_bert_classifier`] and [`save_vit_classifier`]: fine-tuned task models back to
//!   Hugging Face checkpoints, named by the loader's own names.
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
mod lora;
mod pretrained;
mod saver;
pub mod slim;
pub mod staged_dir;
mod units;
mod vit;

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
pub use lora::{LoraAdapter, LoraConfig, LoraError, LoraTarget};
pub use pretrained::CheckpointDir;
pub use saver::{
    HeadLabels, IMAGE_PROCESSOR_FILES, SaveError, SavedCheckpoint, TOKENIZER_FILES,
    save_bert_classifier, save_vit_classifier,
};
pub use slim::{Compression, CompressionConfig, SlimOps};
pub use units::{HasUnits, Unit, UnitKind, UnitList};
pub use vit::{
    ViTConfig, ViTEmbeddings, ViTForImageClassification, ViTLayer, ViTModel, ViTOutput, ViTVariant,
    bicubic_resize_matrix,
};
