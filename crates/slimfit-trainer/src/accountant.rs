//! The bridge from the models' description to the memory accountant (`plan`, budget mode).
//!
//! slimfit-memory knows nothing of burn or the models: this module describes a
//! [`BertConfig`] as an [`EncoderShape`] and maps the trainer's storage and optimizer-state
//! choices onto the accountant's.

use slimfit_memory::{
    ActivationStorage, Bytes, EncoderShape, Family, OptimizerState, Plan, PlanError, PlanRequest,
    plan,
};
use slimfit_models::{BertConfig, Compression};

use crate::measure::OptimizerStatePolicy;

/// Live bytes of the `slimfit-trainer` process before any model exists (CLI, rayon's and
/// flex's thread pools, tokenizer tables are not loaded yet): measured with the counting
/// allocator as `resident − weights − moments` of `measure-step` (6.17 MiB on every shape
/// tried on the machine it was measured on; 1.8 MiB on another 2-core machine — it depends
/// on the machine, so `plan` may overstate by a few MiB; budget mode measures it instead).
/// On CUDA the pool holds only tensors, so the overhead is zero there.
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
        num_labels,
        hidden_dropout: config.hidden_dropout_prob > 0.0,
        attention_dropout: config.attention_probs_dropout_prob > 0.0,
        family: Family::Bert {
            vocab: config.vocab_size,
            max_positions: config.max_position_embeddings,
            token_types: config.type_vocab_size,
        },
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
    plan_shape_step(
        encoder_shape(config, 2),
        batch,
        seq,
        rate,
        compression,
        policy,
    )
}

/// [`plan_measured_step`] for any shape (`seq` = tokens: for ViT, class token + patches).
pub fn plan_shape_step(
    shape: EncoderShape,
    batch: usize,
    seq: usize,
    rate: f64,
    compression: Compression,
    policy: OptimizerStatePolicy,
) -> Result<Plan, PlanError> {
    let mut request = PlanRequest::with_freeze_rate(
        shape,
        batch,
        seq,
        storage(compression),
        optimizer_state(policy),
        rate,
    );
    request.runtime_overhead = runtime_overhead();
    plan(&request)
}

/// What `plan` prints: the requested SlimFit setting beside full fine-tuning.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanComparison {
    /// Model name as given.
    pub model_config: String,
    /// Sequences per batch.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Predicted peak of the SlimFit setting (the setting asked for).
    pub total_peak_bytes: Bytes,
    /// Its categories.
    pub categories: slimfit_memory::Categories,
    /// Freezing rate of the setting (given, or derived from the budget).
    pub freeze_rate: f64,
    /// The budget, when one was given.
    pub memory_budget: Option<Bytes>,
    /// The full plan of the setting.
    pub slimfit: Plan,
    /// Full fine-tuning: nothing frozen, exact storage, same optimizer policy.
    pub full_fine_tuning: Plan,
    /// `slimfit / full` peak.
    pub ratio: f64,
}

/// How the SlimFit side of a `plan` is chosen.
#[derive(Debug, Clone, Copy)]
pub enum Setting {
    /// Freeze the lowest `floor(r · units)` units.
    FreezeRate(f64),
    /// Train as many units as fit (worst case over which ones).
    Budget(Bytes),
}

/// Plans `setting` and full fine-tuning for the same shape.
pub fn compare_plans(
    model_config: &str,
    shape: &EncoderShape,
    batch: usize,
    seq: usize,
    setting: Setting,
    compression: Compression,
    policy: OptimizerStatePolicy,
) -> Result<PlanComparison, PlanError> {
    let step =
        |rate, compression| plan_shape_step(shape.clone(), batch, seq, rate, compression, policy);
    let full = step(0.0, Compression::Exact)?;
    let (slimfit, freeze_rate, memory_budget) = match setting {
        Setting::FreezeRate(rate) => {
            if !(0.0..1.0).contains(&rate) {
                return Err(PlanError::Invalid(format!(
                    "--freeze-rate must lie in [0, 1), got {rate}"
                )));
            }
            (step(rate, compression)?, rate, None)
        }
        Setting::Budget(budget) => {
            let mut request = PlanRequest::with_freeze_rate(
                shape.clone(),
                batch,
                seq,
                storage(compression),
                optimizer_state(policy),
                0.0,
            );
            request.runtime_overhead = runtime_overhead();
            let fit = slimfit_memory::fit_budget(&request, budget)?;
            let t = fit.worst_case.total_units;
            let rate = (t - fit.trainable_units) as f64 / t as f64;
            (fit.worst_case, rate, Some(budget))
        }
    };
    Ok(PlanComparison {
        model_config: model_config.to_string(),
        batch,
        seq,
        total_peak_bytes: slimfit.total_peak_bytes,
        categories: slimfit.categories,
        freeze_rate,
        memory_budget,
        ratio: slimfit.total_peak_bytes.as_f64() / full.total_peak_bytes.as_f64(),
        slimfit,
        full_fine_tuning: full,
    })
}

