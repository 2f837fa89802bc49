//! The `slimfit-trainer` binary end to end: JSON lines in, JSON lines out, clear errors.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use slimfit_data::assets::MINILM_L6_V2;

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slimfit-trainer"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn model_arg() -> String {
    MINILM_L6_V2.resolve(None).unwrap().display().to_string()
}

#[test]
fn encode_writes_one_json_line_per_input() {
    let model = model_arg();
    let input =
        "{\"text\": \"Hello world\"}\n\n{\"text\": \"A cat.\", \"text_pair\": \"A dog.\"}\n";
    let out = run(&["encode", "--model", &model, "--batch-size", "1"], input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0]["input_ids"],
        serde_json::json!([101, 7592, 2088, 102])
    );
    assert_eq!(
        lines[1]["token_type_ids"],
        serde_json::json!([0, 0, 0, 0, 0, 1, 1, 1, 1])
    );
    for line in &lines {
        for key in ["cls", "mean", "pooled"] {
            assert_eq!(line[key].as_array().unwrap().len(), 384, "{key}");
        }
    }
}

#[test]
fn a_malformed_line_fails_naming_it_after_every_line_before_it_is_written() {
    let model = model_arg();
    // Three good lines (the first two a full batch, the third pending), the bad one, and a
    // good one after it that is not encoded: output stops exactly before the bad line.
    let out = run(
        &["encode", "--model", &model, "--batch-size", "2"],
        "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"}\n{\"txt\": 1}\n{\"text\": \"d\"}\n",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stdin line 4"), "{stderr}");
    let written = String::from_utf8(out.stdout).unwrap();
    assert_eq!(written.lines().count(), 3, "{written}");
    // A huge batch size is a bound, not an allocation.
    let out = run(
        &[
            "encode",
            "--model",
            &model,
            "--batch-size",
            "18446744073709551615",
        ],
        "{\"text\": \"a\"}\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
}

#[test]
fn missing_model_dir_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["encode", "--model", dir.path().to_str().unwrap()],
        "{\"text\": \"x\"}\n",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config.json is missing"), "{stderr}");
}

#[test]
fn corrupt_weights_fail_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = MINILM_L6_V2.resolve(None).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(model.join(file), dir.path().join(file)).unwrap();
    }
    let weights = std::fs::read(model.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    let out = run(
        &["encode", "--model", dir.path().to_str().unwrap()],
        "{\"text\": \"x\"}\n",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model.safetensors") && stderr.contains("truncated"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn max_len_beyond_position_table_is_rejected() {
    let model = model_arg();
    let out = run(&["encode", "--model", &model, "--max-len", "600"], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_position_embeddings"), "{stderr}");
}

/// `train` with a run file; `(success, stderr)`.
fn train(args: &[&str]) -> (bool, String) {
    let out = run(&[&["train"], args].concat(), "");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_run_files_fail_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.toml");
    let file = path.to_str().unwrap();
    for (text, wanted) in [
        (
            "task = \"rte\"\nbatchh = 8\n",
            &["unknown field `batchh`", "line 2"][..],
        ),
        (
            "task = \"rte\"\nbatch = \"eight\"\n",
            &["batch = \"eight\"", "line 2"],
        ),
        (
            "task = \"rte\"\nfreeze_rate = 1.5\n",
            &["`freeze_rate` = 1.5", "[0, 1)"],
        ),
        (
            "task = \"rte\"\ngrad_accum = 0\n",
            &["`grad_accum` must be at least 1"],
        ),
        (
            "task = \"rte\"\nlr = -1e-4\n",
            &["`lr` = -0.0001", "positive"],
        ),
        (
            "task = \"rte\"\npolicy = \"all\"\n",
            &["policy = \"all\"", "static-prefix"],
        ),
        (
            "task = \"rte\"\nmemory_budget = \"lots\"\n",
            &["memory_budget", "lots"],
        ),
        ("batch = 8\n", &["--task is required"]),
    ] {
        std::fs::write(&path, text).unwrap();
        let (ok, err) = train(&["--config", file]);
        assert!(!ok, "{text}");
        if !wanted[0].starts_with("--task") {
            assert!(err.contains(file), "{text}: {err}");
        }
        for w in wanted {
            assert!(err.contains(w), "{text}: wanted {w:?} in {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
    let (ok, err) = train(&["--config", "/nonexistent/run.toml"]);
    assert!(
        !ok && err.contains("cannot read run file /nonexistent/run.toml"),
        "{err}"
    );
    // Out-of-range flags name the flag.
    std::fs::write(&path, "task = \"rte\"\n").unwrap();
    for (flag, wanted) in [
        ("--grad-accum=0", "--grad-accum must be at least 1"),
        ("--lr=0", "--lr = 0: the learning rate must be positive"),
        ("--warmup=1.5", "--warmup = 1.5"),
        ("--batch=0", "--batch must be at least 1"),
        (
            "--memory-budget-of=/nonexistent/paper.json",
            "--memory-budget-of /nonexistent/paper.json: cannot read it",
        ),
    ] {
        let (ok, err) = train(&["--config", file, flag]);
        assert!(!ok && err.contains(wanted), "{flag}: {err}");
    }
}

#[test]
fn flags_override_the_run_file_whose_paths_are_relative_to_it() {
    let model = model_arg();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.toml");
    std::fs::write(
        &path,
        format!("task = \"rte\"\ndata_dir = \"glue-here\"\nmodel = {model:?}\n"),
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let from_file = dir.path().join("glue-here/RTE/train.tsv");
    let (ok, err) = train(&["--config", file]);
    assert!(!ok && err.contains(from_file.to_str().unwrap()), "{err}");
    let (ok, err) = train(&["--config", file, "--data-dir", "/nonexistent/cli"]);
    assert!(
        !ok && err.contains("/nonexistent/cli/RTE/train.tsv"),
        "{err}"
    );
    let (ok, err) = train(&["--config", file, "--task", "mrpc"]);
    assert!(!ok && err.contains("glue-here/MRPC/train.tsv"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_tokenizer_larger_than_the_models_vocabulary_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let model = MINILM_L6_V2.resolve(None).unwrap();
    std::fs::copy(model.join("config.json"), dir.path().join("config.json")).unwrap();
    std::os::unix::fs::symlink(
        model.join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    // MiniLM's vocabulary and ten tokens more: ids the word table has no row for.
    let mut vocab = std::fs::read_to_string(model.join("vocab.txt")).unwrap();
    for i in 0..10 {
        vocab.push_str(&format!("extra{i}\n"));
    }
    std::fs::write(dir.path().join("vocab.txt"), vocab).unwrap();
    let out = run(
        &["encode", "--model", dir.path().to_str().unwrap()],
        "{\"text\": \"extra3\"}\n",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("30532 tokens") && stderr.contains("vocab_size is 30522"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_sentence_pair_on_a_model_with_one_token_type_is_a_clear_error() {
    use safetensors::SafeTensors;
    use safetensors::tensor::TensorView;
    let dir = tempfile::tempdir().unwrap();
    let model = MINILM_L6_V2.resolve(None).unwrap();
    std::fs::copy(
        model.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    config["type_vocab_size"] = 1.into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    // The same weights with a one-row token-type table.
    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            if name.ends_with("token_type_embeddings.weight") {
                let width = view.shape()[1];
                let row = &view.data()[..width * 4];
                let one = TensorView::new(view.dtype(), vec![1, width], row).unwrap();
                (name, one)
            } else {
                (name, view)
            }
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    let args = ["encode", "--model", dir.path().to_str().unwrap()];
    let single = run(&args, "{\"text\": \"A cat.\"}\n");
    assert!(
        single.status.success(),
        "{}",
        String::from_utf8_lossy(&single.stderr)
    );
    let pair = run(&args, "{\"text\": \"A cat.\", \"text_pair\": \"A dog.\"}\n");
    assert!(!pair.status.success());
    let stderr = String::from_utf8_lossy(&pair.stderr);
    assert!(stderr.contains("type_vocab_size is 1"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
