//! `slimfit-trainer plan`: the accountant's prediction beside full fine-tuning.

use anyhow::{Context, Result, bail};
use slimfit_memory::Bytes;
use slimfit_memory::Family;
use slimfit_models::Compression;
use slimfit_trainer::accountant::{Setting, compare_plans, plan_shape, render};
use slimfit_trainer::measure::OptimizerStatePolicy;

/// Arguments of `plan`.
#[derive(clap::Args, Debug, Clone)]
pub struct PlanArgs {
    /// `bert-base`, `minilm-l6`, `vit-base-16-224`, `vit-base-16-384`, `dinov2-small-14`, or
    /// a Hugging Face BERT/ViT/DINOv2 config.json (no weights needed).
    #[arg(long, default_value = "bert-base")]
    model_config: String,
    /// Sequences (images) per batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// BERT: tokens per sequence. ViT: derived from --image-size.
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// ViT: image side in pixels (default: the config's image_size); tokens = 1 + (side /
    /// patch)².
    #[arg(long)]
    image_size: Option<usize>,
    /// Fraction of units frozen, in [0, 1) (the lowest-index units, as `measure-step`).
    #[arg(long, conflicts_with = "memory_budget")]
    freeze_rate: Option<f64>,
    /// Train as many units per step as fit this many bytes (e.g. 12GiB, 800MB) instead of
    /// a freezing rate.
    #[arg(long)]
    memory_budget: Option<String>,
    /// Storage of saved activations: exact, paper, scaled.
    #[arg(long, default_value = "paper")]
    compression: Compression,
    /// Adam state of frozen units.
    #[arg(long, value_enum, default_value = "keep")]
    optimizer_state: OptimizerStatePolicy,
    /// Print JSON (`total_peak_bytes`, `categories`, both plans, `ratio`).
    #[arg(long)]
    json: bool,
}

/// Runs `plan`.
pub fn run(args: PlanArgs) -> Result<()> {
    let shape = plan_shape(&args.model_config)
        .with_context(|| format!("--model-config {}", args.model_config))?;
    let seq = match shape.family {
        Family::Vit { image_size, .. } => {
            let side = args.image_size.unwrap_or(image_size);
            shape.image_tokens(side).unwrap_or(0)
        }
        Family::Bert { .. } => args.seq,
    };
    let setting = match (&args.memory_budget, args.freeze_rate) {
        (Some(budget), _) => Setting::Budget(
            budget
                .parse::<Bytes>()
                .map_err(anyhow::Error::msg)
                .context("--memory-budget")?,
        ),
        (None, Some(rate)) => Setting::FreezeRate(rate),
        (None, None) => Setting::FreezeRate(0.9),
    };
    if args.batch == 0 || seq <= 1 {
        bail!("--batch and --seq (or --image-size) must be positive");
    }
    let comparison = compare_plans(
        &args.model_config,
        &shape,
        args.batch,
        seq,
        setting,
        args.compression,
        args.optimizer_state,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        print!("{}", render(&comparison, args.compression));
    }
    Ok(())
}
