//! `reproduce-table --jobs 2` through the binary: cells train in worker processes of their
//! own, two at once, and the matched cell still waits for its paper cell's measured peak.
//! Skipped, with the reason printed, where the GLUE files or the checkpoint are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use slimfit_data::GlueTask;
use slimfit_data::assets::MINILM_L6_V2;

fn glue_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SLIMFIT_GLUE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/glue"));
    GlueTask::Mrpc
        .path(&dir, slimfit_data::Split::Train)
        .is_file()
        .then_some(dir)
}

fn cell(out: &Path, method: &str) -> serde_json::Value {
    let path = out.join(format!("cells/quick-mrpc-{method}-seed42.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn two_jobs_train_cells_side_by_side_each_measuring_its_own_peak() {
    let Some(glue) = glue_dir() else {
        println!("skipped: no GLUE MRPC files ($SLIMFIT_GLUE_DIR or ../shared/data/glue)");
        return;
    };
    if let Err(e) = MINILM_L6_V2.resolve(None) {
        println!("skipped: no checkpoint ({e})");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "reproduce-table",
            "--quick",
            "--tasks",
            "mrpc",
            "--seeds",
            "1",
        ])
        .args([
            "--methods",
            "full,slimfit-paper,slimfit-matched",
            "--jobs",
            "2",
        ])
        .args([
            "--max-train-examples",
            "32",
            "--max-dev-examples",
            "32",
            "--max-len",
            "32",
        ])
        .arg("--data-dir")
        .arg(&glue)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // Full and paper started together; the matched cell only once the paper cell was done.
    let at = |needle: &str| {
        stdout
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in:\n{stdout}"))
    };
    let first_done = at(": done in");
    assert!(at("[1/3] mrpc full seed 42") < first_done);
    assert!(
        at("[2/3] mrpc slimfit-paper seed 42") < first_done,
        "{stdout}"
    );
    assert!(at("mrpc slimfit-paper seed 42: done") < at("[3/3] mrpc slimfit-matched seed 42"));

    // Each worker measured its own process: full fine-tuning above the paper's ILS, and the
    // matched cell trained under the paper cell's measured peak.
    let (full, paper, default) = (
        cell(out.path(), "full"),
        cell(out.path(), "slimfit-paper"),
        cell(out.path(), "slimfit-matched"),
    );
    let peak = |c: &serde_json::Value| c["report"]["peak_bytes"].as_u64().expect("measured");
    assert!(
        peak(&full) > peak(&paper),
        "{} vs {}",
        peak(&full),
        peak(&paper)
    );
    assert_eq!(default["memory_budget"].as_u64(), Some(peak(&paper)));
    // (Budget mode bounds the steps; on 32 examples loading the checkpoint peaks higher.)
    let steps = default["report"]["step_peak_bytes"].as_array().unwrap();
    assert!(!steps.is_empty());
    assert!(steps.iter().all(|p| p.as_u64().unwrap() <= peak(&paper)));
    assert_eq!(full["settings"]["max_train_examples"], 32);
    assert!(out.path().join("table.md").is_file());
}
