//! The baselines SlimFit is compared with — LISA, head-only, LoRA — on real SpamAssassin
//! runs of the binary: their traces have the shapes their definitions give, and LoRA's
//! output is a plain checkpoint.

mod common;

use std::collections::BTreeSet;

use common::{TINY_RUN, cli, corpus_obtainable};

/// The baselines' traces have their published shapes on a real run: LISA trains everything
/// outside the encoder layers plus exactly γ whole layers, redrawn only every K steps;
/// head-only trains the classifier alone.
#[test]
fn lisa_and_head_only_train_the_units_their_definitions_say() {
    if !corpus_obtainable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let report = dir.path().join(name);
        let mut args = [
            &["train", "--task", "spam-assassin", "--batch", "4"][..],
            &TINY_RUN,
        ]
        .concat();
        args.extend_from_slice(&["--report", report.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let (ok, _, stderr) = cli(&args, &[]);
        assert!(ok, "{stderr}");
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&report).unwrap())
            .unwrap()
    };
    let layer_of = |name: &str| {
        name.strip_prefix("encoder.layer.")
            .map(|rest| rest.split('.').next().unwrap().parse::<usize>().unwrap())
    };
    let per_step = |json: &serde_json::Value| -> Vec<BTreeSet<usize>> {
        json["trained_units_per_step"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s.as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_u64().unwrap() as usize)
                    .collect()
            })
            .collect()
    };
    let names = |json: &serde_json::Value| -> Vec<String> {
        json["trained_steps_per_unit"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u[0].as_str().unwrap().to_string())
            .collect()
    };

    let lisa = run(
        "lisa.json",
        &[
            "--policy",
            "lisa",
            "--lisa-layers",
            "2",
            "--lisa-interval",
            "3",
        ],
    );
    assert_eq!(lisa["config"]["lisa"]["layers"], 2);
    assert_eq!(lisa["config"]["optimizer_state"], "drop");
    assert_eq!(lisa["config"]["compression"], "exact");
    let units = names(&lisa);
    let steps = per_step(&lisa);
    assert_eq!(steps.len(), 8);
    let mut periods = Vec::new();
    for (step, trained) in steps.iter().enumerate() {
        let layers: BTreeSet<usize> = trained
            .iter()
            .filter_map(|&u| layer_of(&units[u]))
            .collect();
        assert_eq!(layers.len(), 2, "step {step}: {layers:?}");
        for (u, name) in units.iter().enumerate() {
            let expected = layer_of(name).is_none_or(|l| layers.contains(&l));
            assert_eq!(trained.contains(&u), expected, "step {step}, {name}");
        }
        if step % 3 == 0 {
            periods.push(layers);
        } else {
            assert_eq!(Some(&layers), periods.last(), "step {step}");
        }
    }

    // One period: the two drawn layers moved, every tensor of the others — biases and β
    // included — is the base model's.
    let output = dir.path().join("lisa-one-period");
    let one = run(
        "lisa-one.json",
        &[
            "--policy",
            "lisa",
            "--lisa-interval",
            "100",
            "--output",
            output.to_str().unwrap(),
        ],
    );
    let units = names(&one);
    let drawn: BTreeSet<usize> = per_step(&one)[0]
        .iter()
        .filter_map(|&u| layer_of(&units[u]))
        .collect();
    let base = tensors(
        &slimfit_data::assets::MINILM_L6_V2
            .resolve(None)
            .unwrap()
            .join("model.safetensors"),
    );
    let saved = tensors(&output.join("model.safetensors"));
    for (name, values) in base.iter().filter(|(n, _)| n.starts_with("encoder.")) {
        let layer = layer_of(name).unwrap();
        let moved = saved.get(name) != Some(values);
        assert_eq!(moved, drawn.contains(&layer), "{name}, drawn {drawn:?}");
    }

    let output = dir.path().join("head-only");
    let head = run(
        "head.json",
        &["--policy", "head", "--output", output.to_str().unwrap()],
    );
    let units = names(&head);
    for trained in per_step(&head) {
        let trained: Vec<&str> = trained.iter().map(|&u| units[u].as_str()).collect();
        assert_eq!(trained, ["classifier.weight"]);
    }
    // Nothing of the encoder moved, not even a bias or β: only the new head trained.
    let saved = tensors(&output.join("model.safetensors"));
    for (name, values) in base.iter().filter(|(n, _)| !n.ends_with("position_ids")) {
        assert_eq!(saved.get(name), Some(values), "{name} moved");
    }
    let (ok, _, stderr) = cli(
        &[
            "train",
            "--task",
            "spam-assassin",
            "--policy",
            "head",
            "--lisa-layers",
            "2",
        ],
        &[],
    );
    assert!(!ok && stderr.contains("--lisa-layers"), "{stderr}");
}

/// The tensors of a safetensors file by name (`bert.` prefixes dropped), as f32 values.
fn tensors(path: &std::path::Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name.trim_start_matches("bert.").to_string(), values)
        })
        .collect()
}

