//! The results of `reproduce-table`: per-method summaries over seeds, the main table
//! (`table.md`), its JSON (`table.json`), and the figures ([`crate::figures`]).
//!
//! Everything here is computed from the trainer's `TrainReport`s as stored in the cells
//! ([`ReportView`] reads the fields it needs from their JSON) and from the memory
//! accountant.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use slimfit_data::{GlueTask, LabelKind};
use slimfit_memory::{Bytes, PlanRequest, plan};
use slimfit_models::{CheckpointDir, Compression};
use slimfit_trainer::accountant::{encoder_shape, optimizer_state, runtime_overhead, storage};
use slimfit_trainer::measure::OptimizerStatePolicy;
use slimfit_trainer::outputs::write_atomically;
use slimfit_trainer::train::PolicyKind;

use crate::reproduce::{CellRecord, Method, PlanRow, TaskSettings};

/// What a run was.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    /// `quick` or `reference`.
    pub profile: String,
    /// Backend of the build.
    pub backend: String,
    /// Checkpoint directory.
    pub model: String,
    /// GLUE root.
    pub glue_dir: String,
    /// Seeds of every (task, method).
    pub seeds: Vec<u64>,
    /// Settings per task, in table order.
    pub settings: Vec<(String, TaskSettings)>,
    /// Tasks skipped, with the reason.
    pub skipped: Vec<(String, String)>,
    /// The command that made the table.
    pub command: String,
    /// Wall time of the invocation that finished the table (cells reused from earlier
    /// invocations took their own time: see each method's `wall_seconds`).
    pub run_wall_seconds: Option<f64>,
    /// Cells that invocation trained.
    pub cells_trained: usize,
    /// Cells it reused from earlier invocations.
    pub cells_reused: usize,
}

/// The fields of a serialized `TrainReport` the table uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ReportView {
    /// Dev metrics per epoch.
    pub dev_metrics: Vec<EpochView>,
    /// Units frozen at each step.
    pub frozen_per_step: Vec<usize>,
    /// Units of the model.
    pub total_units: usize,
    /// `(unit name, steps it trained)`, in unit order.
    pub trained_steps_per_unit: Vec<(String, usize)>,
    /// Peak live bytes of the process (flex with the counting allocator).
    pub peak_bytes: Option<u64>,
    /// Wall time of the run.
    pub wall_seconds: f64,
    /// Training examples.
    pub train_examples: usize,
    /// Dev examples.
    pub dev_examples: usize,
    /// Tokens of the widest training batch.
    pub longest_train_sequence: usize,
    /// Indices of the units that trained at each step, where the trainer records them.
    #[serde(default)]
    pub trained_units_per_step: Option<Vec<Vec<usize>>>,
    /// Budget mode's record, where the run had a budget.
    #[serde(default)]
    pub budget: Option<BudgetView>,
    /// Whether each step copied its trainable units to score their update (`None`: a
    /// report from before the field, when every run did).
    #[serde(default)]
    pub score_snapshots: Option<bool>,
    /// The resolved configuration.
    pub config: ConfigView,
}

/// The fields of a report's `budget` the table uses.
#[derive(Debug, Clone, Deserialize)]
pub struct BudgetView {
    /// The accountant's prediction of each step's actual set, as the trainer planned it.
    pub predicted_step_peaks: Vec<u64>,
    /// The plan's runtime overhead (live bytes besides the weights when it was fitted).
    pub runtime_overhead: u64,
}

/// Dev metrics after one epoch.
#[derive(Debug, Clone, Deserialize)]
pub struct EpochView {
    /// Metric → value (×100); `None` where the value was not finite.
    pub metrics: BTreeMap<String, Option<f64>>,
}

/// The fields of the report's `config` the table uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigView {
    /// Freezing rate.
    pub freeze_rate: f64,
    /// Activation storage.
    pub compression: Compression,
    /// Batch size.
    pub batch: usize,
    /// Adam moments of frozen units.
    pub optimizer_state: OptimizerStatePolicy,
    /// Micro-batches per optimizer step.
    #[serde(default = "one")]
    pub grad_accum: usize,
}

