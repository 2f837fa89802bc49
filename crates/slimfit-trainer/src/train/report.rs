//! What a run reports: the JSON report of `train` and what budget mode decided.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use slimfit_memory::Bytes;
use slimfit_models::Unit;

use super::config::TrainConfig;
use super::run_loop::LoopOutcome;
use crate::memory_target::BudgetOrigin;

/// Dev metrics after one epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Metric name → value (0–100 for accuracy/F1/MCC/correlations ×100).
    pub metrics: HashMap<String, f64>,
}

/// The run's report.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// The resolved configuration.
    pub config: TrainConfig,
    /// Dev metrics per epoch.
    pub dev_metrics: Vec<EpochMetrics>,
    /// Training loss per optimizer step (under gradient accumulation, the mean of its
    /// micro-batches' losses).
    pub loss_curve: Vec<f32>,
    /// Units frozen at each optimizer step.
    pub frozen_per_step: Vec<usize>,
    /// Training examples used.
    pub train_examples: usize,
    /// Dev examples evaluated.
    pub dev_examples: usize,
    /// Tokens in the longest training sequence (after truncation): the widest batch. Image
    /// tasks: tokens per image (the class token and the patches).
    pub longest_train_sequence: usize,
    /// Units of the model.
    pub total_units: usize,
    /// How often each unit trained, by name.
    pub trained_steps_per_unit: Vec<(String, usize)>,
    /// The units that trained at each optimizer step: indices into
    /// `trained_steps_per_unit` (unit order), ascending.
    #[serde(default)]
    pub trained_units_per_step: Vec<Vec<u16>>,
    /// Peak live bytes of the process during training (saving the model, after it, is not
    /// counted), when the counting allocator is installed and the backend allocates through
    /// it (flex); `None` otherwise.
    pub peak_bytes: Option<Bytes>,
    /// Measured peak live bytes before the first step (loading the checkpoint, reading and
    /// tokenizing the data): the least any run of this model and data can measure,
    /// whatever it trains. Where measured, as `peak_bytes`; of the process that started
    /// last, where the run was resumed.
    pub setup_peak_bytes: Option<Bytes>,
    /// Measured peak live bytes of each optimizer step (from its forward pass to its score
    /// update), where the peak is measured (flex); empty otherwise. Budget mode puts the
    /// accountant's prediction for the same steps beside it.
    #[serde(default)]
    pub step_peak_bytes: Vec<Bytes>,
    /// Whether each step copied its trainable units to score their update (SLIMFIT.md §2):
    /// only under a policy that reads the scores (ILS). The copies count in `peak_bytes`.
    #[serde(default)]
    pub score_snapshots: bool,
    /// Budget mode: units trainable per step and the accountant's worst-case peak.
    pub budget: Option<BudgetReport>,
    /// Wall time, seconds.
    pub wall_seconds: f64,
    /// [`Compression::revision`] of the storage it ran with.
    pub compression_revision: u32,
}

/// What budget mode decided.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetReport {
    /// The budget.
    pub budget: Bytes,
    /// Where it came from: the rule, and the accountant's all-frozen and full fine-tuning
    /// peaks at the widest batch it was resolved against.
    pub origin: BudgetOrigin,
    /// Units trainable per step.
    pub trainable_units: usize,
    /// The freezing rate this amounts to.
    pub freeze_rate: f64,
    /// Predicted peak of the costliest choice of that many units at `--max-len`.
    pub predicted_worst_case_peak: Bytes,
    /// Live bytes besides the model's weights when the budget was fitted (runtime,
    /// tokenizer, data, and whatever loading the model keeps besides its parameters): the
    /// plan's runtime overhead.
    pub runtime_overhead: Bytes,
    /// Unit-steps the trainer froze on top of the policy because that step's set (with an
    /// embedding table, say) was predicted above the budget.
    pub shed_unit_steps: usize,
    /// Unit-steps the trainer added on top of the policy's k (ILS) because that step's set
    /// left room under the budget (less a 2 % margin): frozen candidates, highest score
    /// first, each if it fits.
    pub refilled_unit_steps: usize,
    /// The accountant's predicted peak of each step's actual set (after shedding and
    /// refilling), to compare with the measured `step_peak_bytes`.
    pub predicted_step_peaks: Vec<Bytes>,
    /// The most a measured step exceeded its prediction (0 where nothing is measured): the
    /// refill keeps that much room free besides a 1 % margin (3 % before the first
    /// measurement, and where nothing is measured), so the measurement closes the loop on
    /// the accountant's error.
    pub largest_underestimate: Bytes,
}

/// The report of a finished loop (peak and wall time are filled in by [`train`]).
pub(super) fn report_of(
    config: &TrainConfig,
    data_dir: PathBuf,
    units: &[Unit],
    outcome: LoopOutcome,
    sizes: (usize, usize, usize),
    budget: Option<BudgetReport>,
) -> TrainReport {
    let (train_examples, dev_examples, longest_train_sequence) = sizes;
    TrainReport {
        config: TrainConfig {
            data_dir: Some(data_dir),
            ..config.clone()
        },
        dev_metrics: outcome.dev_metrics,
        loss_curve: outcome.loss_curve,
        frozen_per_step: outcome.frozen_per_step,
        train_examples,
        dev_examples,
        longest_train_sequence,
        total_units: units.len(),
        trained_steps_per_unit: units
            .iter()
            .map(|u| (u.name.clone(), outcome.trained_count[u.index]))
            .collect(),
        trained_units_per_step: outcome.trained_per_step,
        peak_bytes: None,
        setup_peak_bytes: None,
        step_peak_bytes: outcome.step_peaks,
        score_snapshots: outcome.score_snapshots,
        budget,
        wall_seconds: 0.0,
        compression_revision: config.compression.revision(),
    }
}