/// LoRA as PEFT runs it: the adapters and the head train, nothing else — not even the
/// biases — and `--output` is a plain checkpoint whose targeted weights moved (merged) while
/// every other encoder tensor is the base model's, bit for bit.
#[test]
fn lora_trains_adapters_and_head_only_and_saves_them_merged() {
    if !corpus_obtainable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("lora.json");
    let output = dir.path().join("merged");
    let mut args = [
        &["train", "--task", "spam-assassin", "--batch", "8"][..],
        &TINY_RUN,
        &[
            "--policy",
            "lora",
            "--lora-rank",
            "4",
            "--lora-targets",
            "query,value",
        ],
    ]
    .concat();
    args.extend_from_slice(&["--report", report.to_str().unwrap()]);
    args.extend_from_slice(&["--output", output.to_str().unwrap(), "--lr", "1e-3"]);
    let (ok, _, stderr) = cli(&args, &[]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["config"]["lora"]["rank"], 4);
    assert_eq!(json["config"]["lora"]["alpha"], 8.0);
    let names: Vec<&str> = json["trained_steps_per_unit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u[0].as_str().unwrap())
        .collect();
    let adapters = names.iter().filter(|n| n.contains(".lora_")).count();
    assert_eq!(
        adapters,
        6 * 2 * 2,
        "A and B of query and value in 6 layers"
    );
    for step in json["trained_units_per_step"].as_array().unwrap() {
        let trained: Vec<&str> = step
            .as_array()
            .unwrap()
            .iter()
            .map(|u| names[u.as_u64().unwrap() as usize])
            .collect();
        assert_eq!(trained.len(), adapters + 1, "{trained:?}");
        assert!(
            trained
                .iter()
                .all(|n| n.contains(".lora_") || *n == "classifier.weight")
        );
    }

    let base = tensors(
        &slimfit_data::assets::MINILM_L6_V2
            .resolve(None)
            .unwrap()
            .join("model.safetensors"),
    );
    let merged = tensors(&output.join("model.safetensors"));
    assert!(
        merged.keys().all(|n| !n.contains("lora")),
        "plain checkpoint"
    );
    let mut moved = Vec::new();
    // `position_ids` is a buffer of the source file, not a parameter.
    for (name, values) in base.iter().filter(|(n, _)| !n.ends_with("position_ids")) {
        let saved = merged
            .get(name)
            .unwrap_or_else(|| panic!("{name} not saved"));
        if saved != values {
            moved.push(name.as_str());
        }
    }
    let expected: Vec<String> = (0..6)
        .flat_map(|l| {
            ["query", "value"].map(|p| format!("encoder.layer.{l}.attention.self.{p}.weight"))
        })
        .collect();
    let mut expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    expected.sort();
    moved.sort();
    assert_eq!(
        moved, expected,
        "only the adapted weights differ from the base model"
    );
}

/// Activation checkpointing recomputes each layer in backward: the loss curve and the dev
/// metrics are those of the same run without it, bit for bit — for full fine-tuning and
/// for SlimFit (frozen units and compressed storage inside the recomputed layers) — and
/// the measured peak is lower.
#[test]
fn activation_checkpointing_gives_the_same_run_at_a_lower_measured_peak() {
    if !corpus_obtainable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let report = dir.path().join(name);
        // TINY_RUN's size, at 96 tokens: activations weigh more than at 16.
        let mut args = vec!["train", "--task", "spam-assassin", "--batch", "16"];
        args.extend_from_slice(&TINY_RUN[..6]);
        args.extend_from_slice(&["--max-len", "96", "--report", report.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let (ok, _, stderr) = cli(&args, &[]);
        assert!(ok, "{stderr}");
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&report).unwrap())
            .unwrap()
    };
    for (name, policy) in [
        ("full", &["--policy", "full"][..]),
        ("ils", &["--freeze-rate", "0.5"][..]),
    ] {
        let plain = run(&format!("{name}.json"), policy);
        let recomputed = run(
            &format!("{name}-ckpt.json"),
            &[policy, &["--activation-checkpointing"]].concat(),
        );
        assert_eq!(recomputed["config"]["activation_checkpointing"], true);
        assert_eq!(plain["loss_curve"], recomputed["loss_curve"], "{name}");
        assert_eq!(plain["dev_metrics"], recomputed["dev_metrics"], "{name}");
        assert_eq!(
            plain["trained_units_per_step"], recomputed["trained_units_per_step"],
            "{name}"
        );
        let peak = |json: &serde_json::Value| json["peak_bytes"].as_u64().unwrap();
        println!(
            "{name}: peak {} MiB plain, {} MiB recomputed",
            peak(&plain) >> 20,
            peak(&recomputed) >> 20
        );
        assert!(peak(&recomputed) < peak(&plain), "{name}");
    }

    // Budget mode plans recomputed steps: the one-run default with checkpointing fits more
    // units in less memory, and every step's measured peak is within 3 % of its plan.
    let plain = run("default.json", &[]);
    let recomputed = run("default-ckpt.json", &["--activation-checkpointing"]);
    let fit = |json: &serde_json::Value| json["budget"]["trainable_units"].as_u64().unwrap();
    assert!(fit(&recomputed) >= fit(&plain));
    let budget = recomputed["budget"]["budget"].as_u64().unwrap();
    assert!(budget < plain["budget"]["budget"].as_u64().unwrap());
    let measured = recomputed["step_peak_bytes"].as_array().unwrap();
    let predicted = recomputed["budget"]["predicted_step_peaks"]
        .as_array()
        .unwrap();
    for (m, p) in measured.iter().zip(predicted) {
        let ratio = m.as_f64().unwrap() / p.as_f64().unwrap();
        assert!(ratio < 1.03, "measured {m} vs planned {p}");
    }
}