fn one() -> usize {
    1
}

impl ReportView {
    /// Reads a serialized `TrainReport`.
    pub fn parse(report: &serde_json::Value) -> Result<Self> {
        serde_json::from_value(report.clone()).context("not a TrainReport")
    }

    /// The dev metrics after the last epoch.
    pub fn final_metrics(&self) -> BTreeMap<String, f64> {
        self.dev_metrics
            .last()
            .map(|e| {
                e.metrics
                    .iter()
                    .filter_map(|(k, v)| v.map(|v| (k.clone(), v)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `accuracy 69.53, f1 82.03`.
    pub fn metrics_text(&self) -> String {
        self.final_metrics()
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Mean over steps of frozen units / all units.
    pub fn frozen_fraction(&self) -> f64 {
        let steps = self.frozen_per_step.len();
        if steps == 0 || self.total_units == 0 {
            return 0.0;
        }
        self.frozen_per_step.iter().sum::<usize>() as f64 / (steps * self.total_units) as f64
    }
}

/// Mean and sample standard deviation over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one value).
    pub std: f64,
    /// Values.
    pub n: usize,
}

impl Stat {
    /// Of `values`; `None` when empty.
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Self { mean, std, n })
    }

    /// `81.3` or `81.3 ± 0.4`.
    pub fn text(&self, decimals: usize) -> String {
        if self.n > 1 {
            format!("{:.d$} ± {:.d$}", self.mean, self.std, d = decimals)
        } else {
            format!("{:.d$}", self.mean, d = decimals)
        }
    }
}

/// The accountant's prediction of a method's step, by category (bytes).
#[derive(Debug, Clone, Serialize)]
pub struct Predicted {
    /// `(category, bytes)`: the six of the plan, then `runtime`.
    pub categories: Vec<(String, Bytes)>,
    /// Their sum.
    pub total: Bytes,
    /// Tokens per sequence planned (the widest training batch of the run).
    pub seq: usize,
}

/// One method on one task, over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary {
    /// GLUE task.
    pub task: String,
    /// The method.
    pub method: Method,
    /// Column title.
    pub label: String,
    /// Seeds summarised.
    pub seeds: Vec<u64>,
    /// Dev metrics after the last epoch.
    pub metrics: BTreeMap<String, Stat>,
    /// Measured peak bytes of the process (`None` where not measured).
    pub peak_bytes: Option<Stat>,
    /// Fraction of unit-steps frozen.
    pub frozen_fraction: Stat,
    /// Wall time per seed, seconds.
    pub wall_seconds: Stat,
    /// Optimizer steps per run.
    pub steps: usize,
    /// Training examples.
    pub train_examples: usize,
    /// Dev examples evaluated.
    pub dev_examples: usize,
    /// Units of the model.
    pub total_units: usize,
    /// Activation storage.
    pub compression: Compression,
    /// Freezing rate asked for.
    pub freeze_rate: f64,
    /// The accountant's plan of one step at the run's widest batch.
    pub predicted: Option<Predicted>,
}

/// A row of the main table.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    /// GLUE task.
    pub task: String,
    /// Its main metric.
    pub metric: String,
    /// Full fine-tuning's main metric.
    pub full: Option<Stat>,
    /// SlimFit, default variant.
    pub slimfit_default: Option<Stat>,
    /// SlimFit, paper variant.
    pub slimfit_paper: Option<Stat>,
    /// `slimfit_default − full`, points.
    pub delta: Option<f64>,
    /// Measured peak of full fine-tuning, bytes (mean over seeds).
    pub peak_full: Option<f64>,
    /// Measured peak of SlimFit (default), bytes.
    pub peak_slimfit: Option<f64>,
    /// `peak_full / peak_slimfit`.
    pub peak_ratio: Option<f64>,
    /// Mean percentage of units frozen per step by SlimFit (default).
    pub frozen_percent: Option<f64>,
    /// The paper's number for the task, where SLIMFIT.md gives one.
    pub paper_claim: Option<String>,
}

/// Everything `table.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// The run.
    pub meta: Meta,
    /// Main table, one row per task.
    pub rows: Vec<TaskRow>,
    /// Every (task, method).
    pub methods: Vec<MethodSummary>,
    /// The accountant's plans of the paper's configurations.
    pub plans: Vec<PlanRow>,
    /// Cells summarised: `(task, method, seed)`.
    pub cells: Vec<(String, Method, u64)>,
}

