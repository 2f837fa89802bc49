//! `train`: SlimFit fine-tuning of a pretrained BERT on a GLUE task or SpamAssassin, or of
//! a pretrained ViT / DINOv2 on an image-classification set ([`Task`]).
//!
//! Per step: the freezing policy picks the trainable units from their training-dynamics
//! scores; frozen units get no gradient, no optimizer update, and (with the SlimFit ops) no
//! saved input; after the AdamW step, the scores of the units that trained are updated from
//! their values before and after the step (only those units are copied).
//!
//! With gradient accumulation ([`TrainConfig::grad_accum`] = N), an optimizer step is N
//! micro-batches of [`TrainConfig::batch`] examples: each micro-batch's loss is scaled by
//! 1/N and back-propagated, the gradients are summed ([`step_gradients`]), and the frozen
//! set, the scores and the learning-rate schedule advance once per optimizer step.
//!
//! The loop ([`run_slimfit`]) knows nothing of text or images: it runs over a [`Workload`]
//! — a model made of units, the batches of an epoch, the loss of a batch and the dev
//! evaluation. [`TextWorkload`] (BERT on token ids) and [`ImageWorkload`] (ViT on pixels)
//! are the two this crate has.
//!
//! One concept per file: [`config`] (what a run is), [`report`] (what it reports),
//! [`budget`] (budget mode), [`schedule`] (policy, scores, optimizer settings),
//! [`run_loop`] (the loop), [`text`] and [`images`] (the two workloads).

use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use slimfit_dynamics::ScoreFormula;
use slimfit_memory::{Bytes, counting};
use slimfit_models::SlimOps;
use slimfit_scheduler::FreezeRate;

use crate::task::{Task, TaskDataError};

mod budget;
pub mod config;
mod images;
mod lora;
mod params;
mod recompute;
pub mod report;
mod resume;
pub mod run_loop;
pub mod schedule;
mod text;

use images::train_images;
use text::train_text;

pub use crate::memory_target::{BudgetOrigin, MemoryBudget, PlannedPeaks, planned_peaks};
pub use config::{
    Checkpointing, DEFAULT_IMAGE_SIZE, ImageOptions, LisaOptions, PolicyKind, TrainConfig, Variant,
    task_defaults,
};
pub use images::ImageWorkload;
pub use report::{BudgetReport, EpochMetrics, TrainReport};
pub use run_loop::{LoopOutcome, StepContext, Workload, step_gradients};
pub use schedule::{Schedule, decays};
pub use text::TextWorkload;

/// Errors of `train`.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading the data failed.
    #[error(transparent)]
    Data(#[from] TaskDataError),
    /// Tokenizing failed.
    #[error(transparent)]
    Tokenizer(#[from] slimfit_data::TokenizerError),
    /// Loading the checkpoint failed.
    #[error(transparent)]
    Load(#[from] slimfit_models::LoadError),
    /// Transforming images failed.
    #[error(transparent)]
    Image(#[from] slimfit_data::ImageError),
    /// Saving the fine-tuned model (`output`) failed.
    #[error(transparent)]
    Save(#[from] slimfit_models::SaveError),
    /// A step's loss, or the weights after its update, were NaN or infinite: the run stopped
    /// and nothing was saved.
    #[error(
        "training diverged at step {step} of {total}: {reason}. The run stopped and saved \
         nothing; try a lower --lr"
    )]
    Diverged {
        /// The 1-based optimizer step.
        step: usize,
        /// Optimizer steps of the run.
        total: usize,
        /// What was not finite.
        reason: String,
    },
    /// An argument is out of range.
    #[error("{0}")]
    Invalid(String),
    /// Writing or reading a resumable checkpoint failed.
    #[error("resumable checkpoint {0}")]
    Checkpoint(String),
}

/// Fine-tunes and evaluates; `progress` is called after every step with
/// `(step, total, loss, frozen units)`. Text tasks fine-tune a BERT checkpoint
/// (`config.model`), image tasks a ViT / DINOv2 checkpoint.
pub fn train<B>(
    config: TrainConfig,
    device: &B::Device,
    mut progress: impl FnMut(usize, usize, f32, usize),
) -> Result<TrainReport, TrainError>
where
    B: AutodiffBackend + SlimOps,
    B::InnerBackend: SlimOps,
{
    let start = Instant::now();
    counting::reset_peak();
    config.validate()?;
    let rate =
        FreezeRate::new(config.freeze_rate).map_err(|e| TrainError::Invalid(e.to_string()))?;
    let formula: ScoreFormula = config.score.parse().map_err(TrainError::Invalid)?;
    let checkpoints = resume::Checkpoints::open(&config)?;
    let c = checkpoints.as_ref();
    let mut report = match config.task {
        Task::Image(task) => {
            train_images::<B>(&config, task, rate, formula, device, c, &mut progress)?
        }
        Task::Glue(_) | Task::SpamAssassin => {
            train_text::<B>(&config, rate, formula, device, c, &mut progress)?
        }
    };
    report.wall_seconds = start.elapsed().as_secs_f64();
    if let Some(c) = c {
        // A resumed run reports the whole run: every process's time and the highest peak.
        report.wall_seconds = c.elapsed_seconds();
        report.peak_bytes = c.whole_run_peak(report.peak_bytes);
    }
    Ok(report)
}

/// The process peak so far, where it is measured (the counting allocator on flex).
pub(super) fn measured_peak() -> Option<Bytes> {
    (counting::is_installed() && crate::backend::BACKEND_NAME == "flex").then(counting::peak)
}
