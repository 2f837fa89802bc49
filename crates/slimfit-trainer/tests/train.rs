//! The `train` job on a tiny task in the real GLUE (RTE) layout with the real MiniLM
//! checkpoint: determinism, freezing, reports, and clear errors for bad input.

use std::path::Path;
use std::process::Command;

use slimfit_data::GlueTask;
use slimfit_memory::CountingAllocator;
use slimfit_trainer::backend::{TrainingBackend, default_device};
use slimfit_trainer::run_config::TrainSettings;
use slimfit_trainer::train::{MemoryBudget, PolicyKind, TrainConfig, TrainReport, Variant, train};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

const PAIRS: [(&str, &str, &str); 8] = [
    (
        "A cat sat on the mat.",
        "A cat is on the mat.",
        "entailment",
    ),
    (
        "The sun rises in the east.",
        "The sun rises in the west.",
        "not_entailment",
    ),
    (
        "John bought a red car yesterday.",
        "John owns a car.",
        "entailment",
    ),
    (
        "Mary is a doctor in Boston.",
        "Mary is a lawyer.",
        "not_entailment",
    ),
    (
        "The meeting was cancelled due to rain.",
        "The meeting took place.",
        "not_entailment",
    ),
    (
        "Paris is the capital of France.",
        "France has a capital.",
        "entailment",
    ),
    (
        "The dog chased the ball across the park.",
        "An animal ran.",
        "entailment",
    ),
    (
        "He never learned to swim.",
        "He is a champion swimmer.",
        "not_entailment",
    ),
];

fn write_rte(dir: &Path) {
    let rte = dir.join("RTE");
    std::fs::create_dir_all(&rte).unwrap();
    let mut text = String::from("index\tsentence1\tsentence2\tlabel\n");
    for i in 0..24 {
        let (a, b, l) = PAIRS[i % PAIRS.len()];
        text.push_str(&format!("{i}\t{a}\t{b}\t{l}\n"));
    }
    std::fs::write(rte.join("train.tsv"), &text).unwrap();
    std::fs::write(rte.join("dev.tsv"), &text).unwrap();
}

fn config(data_dir: &Path, policy: PolicyKind, variant: Variant) -> TrainConfig {
    TrainSettings {
        task: Some(GlueTask::Rte.into()),
        data_dir: Some(data_dir.to_path_buf()),
        policy: Some(policy),
        freeze_rate: policy.uses_freeze_rate().then_some(0.9),
        variant: Some(variant),
        // The variant's storage for every policy, full fine-tuning included.
        compression: Some(variant.defaults().0),
        epochs: Some(1),
        batch: Some(8),
        lr: Some(1e-4),
        max_len: Some(64),
        seed: Some(3),
        ..TrainSettings::default()
    }
    .resolve()
    .unwrap()
}

/// The backend's RNG (weights of new heads, dropout) is process-wide: runs in parallel test
/// threads would draw from it in turn and lose their determinism.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(config: TrainConfig) -> TrainReport {
    let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    train::<TrainingBackend>(config, &default_device().unwrap(), |_, _, _, _| {}).unwrap()
}

#[test]
fn same_seed_same_trace_and_loss_curve() {
    let dir = tempfile::tempdir().unwrap();
    write_rte(dir.path());
    let a = run(config(dir.path(), PolicyKind::Ils, Variant::Default));
    let b = run(config(dir.path(), PolicyKind::Ils, Variant::Default));
    assert_eq!(a.loss_curve.len(), 3);
    assert_eq!(a.loss_curve, b.loss_curve);
    assert_eq!(a.trained_steps_per_unit, b.trained_steps_per_unit);
    // floor(0.9 · 54) = 48 units frozen every step; 6 train.
    assert!(
        a.frozen_per_step.iter().all(|&f| f == 48),
        "{:?}",
        a.frozen_per_step
    );
    let trained: usize = a.trained_steps_per_unit.iter().map(|(_, n)| n).sum();
    assert_eq!(trained, 3 * 6);
    // Warm-up: three steps of six fresh units each, no unit twice.
    assert!(a.trained_steps_per_unit.iter().all(|(_, n)| *n <= 1));
    assert!(a.loss_curve.iter().all(|l| l.is_finite()));
    assert!(a.dev_metrics[0].metrics.contains_key("accuracy"));
    // The MiniLM weights alone are 87 MiB.
    assert!(a.peak_bytes.unwrap().0 > 87 << 20);
}

