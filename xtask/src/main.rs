//! `cargo xtask <task>`: project tasks that are not part of the library API.
//!
//! - `fetch-assets`: put the pretrained checkpoints into the cache (pip, no model hub).
//! - `tch-parity`: run the PyTorch parity test on the LibTorch backend, building against a
//!   pip-installed torch in a private virtual environment.
//! - `reproduce-table`: fine-tune every method on the GLUE tasks through the trainer's
//!   library API and write the results table, its JSON and SVG figures ([`reproduce`]).
//! - `fuzz`: run the input parsers' fuzz targets and record the run ([`fuzz`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use slimfit_data::assets::{self, MINILM_L6_V2};
use slimfit_memory::CountingAllocator;

mod figures;
mod frontier;
mod fuzz;
mod reproduce;
mod table;
#[cfg(test)]
mod tests;

/// Every allocation is counted, so that the table's peak memory is a measurement (as in
/// `slimfit-trainer`).
#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// The PyTorch version `tch` 0.22 (burn-tch 0.21) is written against.
const TORCH_VERSION: &str = "2.9.0";

#[derive(Parser)]
#[command(about = "slimfit-rs project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Fetch the pretrained checkpoints into the cache ($SLIMFIT_HOME or the platform cache).
    FetchAssets,
    /// Run the PyTorch parity test on the LibTorch backend (`--features tch`).
    ///
    /// Creates a virtual environment with torch (about 6.7 GB on first use), builds with
    /// LIBTORCH_USE_PYTORCH=1 into target/tch, and runs the parity test there.
    TchParity {
        /// The virtual environment to create or reuse. Default: $SLIMFIT_HOME/torch-venv.
        #[arg(long)]
        venv: Option<PathBuf>,
    },
    /// Reproduce the paper's GLUE table with the default checkpoint: full fine-tuning,
    /// SlimFit (default and paper variants) and the static-prefix and random baselines on
    /// each task, plus the memory accountant's plans of the paper's configurations.
    ///
    /// Writes <out>/table.md, table.json, SVG figures, and one JSON file per finished
    /// (task, method, seed) under <out>/cells/, which a rerun reuses (resume).
    ReproduceTable(reproduce::Args),
    /// The memory–accuracy frontier: full fine-tuning as published on each task, then
    /// SlimFit, full fine-tuning (checkpointing, accumulation), LoRA, LISA and the head
    /// alone at 1/2, 1/3, 1/4 and 1/6 of its measured peak, each in the cheapest
    /// configuration the accountant predicts to fit. Writes <out>/table.md, table.json,
    /// frontier-<task>.svg and records/ (docs/RESULTS.md, "The frontier").
    ReproduceFrontier(frontier::Args),
    /// Fuzz every input parser (slimfit-fuzz's targets) for a given time each and record
    /// the inputs tried and the crashes in docs/results/fuzz/ (docs/FUZZING.md).
    Fuzz(fuzz::Args),
    /// One cell of `reproduce-table --jobs N`, in a worker process of its own (internal).
    #[command(hide = true)]
    TrainCell {
        /// The cell, as JSON.
        job: String,
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
    match Cli::parse().task {
        Task::FetchAssets => {
            let dir = MINILM_L6_V2.resolve(None)?;
            println!("{}: {}", MINILM_L6_V2.name, dir.display());
            Ok(())
        }
        Task::TchParity { venv } => {
            tch_parity(venv.unwrap_or_else(|| assets::home().join("torch-venv")))
        }
        Task::ReproduceTable(args) => reproduce::run(&args),
        Task::ReproduceFrontier(args) => frontier::run(&args),
        Task::TrainCell { job } => reproduce::run_job(&job),
        Task::Fuzz(args) => fuzz::run(&args),
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

fn capture(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

fn tch_parity(venv: PathBuf) -> Result<()> {
    let python = venv.join("bin/python");
    if !python.is_file() {
        println!("creating {}", venv.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .context("python3 with the venv module is needed for the LibTorch build")?;
    }
    let installed = capture(
        Command::new(&python).args(["-c", "import torch; print(torch.__version__.split('+')[0])"]),
    )
    .unwrap_or_default();
    if installed != TORCH_VERSION {
        println!("installing torch=={TORCH_VERSION} into {}", venv.display());
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            &format!("torch=={TORCH_VERSION}"),
        ]))?;
    }
    let torch_lib = Path::new(&capture(Command::new(&python).args([
        "-c",
        "import os, torch; print(os.path.dirname(torch.__file__))",
    ]))?)
    .join("lib");
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ld = match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", torch_lib.display()),
        _ => torch_lib.display().to_string(),
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(workspace)
            .env("VIRTUAL_ENV", &venv)
            .env("PATH", path)
            .env("LIBTORCH_USE_PYTORCH", "1")
            .env("LD_LIBRARY_PATH", ld)
            .env("CARGO_TARGET_DIR", workspace.join("target/tch"))
            .args([
                "test",
                "--release",
                "-p",
                "slimfit-trainer",
                "--no-default-features",
                "--features",
                "tch",
                "--test",
                "parity",
                "--",
                "--nocapture",
            ]),
    )
}
