//! The short fuzz run of CI: every target on its seeds and a few thousand of their
//! mutations (a fixed seed, so a failure repeats), with no panic. The long runs are
//! `cargo xtask fuzz` (docs/FUZZING.md).

use std::time::Duration;

use slimfit_fuzz::mutate::fuzz;
use slimfit_fuzz::{Target, run, seeds};

/// Mutations per target: a few seconds in all on 2 cores.
const INPUTS: u64 = 5000;

#[test]
fn every_target_survives_its_seeds_and_their_mutations_without_a_panic() {
    // Caught panics are listed with their inputs below (the hook, process-wide, would print
    // them too; the test harness captures that per test).
    let mut found = Vec::new();
    for target in Target::ALL {
        let report = fuzz(target, 20261206, INPUTS, Duration::from_secs(60));
        assert!(
            report.inputs >= INPUTS,
            "{target:?}: {} inputs",
            report.inputs
        );
        eprintln!(
            "{}: {} inputs, {} panics",
            target.name(),
            report.inputs,
            report.panics.len()
        );
        for (input, message) in report.panics {
            let shown = String::from_utf8_lossy(&input[..input.len().min(200)]).into_owned();
            found.push(format!("{}: {message}\n  input: {shown:?}", target.name()));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_seeds_are_valid_inputs() {
    // A seed the parser refuses would only fuzz its first error path.
    for target in Target::ALL {
        for (k, seed) in seeds(target).iter().enumerate() {
            if let Err(e) = run(target, seed) {
                panic!("{target:?}: seed {k} is refused: {e}");
            }
        }
    }
}