#[test]
fn full_policy_trains_everything_and_paper_variant_runs() {
    let dir = tempfile::tempdir().unwrap();
    write_rte(dir.path());
    let mut full = config(dir.path(), PolicyKind::Full, Variant::Default);
    full.freeze_rate = 0.0;
    full.compression = slimfit_models::Compression::Exact;
    let full = run(full);
    assert!(full.frozen_per_step.iter().all(|&f| f == 0));
    assert!(full.trained_steps_per_unit.iter().all(|(_, n)| *n == 3));
    let paper = run(config(dir.path(), PolicyKind::Ils, Variant::Paper));
    assert!(paper.loss_curve.iter().all(|l| l.is_finite()));
}

/// Scoring only observes: full fine-tuning (which takes no score copies) and ILS with
/// nothing frozen (which scores every unit) train the same units the same way — weight
/// decay included — so their loss curves agree to the bit. A lr of 1e-2 makes decay's
/// factor (1 − lr · 0.01) show in the second step's loss.
#[test]
fn scoring_changes_nothing_that_trains() {
    let dir = tempfile::tempdir().unwrap();
    write_rte(dir.path());
    let setting = |policy| TrainConfig {
        freeze_rate: 0.0,
        lr: 1e-2,
        ..config(dir.path(), policy, Variant::Default)
    };
    let full = run(setting(PolicyKind::Full));
    let ils = run(setting(PolicyKind::Ils));
    assert!(!full.score_snapshots);
    assert!(ils.score_snapshots);
    assert_eq!(ils.frozen_per_step, full.frozen_per_step);
    assert_eq!(ils.loss_curve, full.loss_curve);
}

/// Batches pad to their longest row, so budget mode fits k at the longest training sequence
/// (here ~20 tokens), not at `--max-len`: raising `--max-len` beyond the data changes
/// nothing, and a budget that fits the data is not refused for lengths it never sees.
#[test]
fn budget_mode_fits_the_longest_training_sequence_not_max_len() {
    let dir = tempfile::tempdir().unwrap();
    write_rte(dir.path());
    let budgeted = |max_len, budget| TrainConfig {
        max_len,
        memory_budget: MemoryBudget::Bytes(budget),
        ..config(dir.path(), PolicyKind::Ils, Variant::Default)
    };
    let generous = slimfit_memory::Bytes(4 << 30);
    let short = run(budgeted(64, generous));
    let fit = short.budget.clone().unwrap();
    assert!(short.longest_train_sequence < 64);
    assert_eq!(fit.trainable_units, short.total_units);
    // Barely above what the data needs with every unit trainable (16 MiB for what else the
    // process holds by the second run: its runtime overhead grows by a few MiB), at 8× the
    // length: a 512-token step would need hundreds of MiB more.
    let tight = fit.predicted_worst_case_peak + slimfit_memory::Bytes(16 << 20);
    let long = run(budgeted(512, tight));
    let long_fit = long.budget.clone().unwrap();
    assert_eq!(long.longest_train_sequence, short.longest_train_sequence);
    // The same step planned: equal peaks once each run's runtime overhead is set aside.
    let step = |f: &slimfit_trainer::train::BudgetReport| {
        f.predicted_worst_case_peak.0 as i64 - f.runtime_overhead.0 as i64
    };
    assert!(
        (step(&long_fit) - step(&fit)).abs() < 1 << 20,
        "{long_fit:?} vs {fit:?}"
    );
    assert_eq!(long_fit.trainable_units, long.total_units);
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_slimfit-trainer"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_inputs_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = cli(&["train", "--task", "rte", "--data-dir", "/nonexistent/glue"]);
    assert!(
        !ok && err.contains("/nonexistent/glue/RTE/train.tsv"),
        "{err}"
    );
    let (ok, err) = cli(&["train", "--task", "squad", "--data-dir", "/tmp"]);
    assert!(
        !ok && err.contains("unknown task") && err.contains("spam-assassin"),
        "{err}"
    );
    write_rte(dir.path());
    let data = dir.path().to_str().unwrap();
    let (ok, err) = cli(&[
        "train",
        "--task",
        "rte",
        "--data-dir",
        data,
        "--freeze-rate",
        "1.5",
    ]);
    assert!(!ok && err.contains("freezing rate"), "{err}");
    std::fs::write(
        dir.path().join("RTE/train.tsv"),
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tbroken row\n",
    )
    .unwrap();
    let (ok, err) = cli(&["train", "--task", "rte", "--data-dir", data]);
    assert!(!ok && err.contains("RTE/train.tsv:3"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