/// The paper's per-task GLUE score for BERT-base, where SLIMFIT.md gives one. It gives
/// none (only the headline: ≤ 0.4 pt, 0.2 on average, below full fine-tuning), so the
/// column stays blank; fill this in if per-task numbers are added there.
fn paper_claim(_task: GlueTask) -> Option<String> {
    None
}

/// The main metric of a task, as the trainer names it.
pub fn main_metric(task: GlueTask) -> String {
    serde_json::to_value(task.metrics()[0])
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "metric".to_string())
}

fn num_labels(task: GlueTask) -> usize {
    match task.labels() {
        LabelKind::Regression => 1,
        LabelKind::Classes(names) => names.len(),
    }
}

/// The accountant's plan of one step of `method` at `seq` tokens, for reports that do not
/// record their per-step sets ([`costliest_step`] plans those): the lowest-index
/// `floor(r · t)` units frozen (as `plan` and `measure-step`), with the score snapshots of
/// the trainable units where the policy reads scores (ILS). Adam state is kept for every
/// unit (ILS and random train each unit sooner or later) except under the static prefix,
/// whose frozen units never train and so never get moments, and under SlimFit (default),
/// which drops frozen units' moments.
fn predict(
    config: &slimfit_models::BertConfig,
    task: GlueTask,
    method: Method,
    batch: usize,
    seq: usize,
    compression: Compression,
    freeze_rate: f64,
) -> Option<Predicted> {
    let moments = match method {
        Method::SlimfitDefault | Method::SlimfitMatched => OptimizerStatePolicy::Drop,
        _ => moments_of(method, OptimizerStatePolicy::Keep),
    };
    let mut request = PlanRequest::with_freeze_rate(
        encoder_shape(config, num_labels(task)),
        batch,
        seq,
        storage(compression),
        optimizer_state(moments),
        freeze_rate,
    );
    request.runtime_overhead = runtime_overhead();
    request.score_snapshots = method.policy() == PolicyKind::Ils;
    Some(predicted_of(plan(&request).ok()?, seq))
}

/// Moments the plan counts for `method`: the static prefix's frozen units never train, so
/// never get moments, whatever the run's setting.
fn moments_of(method: Method, configured: OptimizerStatePolicy) -> OptimizerStatePolicy {
    match method {
        Method::StaticPrefix => OptimizerStatePolicy::Drop,
        _ => configured,
    }
}

/// The accountant's plan of a run's costliest step, from the sets the report recorded;
/// `None` where it has none.
///
/// - Under a memory budget, the trainer planned each step's actual set at that step's
///   length: the plan of its costliest step is rebuilt exactly (that step's set and
///   request), found by its recorded prediction. The report keeps each step's set but not
///   its batch's length; the plan grows with the length, so the one length whose plan is
///   the recorded prediction is found by trying each (`None` if none is: the request
///   below no longer matches the trainer's).
/// - Otherwise, the costliest of the run's distinct sets at its widest batch: a bound on
///   every step (the costliest set need not have met the widest batch).
fn costliest_step(
    config: &slimfit_models::BertConfig,
    task: GlueTask,
    method: Method,
    view: &ReportView,
) -> Option<Predicted> {
    let sets = view.trained_units_per_step.as_ref()?;
    let shape = encoder_shape(config, num_labels(task));
    let units = shape.units().len();
    let mut request = PlanRequest::with_freeze_rate(
        shape,
        view.config.batch,
        view.longest_train_sequence,
        storage(view.config.compression),
        optimizer_state(moments_of(method, view.config.optimizer_state)),
        0.0,
    );
    // Reports from before the field scored every run's updates.
    request.score_snapshots = view.score_snapshots.unwrap_or(true);
    request.accumulated_gradients = view.config.grad_accum > 1;
    request.runtime_overhead = view
        .budget
        .as_ref()
        .map_or_else(runtime_overhead, |b| Bytes(b.runtime_overhead));
    let mut plan_set = |set: &[usize], seq: usize| {
        let mut trainable = vec![false; units];
        for &unit in set {
            *trainable.get_mut(unit)? = true;
        }
        request.trainable = trainable;
        request.seq = seq;
        plan(&request).ok()
    };
    let longest = view.longest_train_sequence;
    match &view.budget {
        Some(budget) => {
            let (step, &recorded) = budget
                .predicted_step_peaks
                .iter()
                .enumerate()
                .max_by_key(|(_, p)| **p)?;
            let set = sets.get(step)?;
            (1..=longest).rev().find_map(|seq| {
                let p = plan_set(set, seq)?;
                (p.total_peak_bytes.0 == recorded).then(|| predicted_of(p, seq))
            })
        }
        None => {
            let mut distinct: Vec<&Vec<usize>> = sets.iter().collect();
            distinct.sort();
            distinct.dedup();
            distinct
                .into_iter()
                .filter_map(|set| plan_set(set, longest))
                .max_by_key(|p| p.total_peak_bytes)
                .map(|p| predicted_of(p, longest))
        }
    }
}