/// Budget mode: the most units that may train per step within `budget`.
pub fn fit_to_budget(
    config: &BertConfig,
    num_labels: usize,
    batch: usize,
    seq: usize,
    compression: Compression,
    policy: OptimizerStatePolicy,
    budget: Bytes,
) -> Result<slimfit_memory::BudgetFit, PlanError> {
    let mut request = PlanRequest::with_freeze_rate(
        encoder_shape(config, num_labels),
        batch,
        seq,
        storage(compression),
        optimizer_state(policy),
        0.0,
    );
    request.runtime_overhead = runtime_overhead();
    slimfit_memory::fit_budget(&request, budget)
}

/// The comparison as a table.
pub fn render(c: &PlanComparison, compression: Compression) -> String {
    use std::fmt::Write;
    let (s, f) = (&c.slimfit, &c.full_fine_tuning);
    let slim_title = format!(
        "SlimFit ({compression}, {}/{} frozen)",
        s.total_units - s.trainable_units,
        s.total_units
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} · batch {} × {} tokens · fp32 · predicted peak of one training step",
        c.model_config, c.batch, c.seq
    );
    if let Some(budget) = c.memory_budget {
        let _ = writeln!(
            out,
            "memory budget {budget}: {} of {} units may train per step (freeze rate {:.3}); \
             the SlimFit column is the costliest such choice",
            s.trainable_units, s.total_units, c.freeze_rate
        );
    }
    let _ = writeln!(
        out,
        "{:<22} {:>18} {:>34}",
        "", "full fine-tuning", slim_title
    );
    for ((name, full), (_, slim)) in f.categories.named().iter().zip(s.categories.named()) {
        let _ = writeln!(
            out,
            "{:<22} {:>18} {:>34}",
            name.replace('_', " "),
            full.to_string(),
            slim.to_string()
        );
    }
    let _ = writeln!(
        out,
        "{:<22} {:>18} {:>34}",
        "runtime",
        f.runtime_overhead.to_string(),
        s.runtime_overhead.to_string()
    );
    let _ = writeln!(
        out,
        "{:<22} {:>18} {:>34}",
        "total peak",
        f.total_peak_bytes.to_string(),
        s.total_peak_bytes.to_string()
    );
    let _ = writeln!(
        out,
        "{:<22} {:>18} {:>34}",
        "peak during",
        phase(f.peak_phase),
        phase(s.peak_phase)
    );
    let _ = writeln!(
        out,
        "SlimFit / full fine-tuning: {:.3} (saves {})",
        c.ratio,
        f.total_peak_bytes.saturating_sub(s.total_peak_bytes)
    );
    out
}

fn phase(p: slimfit_memory::PeakPhase) -> String {
    use slimfit_memory::PeakPhase::*;
    match p {
        Forward => "forward".into(),
        Backward(l) => format!("backward, layer {l}"),
        Embeddings => "backward, embeddings".into(),
        Update => "optimizer update".into(),
    }
}

/// The accountant's view of a ViT / DINOv2 with a `num_labels` classifier.
pub fn vit_shape(config: &slimfit_models::ViTConfig, num_labels: usize) -> EncoderShape {
    EncoderShape {
        hidden: config.hidden_size,
        heads: config.num_attention_heads,
        intermediate: config.intermediate_size,
        layers: config.num_hidden_layers,
        num_labels,
        hidden_dropout: config.hidden_dropout_prob > 0.0,
        attention_dropout: config.attention_probs_dropout_prob > 0.0,
        family: Family::Vit {
            image_size: config.image_size,
            patch_size: config.patch_size,
            channels: config.num_channels,
            dinov2: config.model_type == slimfit_models::ViTVariant::Dinov2,
        },
    }
}

/// A model for `plan`: a named BERT or ViT, or a Hugging Face config.json of either
/// (`model_type` "bert", "vit" or "dinov2"), with the default labels of its family.
pub fn plan_shape(spec: &str) -> Result<EncoderShape, slimfit_models::LoadError> {
    use slimfit_models::ViTConfig;
    let vit = match spec {
        "vit-base-16-224" => Some(ViTConfig::vit_base_16_224()),
        "vit-base-16-384" => Some(ViTConfig::vit_base_16_384()),
        "dinov2-small-14" => Some(ViTConfig::dinov2_small_14()),
        _ => None,
    };
    if let Some(config) = vit {
        return Ok(vit_shape(&config, 1000));
    }
    let path = std::path::Path::new(spec);
    let file = if path.is_dir() {
        path.join("config.json")
    } else {
        path.to_path_buf()
    };
    if file.is_file() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let model_type = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("model_type")?.as_str().map(str::to_owned));
        if matches!(model_type.as_deref(), Some("vit" | "dinov2")) {
            return Ok(vit_shape(&ViTConfig::from_json_file(&file)?, 1000));
        }
    }
    Ok(encoder_shape(
        &crate::model_config::resolve_model_config(spec)?,
        2,
    ))
}

