//! `slimfit-fuzz`: the mutation fuzzer ([`slimfit_fuzz::mutate`]) over one target or all,
//! for a given time each, printing one JSON line per target (`cargo xtask fuzz --engine
//! mutate` runs it; libFuzzer's runs are in `fuzz/`). Exits 1 when an input panicked; each
//! such input is written to `--artifacts`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use slimfit_fuzz::Target;
use slimfit_fuzz::mutate::fuzz;

#[derive(Parser)]
#[command(about = "Mutation-fuzz slimfit-rs's input parsers")]
struct Args {
    /// Targets, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The mutator's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where panicking inputs are written.
    #[arg(long, default_value = "fuzz/artifacts/mutate")]
    artifacts: PathBuf,
    /// Write the seeds of the (one) target into this directory and exit: libFuzzer's
    /// starting corpus.
    #[arg(long)]
    write_seeds: Option<PathBuf>,
}

/// One target's run, as printed.
#[derive(serde::Serialize)]
struct Line<'a> {
    target: &'a str,
    engine: &'static str,
    seconds: f64,
    inputs: u64,
    panics: usize,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let targets: Vec<Target> = if args.targets.is_empty() {
        Target::ALL.to_vec()
    } else {
        let mut chosen = Vec::new();
        for name in &args.targets {
            match Target::from_name(name) {
                Some(t) => chosen.push(t),
                None => {
                    let known: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
                    eprintln!("unknown target {name:?}; known: {}", known.join(", "));
                    return std::process::ExitCode::from(2);
                }
            }
        }
        chosen
    };
    if let Some(dir) = &args.write_seeds {
        for target in &targets {
            for (k, seed) in slimfit_fuzz::seeds(*target).iter().enumerate() {
                let path = dir.join(format!("seed-{k}"));
                if let Err(e) =
                    std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, seed))
                {
                    eprintln!("cannot write {}: {e}", path.display());
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
        return std::process::ExitCode::SUCCESS;
    }
    // Caught panics are reported below, with their inputs, not printed as they happen.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    for target in targets {
        let start = Instant::now();
        let report = fuzz(
            target,
            args.seed,
            u64::MAX,
            Duration::from_secs(args.seconds),
        );
        for (k, (input, message)) in report.panics.iter().enumerate() {
            failed = true;
            let dir = args.artifacts.join(target.name());
            let path = dir.join(format!("panic-{k}"));
            let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input));
            eprintln!(
                "{}: panic: {message} (input {})",
                target.name(),
                match written {
                    Ok(()) => path.display().to_string(),
                    Err(e) => format!("not written: {e}"),
                }
            );
        }
        let line = Line {
            target: target.name(),
            engine: "mutate",
            seconds: start.elapsed().as_secs_f64(),
            inputs: report.inputs,
            panics: report.panics.len(),
        };
        println!("{}", serde_json::to_string(&line).expect("JSON"));
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