fn predicted_of(p: slimfit_memory::Plan, seq: usize) -> Predicted {
    let mut categories: Vec<(String, Bytes)> = p
        .categories
        .named()
        .iter()
        .map(|(n, b)| (n.to_string(), *b))
        .collect();
    categories.push(("runtime".to_string(), p.runtime_overhead));
    Predicted {
        categories,
        total: p.total_peak_bytes,
        seq,
    }
}

/// Summarises `records` (any order; tasks in the order of `meta.settings`' keys are
/// re-sorted into the default task order).
pub fn build(meta: &Meta, records: &[CellRecord], plans: &[PlanRow]) -> Result<Table> {
    let model_config = CheckpointDir::new(&meta.model).config().ok();
    let mut grouped: BTreeMap<(usize, String, Method), Vec<(u64, ReportView)>> = BTreeMap::new();
    let mut cells = Vec::new();
    for r in records {
        let task = r.glue_task()?;
        let order = crate::reproduce::DEFAULT_TASKS
            .iter()
            .position(|t| *t == task)
            .unwrap_or(usize::MAX);
        let view = ReportView::parse(&r.report)
            .with_context(|| format!("{} {} seed {}", r.task, r.method.key(), r.seed))?;
        cells.push((r.task.clone(), r.method, r.seed));
        grouped
            .entry((order, r.task.clone(), r.method))
            .or_default()
            .push((r.seed, view));
    }
    let mut methods = Vec::new();
    for ((_, task_name, method), mut runs) in grouped {
        runs.sort_by_key(|(seed, _)| *seed);
        let task: GlueTask = task_name.parse().map_err(|_| anyhow::anyhow!("task"))?;
        let finals: Vec<BTreeMap<String, f64>> =
            runs.iter().map(|(_, v)| v.final_metrics()).collect();
        let mut names: Vec<String> = finals.iter().flat_map(|m| m.keys().cloned()).collect();
        names.sort();
        names.dedup();
        let metrics = names
            .into_iter()
            .filter_map(|name| {
                let values: Vec<f64> = finals
                    .iter()
                    .filter_map(|m| m.get(&name))
                    .copied()
                    .collect();
                Stat::of(&values).map(|s| (name, s))
            })
            .collect();
        let peaks: Vec<f64> = runs
            .iter()
            .filter_map(|(_, v)| v.peak_bytes.map(|b| b as f64))
            .collect();
        let first = &runs[0].1;
        let seq = runs
            .iter()
            .map(|(_, v)| v.longest_train_sequence)
            .max()
            .unwrap_or(0);
        let frozen_fraction = Stat::of(
            &runs
                .iter()
                .map(|(_, v)| v.frozen_fraction())
                .collect::<Vec<_>>(),
        )
        .expect("at least one run");
        methods.push(MethodSummary {
            task: task_name.clone(),
            method,
            label: method.label().to_string(),
            seeds: runs.iter().map(|(s, _)| *s).collect(),
            metrics,
            peak_bytes: if peaks.len() == runs.len() {
                Stat::of(&peaks)
            } else {
                None
            },
            frozen_fraction,
            wall_seconds: Stat::of(&runs.iter().map(|(_, v)| v.wall_seconds).collect::<Vec<_>>())
                .expect("at least one run"),
            steps: first.frozen_per_step.len(),
            train_examples: first.train_examples,
            dev_examples: first.dev_examples,
            total_units: first.total_units,
            compression: first.config.compression,
            freeze_rate: first.config.freeze_rate,
            predicted: model_config.as_ref().and_then(|c| {
                let costliest = runs
                    .iter()
                    .filter_map(|(_, v)| costliest_step(c, task, method, v))
                    .max_by_key(|p| p.total);
                costliest.or_else(|| {
                    predict(
                        c,
                        task,
                        method,
                        first.config.batch,
                        seq,
                        first.config.compression,
                        first.config.freeze_rate,
                    )
                })
            }),
        });
    }
    let mut rows = Vec::new();
    let mut task_names: Vec<String> = Vec::new();
    for m in &methods {
        if !task_names.contains(&m.task) {
            task_names.push(m.task.clone());
        }
    }
    for name in task_names {
        let task: GlueTask = name.parse().map_err(|_| anyhow::anyhow!("task"))?;
        let metric = main_metric(task);
        let find = |method: Method| {
            methods
                .iter()
                .find(|m| m.task == name && m.method == method)
        };
        let score = |method: Method| find(method).and_then(|m| m.metrics.get(&metric).copied());
        let peak = |method: Method| find(method).and_then(|m| m.peak_bytes.map(|p| p.mean));
        let (full, slim) = (score(Method::Full), score(Method::SlimfitDefault));
        let (peak_full, peak_slimfit) = (peak(Method::Full), peak(Method::SlimfitDefault));
        rows.push(TaskRow {
            task: name.clone(),
            metric: metric.clone(),
            full,
            slimfit_default: slim,
            slimfit_paper: score(Method::SlimfitPaper),
            delta: full.zip(slim).map(|(f, s)| s.mean - f.mean),
            peak_full,
            peak_slimfit,
            peak_ratio: peak_full.zip(peak_slimfit).map(|(f, s)| f / s),
            frozen_percent: find(Method::SlimfitDefault).map(|m| 100.0 * m.frozen_fraction.mean),
            paper_claim: paper_claim(task),
        });
    }
    Ok(Table {
        meta: meta.clone(),
        rows,
        methods,
        plans: plans.to_vec(),
        cells,
    })
}

