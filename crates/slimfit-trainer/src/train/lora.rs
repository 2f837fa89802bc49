//! The LoRA baseline in the trainer: adapters attached to the loaded encoder with every
//! base parameter frozen, and folded back into the weights for `--output`.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use slimfit_models::{BertModel, LoraConfig, SlimOps};

use super::TrainError;

/// `encoder` with fresh adapters on `config`'s targets. Every parameter the encoder had
/// (weights, biases, LayerNorm β) stops training, as PEFT's `bias = "none"`; the adapters
/// are units the policy trains, and the task head, outside the encoder, trains as a whole.
pub(super) fn attach<B: AutodiffBackend + SlimOps>(
    encoder: BertModel<B>,
    config: &LoraConfig,
) -> Result<BertModel<B>, TrainError> {
    encoder
        .map(&mut Frozen)
        .with_lora(config)
        .map_err(|e| TrainError::Invalid(format!("--policy lora: {e}")))
}

/// Sets `require_grad` off on every parameter.
struct Frozen;

impl<B: Backend> ModuleMapper<B> for Frozen {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.set_require_grad(false)
    }
}
