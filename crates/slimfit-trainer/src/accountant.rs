//! The bridge from the models' description to the memory accountant (`plan`, budget mode).
//!
//! slimfit-memory knows nothing of burn or the models: this module describes a
//! [`BertConfig`] as an [`EncoderShape`] and maps the trainer's storage and optimizer-state
//! choices onto the accountant's.

use slimfit_memory::{
    ActivationStorage, Bytes, EncoderShape, OptimizerState, Plan, PlanError, PlanRequest, plan,
};
use slimfit_models::{BertConfig, Compression};

use crate::measure::OptimizerStatePolicy;

/// Live bytes of the `slimfit-trainer` process before any model exists (CLI, rayon's and
/// flex's thread pools, tokenizer tables are not loaded yet): measured with the counting
/// allocator as `resident − weights − moments` of `measure-step` (6.17 MiB on every shape
/// tried). On CUDA the pool holds only tensors, so the overhead is zero there.
pub const CPU_RUNTIME_OVERHEAD: Bytes = Bytes(6_470_000);

/// The runtime overhead of this build's backend.
pub fn runtime_overhead() -> Bytes {
    if cfg!(feature = "cuda") {
        Bytes::ZERO
    } else {
        CPU_RUNTIME_OVERHEAD
    }
}

/// The accountant's view of a BERT with a `num_labels` classification head.
pub fn encoder_shape(config: &BertConfig, num_labels: usize) -> EncoderShape {
    EncoderShape {
        hidden: config.hidden_size,
        heads: config.num_attention_heads,
        intermediate: config.intermediate_size,
        layers: config.num_hidden_layers,
        vocab: config.vocab_size,
        max_positions: config.max_position_embeddings,
        token_types: config.type_vocab_size,
        num_labels,
    }
}

/// The accountant's storage mode for a uniform compression.
pub fn storage(compression: Compression) -> ActivationStorage {
    match compression {
        Compression::Exact => ActivationStorage::Exact,
        Compression::Paper => ActivationStorage::Paper,
        Compression::Scaled => ActivationStorage::Scaled,
    }
}

/// The accountant's optimizer-state policy.
pub fn optimizer_state(policy: OptimizerStatePolicy) -> OptimizerState {
    match policy {
        OptimizerStatePolicy::Keep => OptimizerState::Keep,
        OptimizerStatePolicy::Drop => OptimizerState::Drop,
    }
}

/// The plan of exactly the step `measure-step` measures for the same arguments (2 labels,
/// the lowest `floor(rate · units)` units frozen).
pub fn plan_measured_step(
    config: &BertConfig,
    batch: usize,
    seq: usize,
    rate: f64,
    compression: Compression,
    policy: OptimizerStatePolicy,
) -> Result<Plan, PlanError> {
    let mut request = PlanRequest::with_freeze_rate(
        encoder_shape(config, 2),
        batch,
        seq,
        storage(compression),
        optimizer_state(policy),
        rate,
    );
    request.runtime_overhead = runtime_overhead();
    plan(&request)
}