fn opt<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or("—".to_string(), show)
}

fn mib(bytes: f64) -> String {
    Bytes(bytes.round() as u64).to_string()
}

/// `table.md`.
pub fn render_markdown(table: &Table) -> String {
    let meta = &table.meta;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# SlimFit on GLUE: reproduced table ({})\n",
        meta.profile
    );
    let _ = writeln!(
        out,
        "Made by `{}` on the {} backend with {} (seeds {}). Generated: do not edit; \
         rerun to refresh (finished cells under `cells/` are reused).\n",
        meta.command,
        meta.backend,
        Path::new(&meta.model)
            .file_name()
            .map_or(meta.model.clone(), |n| n.to_string_lossy().to_string()),
        meta.seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "| task | metric | full FT | SlimFit (default) | SlimFit (paper) | Δ (default − full) | \
         peak full FT | peak SlimFit | full ÷ SlimFit | frozen % | paper (BERT-base) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &table.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.task,
            r.metric,
            opt(r.full, |s| s.text(1)),
            opt(r.slimfit_default, |s| s.text(1)),
            opt(r.slimfit_paper, |s| s.text(1)),
            opt(r.delta, |d| format!("{d:+.1}")),
            opt(r.peak_full, mib),
            opt(r.peak_slimfit, mib),
            opt(r.peak_ratio, |x| format!("{x:.2}×")),
            opt(r.frozen_percent, |p| format!("{p:.1}")),
            r.paper_claim.clone().unwrap_or_default(),
        );
    }
    let _ = writeln!(
        out,
        "\nMetrics: dev set after the last epoch, ×100 (MCC for CoLA, F1 for MRPC, Pearson for \
         STS-B, accuracy otherwise); mean ± sample std over seeds. Peak: the process's peak \
         live bytes during the whole run (weights, Adam state, data, activations), measured \
         by the counting allocator. Frozen %: mean share of the model's units frozen per \
         step. SLIMFIT.md gives no per-task BERT-base scores, only the headline: ≤ 0.4 pt \
         (0.2 on average) below full fine-tuning at 2.2× (up to 3.1×) less memory.\n"
    );

    if meta.profile == "quick" {
        let _ = writeln!(
            out,
            "**Quick profile**: one seed, one epoch of 12–50 steps on a few hundred to 1 600 \
             examples at 64 tokens — a check that the pipeline runs end to end. Its memory \
             columns are representative; its metrics are not: SlimFit trains 5–15 % of the units \
             per step and needs the reference's hundreds of steps (run without `--quick`).\n"
        );
    }
    let _ = writeln!(out, "## Every method\n");
    let _ = writeln!(
        out,
        "SlimFit (default) is what `slimfit-trainer train` does with no flags: it trains \
         under a memory target it chooses in the same run — the least of the accountant's \
         plan with every unit but the vocabulary table trainable and {:.2} × full \
         fine-tuning's planned peak, at the widest batch — spent on as many units per step \
         as fit (Adam moments of frozen units dropped, \
         activations stored `scaled`). SlimFit (paper's memory) is the same under the \
         measured peak of SlimFit (paper) on the same task and seed (two runs). The accountant's \
         column plans each method's costliest step: under a budget, the trainer's own plan \
         of that step (its set, its batch's length); otherwise the costliest set the run \
         trained, at its widest batch. Static prefix and random freeze as many \
         units as SlimFit (paper) and store activations like SlimFit (default); they differ \
         from the paper's ILS in which units train.\n",
        slimfit_trainer::memory_target::DEFAULT_CAP
    );
    let _ = writeln!(
        out,
        "| task | method | dev metrics | peak (measured) | peak (accountant, one step) | \
         frozen % | steps | wall s / seed |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for m in &table.methods {
        let metrics = m
            .metrics
            .iter()
            .map(|(k, s)| format!("{k} {}", s.text(1)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.1} | {} | {:.0} |",
            m.task,
            m.label,
            metrics,
            opt(m.peak_bytes, |s| mib(s.mean)),
            opt(m.predicted.as_ref(), |p| p.total.to_string()),
            100.0 * m.frozen_fraction.mean,
            m.steps,
            m.wall_seconds.mean
        );
    }

    let _ = writeln!(out, "\n## Settings\n");
    let _ = writeln!(
        out,
        "| task | epochs | batch | lr | max tokens | train examples | dev examples | freezing rate |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for (task, s) in &meta.settings {
        let _ = writeln!(
            out,
            "| {task} | {} | {} | {:e} | {} | {} | {} | {} |",
            s.epochs,
            s.batch,
            s.lr,
            s.max_len,
            s.max_train_examples
                .map_or("all".to_string(), |n| format!("first {n}")),
            s.max_dev_examples
                .map_or("all".to_string(), |n| format!("first {n}")),
            s.freeze_rate
        );
    }
    for (task, reason) in &meta.skipped {
        let _ = writeln!(out, "\nSkipped {task}: {reason}.");
    }

    let _ = writeln!(
        out,
        "\n## The paper's configurations, planned by the accountant\n"
    );
    let _ = writeln!(
        out,
        "Predicted peak of one training step (fp32, paper compression, Adam state kept; \
         nothing runs). GPUs: 32 GiB cards the memory alone would need.\n"
    );
    let _ = writeln!(
        out,
        "| configuration | batch × tokens | r | full FT | SlimFit | full ÷ SlimFit | 32 GB GPUs (full → SlimFit) | paper's claim |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for p in &table.plans {
        let _ = writeln!(
            out,
            "| {} | {} × {} | {} | {} | {} | {:.2}× | {} → {} | {} |",
            p.name,
            p.batch,
            p.seq,
            p.freeze_rate,
            p.full_peak_bytes,
            p.slimfit_peak_bytes,
            p.full_over_slimfit,
            p.gpus_32gb_full,
            p.gpus_32gb_slimfit,
            p.paper_claim
        );
    }
    let _ = writeln!(out, "\nCommands: {}.", {
        table
            .plans
            .iter()
            .map(|p| format!("`{}`", p.command))
            .collect::<Vec<_>>()
            .join("; ")
    });

    let _ = writeln!(out, "\n## Figures\n");
    for (file, what) in figure_list(table) {
        let _ = writeln!(out, "- [{file}]({file}): {what}");
    }
    let cell_seconds: f64 = table
        .methods
        .iter()
        .map(|m| m.wall_seconds.mean * m.wall_seconds.n as f64)
        .sum();
    if let Some(s) = meta.run_wall_seconds {
        let _ = writeln!(
            out,
            "\nThe invocation that finished this table trained {} cells and reused {} in {s:.0} s; \
             the {} cells' own training runs took {cell_seconds:.0} s in all.",
            meta.cells_trained,
            meta.cells_reused,
            table.cells.len()
        );
    }
    out
}

