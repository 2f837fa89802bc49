//! From `train`'s settings as given ([`TrainSettings`]: flags over a run file) to the run
//! ([`TrainConfig`]): the one place where defaults are decided — the task's freezing rate,
//! learning rate and batch size, the variant's compression and score, the one-run default's
//! budget mode, the baselines' storage and optimizer state. The command line, the main job,
//! `cargo xtask` and the tests all build their runs here.

use slimfit_data::assets::{DINOV2_SMALL, MINILM_L6_V2};
use slimfit_models::{Compression, LoraConfig};

use crate::measure::OptimizerStatePolicy;
use crate::run_config::{RunConfigError, TrainSettings, budget_from_report};
use crate::task::{IMAGE_HEAD_WARMUP, Task, glue_dir_from_env};
use crate::train::{
    Checkpointing, ImageOptions, LisaOptions, MemoryBudget, PolicyKind, TrainConfig, TrainError,
    Variant,
};

/// Why settings do not make a run.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A setting is missing, out of range, or does not apply.
    #[error("{0}")]
    Invalid(String),
    /// The model could not be found or fetched.
    #[error(transparent)]
    Asset(#[from] slimfit_data::assets::AssetError),
    /// `--memory-budget-of`: the report gives no budget.
    #[error(transparent)]
    Budget(#[from] RunConfigError),
    /// The resolved run is invalid.
    #[error(transparent)]
    Train(#[from] TrainError),
}

impl TrainSettings {
    /// The run these settings describe, defaults filled in ([`resolve_settings`]).
    pub fn resolve(self) -> Result<TrainConfig, ResolveError> {
        resolve_settings(self)
    }
}

/// `train`'s settings (command line over run file) with the defaults filled in: the task's
/// freezing rate, learning rate and batch size, the variant's compression and score, and
/// `train --help`'s for the rest; the model directory resolved (fetched when absent).
///
/// With none of `--policy`, `--freeze-rate`, `--memory-budget(-of)` or `--variant paper`,
/// the run is the one-run default: ILS in budget mode under
/// [`MemoryBudget::one_run_default`], Adam moments of frozen units dropped, and for image
/// tasks (a new head on a backbone) a head warm-up of [`IMAGE_HEAD_WARMUP`].
fn resolve_settings(s: TrainSettings) -> Result<TrainConfig, ResolveError> {
    let task = s.task.ok_or_else(|| {
        ResolveError::Invalid(
            "--task is required (on the command line or as `task` in the --config file)".into(),
        )
    })?;
    let one_run_default = s.policy.is_none()
        && s.freeze_rate.is_none()
        && s.memory_budget.is_none()
        && s.memory_budget_of.is_none()
        && s.variant != Some(Variant::Paper);
    let policy = s.policy.unwrap_or(PolicyKind::Ils);
    let lisa = lisa_options(policy, &s)?;
    let lora = lora_config(policy, &s)?;
    let variant = s.variant.unwrap_or(Variant::Default);
    let (default_rate, default_lr, default_batch) = task.defaults();
    let (default_compression, default_score) = variant.defaults();
    let image = if task.is_image() {
        Some(ImageOptions {
            image_size: s.image_size.unwrap_or(ImageOptions::default().image_size),
            augment: !s.no_augment,
        })
    } else if s.image_size.is_some() || s.no_augment {
        return Err(ResolveError::Invalid(format!(
            "--image-size and --no-augment apply to image tasks, not to {task}"
        )));
    } else {
        None
    };
    let config = TrainConfig {
        task,
        data_dir: match task {
            Task::Glue(_) => s.data_dir.or_else(glue_dir_from_env),
            Task::SpamAssassin | Task::Image(_) => s.data_dir,
        },
        model: if task.is_image() {
            DINOV2_SMALL.resolve(s.model.as_deref())?
        } else {
            MINILM_L6_V2.resolve(s.model.as_deref())?
        },
        policy,
        lisa,
        lora,
        activation_checkpointing: s.activation_checkpointing,
        freeze_rate: if policy.uses_freeze_rate() {
            s.freeze_rate.unwrap_or(default_rate)
        } else {
            0.0
        },
        variant,
        // The baselines keep activations as they are, as published.
        compression: s.compression.unwrap_or(if policy.uses_freeze_rate() {
            default_compression
        } else {
            Compression::Exact
        }),
        score: s.score.unwrap_or_else(|| default_score.to_string()),
        epochs: s.epochs.unwrap_or(3),
        batch: s.batch.unwrap_or(default_batch),
        grad_accum: s.grad_accum.unwrap_or(1),
        head_warmup: s
            .head_warmup
            .unwrap_or(if one_run_default && task.is_image() {
                IMAGE_HEAD_WARMUP
            } else {
                0.0
            }),
        lr: s.lr.unwrap_or(default_lr),
        warmup: s.warmup.unwrap_or(0.0),
        max_len: s.max_len.unwrap_or(128),
        seed: s.seed.unwrap_or(42),
        max_train_examples: s.max_train_examples,
        max_dev_examples: s.max_dev_examples,
        // LISA as its authors run it (LMFlow) keeps no Adam state for inactive layers.
        optimizer_state: s.optimizer_state.unwrap_or(
            if one_run_default || policy == PolicyKind::Lisa {
                OptimizerStatePolicy::Drop
            } else {
                OptimizerStatePolicy::Keep
            },
        ),
        memory_budget: match (&s.memory_budget_of, s.memory_budget) {
            (Some(report), _) => MemoryBudget::Bytes(budget_from_report(report)?),
            (None, Some(bytes)) => MemoryBudget::Bytes(bytes),
            (None, None) if one_run_default => MemoryBudget::one_run_default(),
            (None, None) => MemoryBudget::Off,
        },
        output: s.output,
        checkpoints: Checkpointing {
            every: s.checkpoint_every,
            dir: s.checkpoint_dir,
            resume: s.resume,
        },
        image,
    };
    config.validate()?;
    Ok(config)
}

/// LISA's sampling for `--policy lisa` (the flags over LMFlow's defaults); `None` for the
/// other policies, which the flags do not apply to.
fn lisa_options(
    policy: PolicyKind,
    s: &TrainSettings,
) -> Result<Option<LisaOptions>, ResolveError> {
    if policy != PolicyKind::Lisa {
        if s.lisa_layers.is_some() || s.lisa_interval.is_some() {
            return Err(ResolveError::Invalid(
                "--lisa-layers and --lisa-interval apply to --policy lisa only".into(),
            ));
        }
        return Ok(None);
    }
    let defaults = LisaOptions::default();
    Ok(Some(LisaOptions {
        layers: s.lisa_layers.unwrap_or(defaults.layers),
        interval: s.lisa_interval.unwrap_or(defaults.interval),
    }))
}

/// The adapters of `--policy lora` (the flags over PEFT's defaults); `None` for the other
/// policies, which the flags do not apply to.
fn lora_config(policy: PolicyKind, s: &TrainSettings) -> Result<Option<LoraConfig>, ResolveError> {
    let given = s.lora_rank.is_some()
        || s.lora_alpha.is_some()
        || s.lora_dropout.is_some()
        || s.lora_targets.is_some();
    if policy != PolicyKind::Lora {
        if given {
            return Err(ResolveError::Invalid(
                "--lora-rank, --lora-alpha, --lora-dropout and --lora-targets apply to --policy \
                 lora only"
                    .into(),
            ));
        }
        return Ok(None);
    }
    let defaults = LoraConfig::default();
    let config = LoraConfig {
        rank: s.lora_rank.unwrap_or(defaults.rank),
        alpha: s.lora_alpha.unwrap_or(defaults.alpha),
        dropout: s.lora_dropout.unwrap_or(defaults.dropout),
        targets: s.lora_targets.clone().unwrap_or(defaults.targets),
    };
    config
        .validate()
        .map_err(|e| ResolveError::Invalid(format!("--policy lora: {e}")))?;
    Ok(Some(config))
}
