//! `train` on the real SpamAssassin corpus (a small balanced subset), the main job end to end
//! at a tiny size, and clear errors when data is missing.
//!
//! The real-data tests skip (printing why) only when npm is unavailable *and* the dataset
//! cache is empty.

use std::collections::BTreeSet;

use slimfit_data::assets::MINILM_L6_V2;
use slimfit_data::{Label, SpamAssassin, Split, spam};
use slimfit_memory::{Bytes, CountingAllocator};
use slimfit_trainer::backend::{TrainingBackend, default_device};
use slimfit_trainer::measure::OptimizerStatePolicy;
use slimfit_trainer::run_config::TrainSettings;
use slimfit_trainer::task::{GLUE_DIR_ENV, Task};
use slimfit_trainer::train::{MemoryBudget, PolicyKind, TrainConfig, Variant, train};

mod common;

use common::{TINY_RUN, cli, corpus_obtainable};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// In-process training runs share the backend RNG and the allocator's peak: one at a time.
static IN_PROCESS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn trains_on_a_small_balanced_spam_subset() {
    if !corpus_obtainable() {
        return;
    }
    let _serial = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let corpus = SpamAssassin::open(None).unwrap_or_else(|e| panic!("{e}"));
    // The subset the run uses is balanced.
    let ham = |examples: &[slimfit_data::Example]| {
        examples
            .iter()
            .filter(|e| e.label == Label::Class(0))
            .count()
    };
    assert_eq!(ham(&corpus.examples(Split::Train, Some(64))), 32);
    assert_eq!(ham(&corpus.examples(Split::Dev, Some(32))), 16);

    let config = TrainSettings {
        task: Some(Task::SpamAssassin),
        policy: Some(PolicyKind::Ils),
        freeze_rate: Some(Task::SpamAssassin.defaults().0),
        epochs: Some(1),
        batch: Some(16),
        max_len: Some(32),
        seed: Some(5),
        max_train_examples: Some(64),
        max_dev_examples: Some(32),
        ..TrainSettings::default()
    }
    .resolve()
    .unwrap();
    let report =
        train::<TrainingBackend>(config, &default_device().unwrap(), |_, _, _, _| {}).unwrap();

    assert_eq!((report.train_examples, report.dev_examples), (64, 32));
    // Emails are long: the longest one fills the truncation length.
    assert_eq!(report.longest_train_sequence, 32);
    assert_eq!(report.loss_curve.len(), 4);
    assert!(report.loss_curve.iter().all(|l| l.is_finite() && *l > 0.0));
    // floor(0.9 · 54) = 48 units frozen at every step; the other 6 train.
    assert_eq!(report.total_units, 54);
    assert_eq!(report.frozen_per_step, vec![48; 4]);
    let trained: usize = report.trained_steps_per_unit.iter().map(|(_, n)| n).sum();
    assert_eq!(trained, 4 * 6);
    assert_eq!(report.dev_metrics.len(), 1);
    let metrics = &report.dev_metrics[0].metrics;
    let names: BTreeSet<&str> = metrics.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["accuracy", "f1"]));
    assert!(
        metrics.values().all(|v| (0.0..=100.0).contains(v)),
        "{metrics:?}"
    );
    // The MiniLM weights alone are 87 MiB.
    assert!(report.peak_bytes.unwrap().0 > 87 << 20);

    // The report names the task and the directory actually read.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["config"]["task"], "spam-assassin");
    assert_eq!(json["config"]["max_dev_examples"], 32);
    let dir = json["config"]["data_dir"].as_str().unwrap();
    assert!(
        std::path::Path::new(dir).join(spam::FILE_LIST).is_file(),
        "{dir}"
    );
    assert!(json["dev_metrics"][0]["metrics"]["f1"].is_number());
}

#[test]
fn main_job_at_a_tiny_size_prints_its_summary_and_writes_the_report() {
    if !corpus_obtainable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("nested/main-job.json");
    let (ok, stdout, stderr) = cli(
        &[
            &["main-job"][..],
            &TINY_RUN,
            &["--report", report.to_str().unwrap()],
        ]
        .concat(),
        &[],
    );
    assert!(ok, "{stderr}");
    for expected in [
        "SpamAssassin",
        "dev, epoch 1 (16 examples)",
        "accuracy",
        "f1",
        "88.9 % (48.0 of 54)",
        "peak memory of this training run",
        "peak of one step, 32 × 16 tokens",
        "full fine-tuning",
        "× less",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in:\n{stdout}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["config"]["task"], "spam-assassin");
    assert_eq!(json["config"]["policy"], "ils");
    assert_eq!(json["config"]["freeze_rate"], 0.9);
    assert_eq!(json["train_examples"], 32);
    let memory = &json["memory_comparison"];
    assert_eq!(memory["full_fine_tuning"]["frozen_units"], 0);
    assert_eq!(memory["slimfit"]["frozen_units"], 48);
    assert_eq!(memory["slimfit"]["seq"], 16);
    let full = memory["full_fine_tuning"]["peak_bytes"].as_u64().unwrap();
    let slim = memory["slimfit"]["peak_bytes"].as_u64().unwrap();
    assert!(full > slim, "full {full} vs SlimFit {slim}");
    assert!((json["mean_frozen_fraction"].as_f64().unwrap() - 48.0 / 54.0).abs() < 1e-9);
}