/// The figures [`write`] makes: `(file name, caption)`.
pub fn figure_list(table: &Table) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut tasks: Vec<&str> = Vec::new();
    for m in &table.methods {
        if !tasks.contains(&m.task.as_str()) {
            tasks.push(&m.task);
        }
    }
    for task in &tasks {
        files.push((
            format!("memory-{task}.svg"),
            format!(
                "{task}: peak memory by category per method (the accountant's plan of one step) \
                 and the measured process peak"
            ),
        ));
    }
    if let Some(task) = crate::figures::heatmap_task(table) {
        files.push((
            format!("frozen-{task}.svg"),
            format!(
                "{task}: which units SlimFit (default) trained (first seed): units × steps \
                 where the report records per-step sets, else the share of steps per unit"
            ),
        ));
    }
    files.push((
        "metric-vs-memory.svg".to_string(),
        "dev metric against measured peak memory, every method and task".to_string(),
    ));
    files
}

/// Writes `table.md`, `table.json`, the figures, and `records/` (a copy of each of
/// `records`, named as in `cells/`) into `out`; returns the paths (`records/` as one).
pub fn write(out: &Path, table: &Table, records: &[CellRecord]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut files = Vec::new();
    let md = out.join("table.md");
    write_atomically(&md, render_markdown(table).as_bytes())?;
    files.push(md);
    let json = out.join("table.json");
    write_atomically(&json, serde_json::to_string_pretty(table)?.as_bytes())?;
    files.push(json);
    files.extend(crate::figures::write_all(out, table, records)?);
    // Figures of tasks no longer in the table (an earlier, partial state) would mislead.
    for entry in std::fs::read_dir(out)?.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        let ours =
            (name.starts_with("memory-") || name.starts_with("frozen-")) && name.ends_with(".svg");
        if ours && !files.contains(&path) {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing the stale {}", path.display()))?;
        }
    }
    files.push(write_records(&out.join("records"), records)?);
    Ok(files)
}

/// The table's raw data: each record as compact JSON (the per-step lists make pretty
/// printing several times larger), and no file of a cell the table no longer has.
fn write_records(dir: &Path, records: &[CellRecord]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let names: Vec<String> = records.iter().map(CellRecord::file_name).collect();
    for (record, name) in records.iter().zip(&names) {
        let path = dir.join(name);
        write_atomically(&path, serde_json::to_string(record)?.as_bytes())?;
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".json") && !names.contains(&name) {
            let path = entry.path();
            std::fs::remove_file(&path)
                .with_context(|| format!("removing the stale {}", path.display()))?;
        }
    }
    Ok(dir.to_path_buf())
}
