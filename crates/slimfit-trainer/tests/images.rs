//! Image tasks: `train` on a small real Fashion-MNIST subset with the converted DINOv2-S
//! checkpoint (through the library and through the binary), `measure-step` on tiny random
//! ViT / DINOv2 configs, and clear errors.
//!
//! The real-data tests skip (printing why) only when the Fashion-MNIST data set or the
//! DINOv2-S checkpoint cannot be obtained (not cached, and no apt-get / Python to fetch or
//! convert them).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use slimfit_data::assets::DINOV2_SMALL;
use slimfit_data::images::fashion_mnist;
use slimfit_memory::CountingAllocator;
use slimfit_models::{CompressionConfig, ViTConfig};
use slimfit_trainer::backend::{TrainingBackend, default_device};
use slimfit_trainer::measure::{OptimizerStatePolicy, VitMeasureSpec, measure_vit_step};
use slimfit_trainer::run_config::TrainSettings;
use slimfit_trainer::task::{ImageTask, Task};
use slimfit_trainer::train::{PolicyKind, TrainConfig, train};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// In-process runs share the backend RNG and the allocator's peak: one at a time.
static IN_PROCESS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// DINOv2-S: 3 embedding units, 10 per layer × 12, the final LayerNorm γ, the classifier.
const DINOV2_S_UNITS: usize = 125;