#[test]
fn train_without_method_flags_runs_the_one_run_default_and_a_flag_overrides_it() {
    if !corpus_obtainable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let report = dir.path().join(name);
        let mut args = [&["train", "--task", "spam-assassin"][..], &TINY_RUN].concat();
        args.extend_from_slice(&["--report", report.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let (ok, _, stderr) = cli(&args, &[]);
        assert!(ok, "{stderr}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        (json, stderr)
    };
    // No flag: budget mode under the target the run chose, said at start and reported.
    let (json, stderr) = run("default.json", &[]);
    assert!(
        stderr.contains("memory target") && stderr.contains("full fine-tuning's planned"),
        "{stderr}"
    );
    let cap = slimfit_trainer::memory_target::DEFAULT_CAP;
    assert_eq!(json["config"]["memory_budget"]["cap_of_full"], cap);
    assert_eq!(json["config"]["optimizer_state"], "drop");
    let planned = &json["budget"]["origin"]["planned"];
    let (frozen, all, full) = (
        planned["frozen"].as_u64().unwrap(),
        planned["slimfit_all"].as_u64().unwrap(),
        planned["full"].as_u64().unwrap(),
    );
    let least = frozen + (0.25 * (all - frozen) as f64) as u64;
    let expected = all.min((cap * full as f64) as u64).max(least);
    assert_eq!(json["budget"]["budget"].as_u64(), Some(expected));
    // An explicit freezing rate (or policy, or budget) overrides it.
    for (name, flags) in [
        ("rate.json", &["--freeze-rate", "0.9"][..]),
        ("policy.json", &["--policy", "ils"][..]),
        ("paper.json", &["--variant", "paper"][..]),
    ] {
        let (json, stderr) = run(name, flags);
        assert!(!stderr.contains("memory target"), "{name}: {stderr}");
        assert!(json["config"]["memory_budget"].is_null(), "{name}");
        assert!(json["budget"].is_null(), "{name}");
        assert_eq!(json["config"]["optimizer_state"], "keep", "{name}");
        assert_eq!(json["config"]["freeze_rate"], 0.9, "{name}");
    }
    let (json, _) = run("budget.json", &["--memory-budget", "400MiB"]);
    assert_eq!(json["config"]["memory_budget"], 400u64 << 20);
    assert_eq!(json["budget"]["budget"], 400u64 << 20);
}

#[test]
fn missing_data_fails_clearly() {
    let model = MINILM_L6_V2.resolve(None).unwrap();
    let model = model.to_str().unwrap();
    // An explicit SpamAssassin directory that is not one.
    let (ok, _, err) = cli(
        &[
            "train",
            "--task",
            "spam-assassin",
            "--model",
            model,
            "--data-dir",
            "/nonexistent/spam",
        ],
        &[],
    );
    assert!(
        !ok && err.contains("/nonexistent/spam") && err.contains("file_list.json"),
        "{err}"
    );
    // No cache and no npm client: the error says what to install or pass.
    let home = tempfile::tempdir().unwrap();
    let (ok, _, err) = cli(
        &["train", "--task", "spam-assassin", "--model", model],
        &[
            ("SLIMFIT_HOME", home.path().to_str().unwrap()),
            ("PATH", ""),
        ],
    );
    assert!(
        !ok && err.contains("no npm client") && err.contains("--data-dir"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // A GLUE task with no directory and no SLIMFIT_GLUE_DIR.
    let (ok, _, err) = cli(&["train", "--task", "mrpc", "--model", model], &[]);
    assert!(
        !ok && err.contains(GLUE_DIR_ENV) && err.contains("MRPC/train.tsv"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn memory_budget_bounds_the_measured_peak_of_a_real_run() {
    if !corpus_obtainable() {
        return;
    }
    let _serial = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let (_, lr, _) = Task::SpamAssassin.defaults();
    let (compression, score) = Variant::Default.defaults();
    let budget = Bytes(360 << 20);
    let config = |memory_budget| TrainConfig {
        task: Task::SpamAssassin,
        data_dir: None,
        model: MINILM_L6_V2.resolve(None).unwrap(),
        lisa: None,
        lora: None,
        activation_checkpointing: false,
        policy: PolicyKind::Ils,
        freeze_rate: 0.9,
        variant: Variant::Default,
        compression,
        score: score.into(),
        epochs: 1,
        batch: 16,
        grad_accum: 1,
        head_warmup: 0.0,
        lr,
        warmup: 0.0,
        max_len: 64,
        seed: 3,
        max_train_examples: Some(160),
        max_dev_examples: Some(16),
        optimizer_state: OptimizerStatePolicy::Keep,
        memory_budget,
        output: None,
        checkpoints: Default::default(),
        image: None,
    };
    let device = default_device().unwrap();
    let report = train::<TrainingBackend>(
        config(MemoryBudget::Bytes(budget)),
        &device,
        |_, _, _, _| {},
    )
    .unwrap();
    let fit = report.budget.as_ref().expect("budget mode reports its fit");
    // More than r = 0.9 allows (6 of 54), fewer than all.
    assert!(
        fit.trainable_units > 6 && fit.trainable_units < 54,
        "{fit:?}"
    );
    assert!(fit.predicted_worst_case_peak <= budget);
    assert_eq!(report.loss_curve.len(), 10);
    // Each step's set is refilled up to the budget (less its margin): the steps whose ILS
    // picks are cheaper than the worst case train more than k units.
    let most = report.frozen_per_step.iter().map(|f| 54 - f).max().unwrap();
    assert!(
        most > fit.trainable_units,
        "{most} vs k = {}",
        fit.trainable_units
    );
    assert!(fit.refilled_unit_steps > 0, "{fit:?}");
    // Adam state is kept for every unit that trained; the measured peak of the whole process
    // stays under the budget.
    let peak = report.peak_bytes.expect("flex counts bytes");
    assert!(peak <= budget, "measured {peak} above the budget {budget}");

    // A budget below an all-frozen step names the minimum.
    let err = train::<TrainingBackend>(
        config(MemoryBudget::Bytes(Bytes(200 << 20))),
        &device,
        |_, _, _, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("every unit frozen"), "{err}");

    // The one-run default: the least of SlimFit's plan with every unit but the vocabulary
    // table trainable and half of full fine-tuning's, both at this run's widest batch; the
    // run stays under it.
    // (As `train` resolves it: Adam moments of frozen units dropped.)
    let report = train::<TrainingBackend>(
        TrainConfig {
            optimizer_state: OptimizerStatePolicy::Drop,
            ..config(MemoryBudget::one_run_default())
        },
        &device,
        |_, _, _, _| {},
    )
    .unwrap();
    let fit = report
        .budget
        .as_ref()
        .expect("the default runs in budget mode");
    let planned = fit.origin.planned;
    let cap = slimfit_trainer::memory_target::DEFAULT_CAP;
    let expected = planned
        .slimfit_all
        .min(Bytes((cap * planned.full.0 as f64) as u64))
        .max(planned.least());
    assert_eq!(fit.budget, expected, "{:?}", fit.origin);
    assert!(
        planned.frozen < fit.budget && fit.budget < planned.full,
        "{planned:?}"
    );
    let peak = report.peak_bytes.expect("flex counts bytes");
    assert!(
        peak <= fit.budget,
        "measured {peak} above the target {}",
        fit.budget
    );
    assert!(
        fit.trainable_units < 54 && fit.trainable_units > 6,
        "{fit:?}"
    );
}

#[test]
fn a_diverging_run_stops_naming_the_step_and_writes_no_model_or_report() {
    if !corpus_obtainable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let report = dir.path().join("report.json");
    let mut args = [&["train", "--task", "spam-assassin"][..], &TINY_RUN].concat();
    args.extend_from_slice(&[
        "--batch",
        "8",
        "--policy",
        "full",
        "--lr",
        "1e30",
        "--output",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let (ok, stdout, stderr) = cli(&args, &[]);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("training diverged at step") && stderr.contains("of 4"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.exists() && !report.exists());
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn unusable_output_paths_fail_before_training_and_overwrite_replaces_a_checkpoint() {
    if !corpus_obtainable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let old = dir.path().join("old-checkpoint");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(old.join("config.json"), "{}").unwrap();
    let train = |extra: &[&str]| {
        let mut args = [&["train", "--task", "spam-assassin"][..], &TINY_RUN].concat();
        args.extend_from_slice(extra);
        cli(&args, &[])
    };
    let under_file = blocker.join("report.json");
    for (flags, named) in [
        (vec!["--report", under_file.to_str().unwrap()], "a-file"),
        (vec!["--output", blocker.to_str().unwrap()], "a-file"),
        (
            vec!["--output", old.to_str().unwrap()],
            "already holds a checkpoint",
        ),
    ] {
        let (ok, stdout, stderr) = train(&flags);
        assert!(!ok, "{flags:?}: {stdout}");
        assert!(stderr.contains(named), "{flags:?}: {stderr}");
        // Refused before the first step: nothing trained.
        assert!(!stdout.contains("epoch 1"), "{flags:?}: {stdout}");
    }
    assert_eq!(
        std::fs::read_to_string(old.join("config.json")).unwrap(),
        "{}"
    );
    let (ok, stdout, stderr) = train(&["--output", old.to_str().unwrap(), "--overwrite"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("fine-tuned model saved"), "{stdout}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(old.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["id2label"]["1"], "spam");
    assert!(old.join("model.safetensors").is_file());
}
