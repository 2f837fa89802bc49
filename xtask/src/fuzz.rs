//! `cargo xtask fuzz`: every fuzz target of `slimfit-fuzz` for a given time each, with
//! libFuzzer (coverage-guided: `cargo +nightly fuzz`, the `fuzz/` directory) or the stable
//! mutation fuzzer (`slimfit-fuzz` binary), and a record of what ran: per target the
//! seconds, the inputs tried and the crashes, in `<out>/<engine>-<date>.json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use slimfit_trainer::outputs::write_atomically;

/// The fuzzer to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// libFuzzer through cargo-fuzz (needs a nightly toolchain and `cargo install cargo-fuzz`).
    Libfuzzer,
    /// The mutation fuzzer of `slimfit-fuzz` (stable Rust, no coverage guidance).
    Mutate,
}

/// Arguments of `fuzz`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The fuzzer.
    #[arg(long, value_enum, default_value = "libfuzzer")]
    pub engine: Engine,
    /// Seconds per target.
    #[arg(long, default_value_t = 450)]
    pub seconds_per_target: u64,
    /// Targets, comma-separated (default: all of `slimfit-fuzz`).
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
    /// Where the record goes.
    #[arg(long, default_value = "docs/results/fuzz")]
    pub out: PathBuf,
}

/// Every target of `slimfit-fuzz` (its `Target::name`s).
const TARGETS: [&str; 8] = [
    "safetensors",
    "config_json",
    "glue_tsv",
    "idx",
    "cifar",
    "image_file",
    "run_toml",
    "encode_stdin",
];

/// One target's run.
#[derive(Debug, Serialize)]
struct TargetRun {
    target: String,
    seconds: f64,
    inputs: u64,
    /// Inputs that crashed (panic, abort, out of memory or timeout), as the engine reports.
    crashes: u64,
    command: String,
}

/// The record of a `fuzz` run.
#[derive(Debug, Serialize)]
struct Record {
    date: String,
    engine: Engine,
    seconds_per_target: u64,
    total_inputs: u64,
    total_crashes: u64,
    targets: Vec<TargetRun>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs `fuzz`.
pub fn run(args: &Args) -> Result<()> {
    let targets: Vec<String> = if args.targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        for t in &args.targets {
            if !TARGETS.contains(&t.as_str()) {
                bail!("unknown target {t:?}; known: {}", TARGETS.join(", "));
            }
        }
        args.targets.clone()
    };
    let root = workspace();
    let mut runs = Vec::new();
    for target in &targets {
        let run = match args.engine {
            Engine::Libfuzzer => libfuzzer(&root, target, args.seconds_per_target)?,
            Engine::Mutate => mutate(&root, target, args.seconds_per_target)?,
        };
        println!(
            "{target}: {} inputs in {:.0} s, {} crashes",
            run.inputs, run.seconds, run.crashes
        );
        runs.push(run);
    }
    let record = Record {
        date: today(),
        engine: args.engine,
        seconds_per_target: args.seconds_per_target,
        total_inputs: runs.iter().map(|r| r.inputs).sum(),
        total_crashes: runs.iter().map(|r| r.crashes).sum(),
        targets: runs,
    };
    let name = match args.engine {
        Engine::Libfuzzer => "libfuzzer",
        Engine::Mutate => "mutate",
    };
    let path = args.out.join(format!("{name}-{}.json", record.date));
    std::fs::create_dir_all(&args.out)?;
    write_atomically(&path, &serde_json::to_vec_pretty(&record)?)?;
    println!(
        "{} inputs, {} crashes over {} targets → {}",
        record.total_inputs,
        record.total_crashes,
        record.targets.len(),
        path.display()
    );
    if record.total_crashes > 0 {
        bail!("the fuzzers found crashes (inputs under fuzz/artifacts/)");
    }
    Ok(())
}

/// One target under libFuzzer, its corpus seeded with `slimfit-fuzz`'s seeds.
fn libfuzzer(root: &Path, target: &str, seconds: u64) -> Result<TargetRun> {
    let corpus = root.join("fuzz/corpus").join(target);
    let mut seed = slimfit_fuzz_command(root, target);
    seed.arg("--write-seeds").arg(&corpus);
    super::run(&mut seed).context("writing the seed corpus")?;
    let max_time = format!("-max_total_time={seconds}");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args(["+nightly", "fuzz", "run", target]);
    cmd.arg(&corpus).args([
        "--",
        &max_time,
        "-timeout=30",
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
    ]);
    let shown = format!(
        "cargo +nightly fuzz run {target} fuzz/corpus/{target} -- {max_time} -timeout=30 \
         -rss_limit_mb=4096 -print_final_stats=1"
    );
    let start = Instant::now();
    let out = cmd
        .output()
        .context("cannot start `cargo +nightly fuzz` (rustup toolchain install nightly; cargo install cargo-fuzz)")?;
    let seconds = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let inputs = final_stat(&stderr, "stat::number_of_executed_units:").with_context(|| {
        format!(
            "{shown}: no final statistics in its output:\n{}",
            tail(&stderr)
        )
    })?;
    let crashes = u64::from(!out.status.success());
    if crashes > 0 {
        eprintln!("{target}: libFuzzer stopped on a crash:\n{}", tail(&stderr));
    }
    Ok(TargetRun {
        target: target.into(),
        seconds,
        inputs,
        crashes,
        command: shown,
    })
}

/// One target under the mutation fuzzer.
fn mutate(root: &Path, target: &str, seconds: u64) -> Result<TargetRun> {
    let out = slimfit_fuzz_command(root, target)
        .args(["--seconds", &seconds.to_string()])
        .output()
        .context("cannot start the mutation fuzzer")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .with_context(|| {
            format!(
                "slimfit-fuzz {target} stopped without its report ({}):\n{}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr))
            )
        })?;
    Ok(TargetRun {
        target: target.into(),
        seconds: line["seconds"].as_f64().unwrap_or(0.0),
        inputs: line["inputs"].as_u64().unwrap_or(0),
        crashes: line["panics"].as_u64().unwrap_or(0),
        command: format!(
            "cargo run --release -p slimfit-fuzz -- --targets {target} --seconds {seconds}"
        ),
    })
}

/// `cargo run --release -p slimfit-fuzz -- --targets <target>` in `root`, more arguments to
/// follow.
fn slimfit_fuzz_command(root: &Path, target: &str) -> Command {
    let mut command = Command::new(cargo());
    command.current_dir(root).args([
        "run",
        "--release",
        "-q",
        "-p",
        "slimfit-fuzz",
        "--",
        "--targets",
        target,
    ]);
    command
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The value of libFuzzer's final statistic `key`.
fn final_stat(output: &str, key: &str) -> Option<u64> {
    output
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Today's date (UTC) as YYYY-MM-DD.
fn today() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzers_final_statistics_are_read() {
        let out = "#1024 DONE cov: 10\nDone 2048 runs in 3 second(s)\n\
                   stat::number_of_executed_units: 2048\nstat::peak_rss_mb: 80\n";
        assert_eq!(
            final_stat(out, "stat::number_of_executed_units:"),
            Some(2048)
        );
        assert_eq!(final_stat(out, "stat::missing:"), None);
    }

    #[test]
    fn today_is_a_date() {
        let d = today();
        assert_eq!(d.len(), 10, "{d}");
        assert!(d.starts_with("20"), "{d}");
    }
}