/// The accountant's plan of one optimizer step of `config` for `shape` at `seq` tokens (the
/// widest batch), with `overhead` besides the weights: the step as that policy trains it, in
/// its costliest form —
/// - full fine-tuning: every unit; head-only: the pooler and classifier; LISA: the units
///   outside the encoder layers and γ whole layers; LoRA: the head and the adapted matrices
///   of every layer, as adapters ([`PlanRequest::adapter_rank`]);
/// - a freezing rate: the lowest `floor(rate · units)` frozen (as `measure-step`);
/// - budget mode with a byte budget: the most units that fit it, worst case.
///
/// Under gradient accumulation `config.batch` is one micro-batch, as the trainer runs it.
/// Head-only is planned as such ([`PlanRequest::head_only`]: no encoder activation kept).
/// The policies whose
/// frozen units never train (LISA, head-only, LoRA) are planned without moments for those
/// units whatever `config.optimizer_state` says: none ever exist. The one-run default's
/// rule (resolved only against a run's measured overhead) is refused.
pub fn plan_run(
    config: &crate::train::TrainConfig,
    shape: EncoderShape,
    seq: usize,
    overhead: Bytes,
) -> Result<Plan, PlanError> {
    use crate::memory_target::MemoryBudget;
    use crate::train::PolicyKind;
    let units = shape.units();
    let mut request = PlanRequest::with_freeze_rate(
        shape,
        config.batch,
        seq,
        storage(config.compression),
        optimizer_state(config.optimizer_state),
        config.freeze_rate,
    );
    request.runtime_overhead = overhead;
    request.score_snapshots = config.policy == PolicyKind::Ils;
    request.accumulated_gradients = config.grad_accum > 1;
    request.recompute_layers = config.activation_checkpointing || config.policy == PolicyKind::Head;
    let never_trained = matches!(
        config.policy,
        PolicyKind::Lisa | PolicyKind::Head | PolicyKind::Lora
    );
    if never_trained {
        request.optimizer_state = OptimizerState::Drop;
    }
    match config.policy {
        PolicyKind::Full => request.trainable = vec![true; units.len()],
        PolicyKind::Head => request.trainable = units.iter().map(|u| is_head(u.role)).collect(),
        PolicyKind::Lisa => {
            let gamma = config.lisa.unwrap_or_default().layers;
            request.trainable = units
                .iter()
                .map(|u| u.layer.is_none_or(|l| l < gamma))
                .collect();
        }
        PolicyKind::Lora => {
            let lora = config.lora.clone().unwrap_or_default();
            request.adapter_rank = Some(lora.rank);
            request.trainable = units
                .iter()
                .map(|u| {
                    is_head(u.role)
                        || (u.layer.is_some() && lora.targets.iter().any(|t| adapts(*t, u.role)))
                })
                .collect();
        }
        PolicyKind::Ils | PolicyKind::StaticPrefix | PolicyKind::Random => {}
    }
    match config.memory_budget {
        MemoryBudget::Off => plan(&request),
        MemoryBudget::Bytes(budget) => Ok(slimfit_memory::fit_budget(&request, budget)?.worst_case),
        MemoryBudget::Auto { .. } => Err(PlanError::Invalid(
            "the one-run default's memory target is resolved by the run itself".into(),
        )),
    }
}

/// The task head's units (the trainer's `UnitKind::Head`).
fn is_head(role: slimfit_memory::UnitRole) -> bool {
    use slimfit_memory::UnitRole as R;
    matches!(role, R::Pooler | R::Classifier)
}

/// Whether a LoRA target adapts a unit of `role`.
fn adapts(target: slimfit_models::LoraTarget, role: slimfit_memory::UnitRole) -> bool {
    use slimfit_memory::UnitRole as R;
    use slimfit_models::LoraTarget as T;
    matches!(
        (target, role),
        (T::Query, R::Query)
            | (T::Key, R::Key)
            | (T::Value, R::Value)
            | (T::AttentionOutput, R::AttentionOutput)
            | (T::Ffn1, R::Ffn1)
            | (T::Ffn2, R::Ffn2)
    )
}