/// The data set directory and the checkpoint, or why they cannot be had.
fn assets() -> Option<(PathBuf, PathBuf)> {
    let data = match fashion_mnist::resolve(None) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("SKIPPED: Fashion-MNIST cannot be obtained: {e}");
            return None;
        }
    };
    match DINOV2_SMALL.resolve(None) {
        Ok(model) => Some((data, model)),
        Err(e) => {
            eprintln!("SKIPPED: the DINOv2-S checkpoint cannot be obtained: {e}");
            None
        }
    }
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_slimfit-trainer"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn train_fashion_mnist_through_the_binary_writes_the_report() {
    let Some((data, model)) = assets() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let (ok, stdout, stderr) = cli(&[
        "train",
        "--task",
        "fashion-mnist",
        "--data-dir",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--max-train-examples",
        "40",
        "--max-dev-examples",
        "20",
        "--epochs",
        "1",
        "--batch",
        "8",
        "--image-size",
        "28",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("epoch 1: accuracy"), "{stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let c = &r["config"];
    assert_eq!(c["task"], "fashion-mnist");
    // The one-run default: ILS in budget mode under the target the run chose, frozen
    // moments dropped, a head warm-up; the default variant (scaled compression, relative L1).
    assert_eq!(c["policy"], "ils");
    assert_eq!(c["memory_budget"]["cap_of_full"], 0.5);
    assert_eq!(c["optimizer_state"], "drop");
    assert_eq!(c["head_warmup"], 0.2);
    assert!(r["budget"]["origin"]["planned"]["full"].as_u64().is_some());
    assert_eq!(c["compression"], "scaled");
    assert_eq!(c["score"], "relative-l1");
    assert_eq!(c["lr"], Task::Image(ImageTask::FashionMnist).defaults().1);
    assert_eq!(c["image"]["image_size"], 28);
    assert_eq!(c["image"]["augment"], true);
    assert_eq!(
        (r["train_examples"].as_u64(), r["dev_examples"].as_u64()),
        (Some(40), Some(20))
    );
    // 28 px at patch 14: 2 × 2 patches and the class token.
    assert_eq!(r["longest_train_sequence"], 5);
    assert_eq!(r["total_units"], DINOV2_S_UNITS);
    let metrics = r["dev_metrics"][0]["metrics"].as_object().unwrap();
    assert_eq!(metrics.keys().collect::<Vec<_>>(), ["accuracy"]);
    let acc = metrics["accuracy"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&acc), "{acc}");
    // 40 images in batches of 8: 5 steps. The head always trains (as the reference's
    // CIFAR-10): the first step (the 20 % warm-up) trains it alone, freezing all 124
    // candidates; then the budget trains some of them.
    let frozen: Vec<u64> = r["frozen_per_step"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(frozen[0], 124);
    assert!(frozen[1..].iter().all(|&f| f < 124), "{frozen:?}");
    let head = r["trained_steps_per_unit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u[0] == "classifier.weight")
        .unwrap();
    assert_eq!(head[1], 5);
    let losses = r["loss_curve"].as_array().unwrap();
    assert_eq!(losses.len(), 5);
    assert!(losses.iter().all(|l| l.as_f64().unwrap().is_finite()));
    // The weights alone are 87 MiB (22.1 M parameters); Adam state adds twice that for the
    // units that trained.
    assert!(
        r["peak_bytes"].as_u64().unwrap() > 87 << 20,
        "{}",
        r["peak_bytes"]
    );
    assert!(r["wall_seconds"].as_f64().unwrap() > 0.0);
}

/// Budget mode on an image task: the accountant's ViT plan picks k, the trainer sheds and
/// refills per step, and the measured peak of the whole run stays under the budget.
#[test]
fn memory_budget_bounds_a_real_dinov2_run() {
    let Some((data, model)) = assets() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let budget: u64 = 240 << 20;
    let (ok, _, stderr) = cli(&[
        "train",
        "--task",
        "fashion-mnist",
        "--data-dir",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--max-train-examples",
        "32",
        "--max-dev-examples",
        "16",
        "--epochs",
        "1",
        "--batch",
        "8",
        "--image-size",
        "28",
        "--optimizer-state",
        "drop",
        "--memory-budget",
        "240MiB",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let b = &r["budget"];
    let k = b["trainable_units"].as_u64().unwrap();
    // Weights 84 MiB; with Adam state dropped the budget buys some units, not all 125.
    assert!((2..DINOV2_S_UNITS as u64).contains(&k), "{b}");
    assert!(
        b["predicted_worst_case_peak"].as_u64().unwrap() <= budget,
        "{b}"
    );
    let peak = r["peak_bytes"].as_u64().unwrap();
    assert!(peak <= budget, "measured {peak} over the budget {budget}");
    // ILS picks k; the steps whose set is cheaper than the worst case are refilled with
    // more units, so some step trains more than k — and the peak above still held.
    let most = r["frozen_per_step"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| DINOV2_S_UNITS as u64 - f.as_u64().unwrap())
        .max()
        .unwrap();
    assert!(most > k, "at most {most} units trained, k = {k}");
    assert!(b["refilled_unit_steps"].as_u64().unwrap() > 0, "{b}");
    // Each step's measured peak sits beside the accountant's prediction for its set.
    let measured = r["step_peak_bytes"].as_array().unwrap();
    let predicted = b["predicted_step_peaks"].as_array().unwrap();
    assert_eq!(measured.len(), r["loss_curve"].as_array().unwrap().len());
    assert_eq!(measured.len(), predicted.len());
    for (m, p) in measured.iter().zip(predicted) {
        let (m, p) = (m.as_f64().unwrap(), p.as_f64().unwrap());
        assert!(
            (m - p).abs() <= 0.1 * p,
            "step measured {m} vs predicted {p}"
        );
    }
}

#[test]
fn train_fashion_mnist_in_process_ils_and_full() {
    let Some((data, model)) = assets() else {
        return;
    };
    let _serial = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let task = Task::Image(ImageTask::FashionMnist);
    let (rate, _, _) = task.defaults();
    let config = TrainSettings {
        task: Some(task),
        data_dir: Some(data.clone()),
        model: Some(model),
        policy: Some(PolicyKind::Ils),
        freeze_rate: Some(rate),
        epochs: Some(1),
        batch: Some(8),
        warmup: Some(0.1),
        seed: Some(5),
        max_train_examples: Some(40),
        max_dev_examples: Some(20),
        optimizer_state: Some(OptimizerStatePolicy::Drop),
        image_size: Some(28),
        no_augment: true,
        ..TrainSettings::default()
    }
    .resolve()
    .unwrap();
    let run = |config: TrainConfig| {
        train::<TrainingBackend>(config, &default_device().unwrap(), |_, _, _, _| {})
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let ils = run(config.clone());
    let again = run(config.clone());
    assert_eq!(ils.loss_curve, again.loss_curve, "same seed, same losses");
    assert_eq!(ils.config.data_dir.as_deref(), Some(data.as_path()));
    assert_eq!(ils.total_units, DINOV2_S_UNITS);
    // 124 candidates (the head always trains): 111 frozen, 13 candidates and the head train.
    assert!(ils.frozen_per_step.iter().all(|&f| f == 111));
    let trained: Vec<usize> = ils.trained_steps_per_unit.iter().map(|(_, n)| *n).collect();
    assert_eq!(trained.iter().sum::<usize>(), 5 * 14);
    // Warm-up: every candidate trains once in the first ⌈124 / 13⌉ = 10 steps; 5 steps here.
    let (head, rest) = trained.split_last().unwrap();
    assert_eq!(*head, 5);
    assert!(rest.iter().all(|&n| n <= 1), "{trained:?}");
    let names: BTreeSet<&str> = ils
        .trained_steps_per_unit
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    for unit in [
        "embeddings.patch_embeddings.projection.weight",
        "encoder.layer.0.layer_scale1.lambda1",
        "encoder.layer.11.mlp.fc2.weight",
        "classifier.weight",
    ] {
        assert!(names.contains(unit), "{unit}");
    }
    assert!(ils.loss_curve.iter().all(|l| l.is_finite()));
    assert_eq!(
        ils.dev_metrics[0].metrics.keys().collect::<Vec<_>>(),
        ["accuracy"]
    );
    let ils_peak = ils.peak_bytes.expect("measured on flex");

    // Head warm-up 0.4 of 5 steps: the first 2 train the head alone, then ILS as above
    // (its warm-up starts over: every unit trained at most once).
    let probed = run(TrainConfig {
        head_warmup: 0.4,
        ..config.clone()
    });
    assert_eq!(probed.frozen_per_step, [124, 124, 111, 111, 111]);
    assert_eq!(probed.trained_units_per_step[0], [124]);
    assert_eq!(probed.trained_units_per_step[2].len(), 14);
    let (head, rest) = probed.trained_steps_per_unit.split_last().unwrap();
    assert_eq!(head.1, 5);
    assert!(rest.iter().all(|(_, n)| *n <= 1));
    assert_eq!(rest.iter().map(|(_, n)| n).sum::<usize>(), 3 * 13);

    let full = run(TrainConfig {
        policy: PolicyKind::Full,
        freeze_rate: 0.0,
        compression: slimfit_models::Compression::Exact,
        optimizer_state: OptimizerStatePolicy::Keep,
        ..config
    });
    assert!(full.frozen_per_step.iter().all(|&f| f == 0));
    assert!(full.trained_steps_per_unit.iter().all(|(_, n)| *n == 5));
    // Full fine-tuning holds Adam moments of every weight: 2 × 87 MiB more than ILS with
    // frozen units' state dropped.
    let full_peak = full.peak_bytes.expect("measured on flex");
    assert!(
        full_peak.0 > ils_peak.0 + (150 << 20),
        "full {full_peak} vs ILS {ils_peak}"
    );
}

#[test]
fn image_task_errors_are_clear() {
    let (ok, _, err) = cli(&["train", "--task", "cifar10"]);
    if DINOV2_SMALL.resolve(None).is_ok() {
        assert!(
            !ok && err.contains("--data-dir") && err.contains("cifar10"),
            "{err}"
        );
    }
    let (ok, _, err) = cli(&["train", "--task", "rte", "--image-size", "56"]);
    assert!(!ok && err.contains("apply to image tasks"), "{err}");
    let (ok, _, err) = cli(&[
        "train",
        "--task",
        "imagenet",
        "--data-dir",
        "/nonexistent/in",
    ]);
    if DINOV2_SMALL.resolve(None).is_ok() {
        assert!(!ok && err.contains("/nonexistent/in/train"), "{err}");
    }
    if assets().is_some() {
        let (ok, _, err) = cli(&[
            "train",
            "--task",
            "fashion-mnist",
            "--image-size",
            "10",
            "--max-train-examples",
            "10",
        ]);
        assert!(
            !ok && err.contains("smaller than one 14-pixel patch"),
            "{err}"
        );
        let (ok, _, err) = cli(&[
            "train",
            "--task",
            "fashion-mnist",
            "--memory-budget",
            "100MiB",
            "--max-train-examples",
            "10",
        ]);
        // DINOv2-S's weights alone are 84 MiB: even every unit frozen does not fit.
        assert!(
            !ok && err.contains("--memory-budget") && err.contains("every unit frozen"),
            "{err}"
        );
    }
    let (ok, _, err) = cli(&[
        "train",
        "--task",
        "fashion-mnist",
        "--model",
        "/nonexistent/m",
    ]);
    assert!(!ok && err.contains("config.json is missing"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A tiny DINOv2 (or ViT): 2 layers, H 32, 4 heads, 4-pixel patches, 16-pixel images.
fn tiny_config(model_type: &str) -> String {
    format!(
        r#"{{"model_type":"{model_type}","hidden_size":32,"num_hidden_layers":2,
            "num_attention_heads":4,"intermediate_size":128,"image_size":16,"patch_size":4}}"#
    )
}

#[test]
fn measure_step_vit_on_tiny_random_configs() {
    let dir = tempfile::tempdir().unwrap();
    // Units: patch projection, cls token, position table; per layer LN₁, Q, K, V, O, (λ₁),
    // LN₂, FFN1, FFN2, (λ₂); final LN; classifier.
    for (model_type, units) in [("dinov2", 3 + 2 * 10 + 2), ("vit", 3 + 2 * 8 + 2)] {
        let path = dir.path().join(format!("{model_type}.json"));
        std::fs::write(&path, tiny_config(model_type)).unwrap();
        let (ok, stdout, stderr) = cli(&[
            "measure-step",
            "--model-config",
            path.to_str().unwrap(),
            "--batch",
            "2",
            "--image-size",
            "20",
            "--compression",
            "scaled",
            "--json",
        ]);
        assert!(ok, "{stderr}");
        let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(r["model_type"], model_type);
        assert_eq!(r["total_units"], units);
        assert_eq!(r["frozen_units"], (0.9 * units as f64).floor() as u64);
        // 20 px at patch 4: a 5 × 5 grid (the 4 × 4 trained grid is interpolated).
        assert_eq!(r["seq"], 26);
        assert_eq!(
            (r["image_size"].as_u64(), r["patch_size"].as_u64()),
            (Some(20), Some(4))
        );
        assert_eq!(r["num_labels"], 1000);
        let peak = r["peak_bytes"].as_u64().unwrap();
        let resident = r["resident_before_bytes"].as_u64().unwrap();
        assert!(peak > resident, "{r}");
        assert_eq!(
            r["activation_peak_bytes"].as_u64().unwrap(),
            peak - resident
        );
        for phase in ["forward", "backward", "update"] {
            assert!(
                r["phases"][phase]["peak_bytes"].as_u64().unwrap() > 0,
                "{phase}"
            );
        }
        assert!(r["parameters"].as_u64().unwrap() > 0);
    }
    let (ok, stdout, stderr) = cli(&[
        "measure-step",
        "--model-config",
        dir.path().join("dinov2.json").to_str().unwrap(),
        "--batch",
        "2",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("16×16 px (17 tokens, patch 4)") && stdout.contains("22/25 units frozen"),
        "{stdout}"
    );
    let (ok, _, stderr) = cli(&[
        "measure-step",
        "--model-config",
        "vit-base-16-224",
        "--seq",
        "9",
    ]);
    assert!(!ok && stderr.contains("--image-size"), "{stderr}");
}

#[test]
fn measure_vit_step_in_process_freezing_shrinks_the_step() {
    let _serial = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let config: ViTConfig = serde_json::from_str(&tiny_config("dinov2")).unwrap();
    let device = default_device().unwrap();
    let measure = |rate, compression| {
        let spec = VitMeasureSpec {
            freeze_rate: rate,
            compression: CompressionConfig::uniform(compression),
            seed: 1,
            ..VitMeasureSpec::new(config.clone(), "tiny", 4, Some(32))
        };
        measure_vit_step::<TrainingBackend>(spec, &device).unwrap()
    };
    let full = measure(0.0, slimfit_models::Compression::Exact);
    let slim = measure(0.9, slimfit_models::Compression::Scaled);
    assert_eq!(full.spec.seq, 1 + 8 * 8);
    assert_eq!((full.frozen_units, slim.frozen_units), (0, 22));
    assert_eq!(full.total_units, 25);
    assert!(full.peak_bytes > full.resident_before_bytes);
    assert!(
        slim.activation_peak_bytes < full.activation_peak_bytes,
        "SlimFit {} vs full {}",
        slim.activation_peak_bytes,
        full.activation_peak_bytes
    );
}

/// A crash is simulated in process (a panic in the progress callback after step 3, which
/// unwinds out of `train` as a kill would stop it): the run resumed from its step-2
/// checkpoint ends as the uninterrupted run — the augmentation generator, the dropped
/// moments and the scores all carried over.
#[test]
fn an_image_run_resumed_after_a_crash_ends_as_the_uninterrupted_run() {
    let Some((data, model)) = assets() else {
        return;
    };
    let _serial = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let task = Task::Image(ImageTask::FashionMnist);
    let (rate, _, _) = task.defaults();
    let config = TrainSettings {
        task: Some(task),
        data_dir: Some(data),
        model: Some(model),
        policy: Some(PolicyKind::Ils),
        freeze_rate: Some(rate),
        epochs: Some(2),
        batch: Some(8),
        seed: Some(11),
        max_train_examples: Some(40),
        max_dev_examples: Some(16),
        optimizer_state: Some(OptimizerStatePolicy::Drop),
        image_size: Some(28),
        output: Some(tmp.path().join("whole")),
        ..TrainSettings::default()
    }
    .resolve()
    .unwrap();
    let device = default_device().unwrap();
    let whole = train::<TrainingBackend>(config.clone(), &device, |_, _, _, _| {}).unwrap();

    let mut resumed = config.clone();
    resumed.output = Some(tmp.path().join("resumed"));
    resumed.checkpoints.dir = Some(tmp.path().join("ckpt"));
    resumed.checkpoints.every = Some(2);
    let crashing = resumed.clone();
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train::<TrainingBackend>(crashing, &device, |step, _, _, _| {
            assert!(step < 3, "simulated crash after step {step}");
        })
    }));
    assert!(crashed.is_err(), "the run should have crashed at step 3");
    resumed.checkpoints.resume = true;
    let mut steps_seen = Vec::new();
    let report =
        train::<TrainingBackend>(resumed, &device, |step, _, _, _| steps_seen.push(step)).unwrap();
    assert_eq!(
        steps_seen,
        (3..=10).collect::<Vec<_>>(),
        "resumed after step 2"
    );
    assert_eq!(report.loss_curve, whole.loss_curve);
    assert_eq!(report.trained_units_per_step, whole.trained_units_per_step);
    let metrics = |r: &slimfit_trainer::train::TrainReport| {
        r.dev_metrics
            .iter()
            .map(|m| m.metrics["accuracy"])
            .collect::<Vec<_>>()
    };
    assert_eq!(metrics(&report), metrics(&whole));
    let weights = |name: &str| std::fs::read(tmp.path().join(name).join("model.safetensors"));
    assert!(weights("resumed").unwrap() == weights("whole").unwrap());
}
