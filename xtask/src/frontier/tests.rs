//! The frontier's choice of configurations, and a tiny sweep end to end (real MRPC rows,
//! real MiniLM, the real `slimfit-trainer` binary), where the data and checkpoint are here.

use slimfit_memory::Bytes;

use super::contender::{Contender, Knobs};
use super::fit::{Choice, choose};

/// A fake accountant for [`choose`]: each rung of the ladder predicts less than the last
/// and trains the given units.
fn descending(
    start: u64,
    units: &'static [usize],
) -> impl FnMut(Knobs) -> anyhow::Result<Option<(Bytes, usize)>> {
    let mut next = 0;
    move |_| {
        let i = next;
        next += 1;
        Ok(Some((
            Bytes(start - 10 * i as u64),
            units[i.min(units.len() - 1)],
        )))
    }
}

#[test]
fn a_baseline_runs_in_the_first_configuration_of_its_ladder_that_fits() {
    let choice = choose(Contender::Full, Bytes(85), descending(100, &[10])).unwrap();
    let Choice::Fits {
        knobs, predicted, ..
    } = choice
    else {
        panic!("{choice:?}")
    };
    assert_eq!(predicted, Bytes(80));
    // Rung 0 as published, 1 checkpointed, 2 checkpointed with two micro-batches.
    assert_eq!(knobs, Contender::Full.ladder()[2]);
    assert!(knobs.checkpointing && knobs.grad_accum == 2);
}

#[test]
fn slimfit_runs_in_the_configuration_that_trains_the_most_units_the_earliest_of_equals() {
    // Every rung fits; the second trains the most, the third as many.
    let choice = choose(
        Contender::Slimfit,
        Bytes(1000),
        descending(100, &[5, 9, 9, 7]),
    )
    .unwrap();
    let Choice::Fits {
        knobs,
        trainable_units,
        ..
    } = choice
    else {
        panic!("{choice:?}")
    };
    assert_eq!(trainable_units, 9);
    assert_eq!(knobs, Contender::Slimfit.ladder()[1]);
}

#[test]
fn a_contender_that_fits_nowhere_records_the_least_it_would_need() {
    let ladder = Contender::Lisa.ladder();
    let choice = choose(Contender::Lisa, Bytes(10), descending(100, &[1])).unwrap();
    assert_eq!(
        choice,
        Choice::DoesNotFit {
            least: Bytes(100 - 10 * (ladder.len() as u64 - 1)),
            knobs: *ladder.last().unwrap(),
        }
    );
    // Configurations that do not apply are skipped, not chosen.
    let choice = choose(Contender::Slimfit, Bytes(1000), |_| Ok(None)).unwrap();
    assert!(matches!(choice, Choice::DoesNotFit { .. }), "{choice:?}");
}

#[test]
fn ladders_keep_the_effective_batch_and_try_the_cheapest_first() {
    for contender in Contender::ALL {
        let ladder = contender.ladder();
        assert_eq!(ladder[0].grad_accum, 1, "{contender:?}");
        assert!(!ladder[0].checkpointing, "{contender:?}");
        // Accumulation only ever grows down the ladder, by powers of two (the batch is
        // split, not shrunk).
        for pair in ladder.windows(2) {
            assert!(pair[1].grad_accum >= pair[0].grad_accum, "{contender:?}");
        }
        assert!(ladder.iter().all(|k| k.grad_accum.is_power_of_two()));
        assert_eq!(
            ladder.iter().any(|k| k.lisa_layers.is_some()),
            contender == Contender::Lisa
        );
    }
}

/// The release `slimfit-trainer` the workspace's tests build (`cargo test --release`
/// builds every binary before any test runs): `target/release/` beside `deps/`.
fn built_trainer() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("slimfit-trainer");
    path.is_file().then_some(path)
}

#[test]
fn a_tiny_sweep_records_every_cell_and_reuses_them_on_a_rerun() {
    use slimfit_data::GlueTask;
    use slimfit_data::assets::MINILM_L6_V2;

    use super::cells::{Sweep, cells};
    let Some(glue) = crate::tests::glue_dir() else {
        println!("skipped: no GLUE MRPC files");
        return;
    };
    let Ok(model) = MINILM_L6_V2.resolve(None) else {
        println!("skipped: no checkpoint");
        return;
    };
    let Some(trainer) = built_trainer() else {
        println!("skipped: no release slimfit-trainer built beside this test");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sweep = Sweep {
        glue,
        model,
        out: dir.path().to_path_buf(),
        trainer,
        jobs: 2,
        epochs: Some(1),
        max_train_examples: Some(32),
        max_dev_examples: Some(32),
    };
    let cells = cells(&[GlueTask::Mrpc], 1, &[2, 6], &Contender::ALL);
    let records = sweep.run(&cells, false).unwrap();
    assert_eq!(records.len(), cells.len());
    let reference = records[0].view().expect("the reference ran");
    let measured = reference.peak_bytes.expect("flex measures peaks");
    for record in &records[1..] {
        let cell = record.cell;
        assert_eq!(
            record.budget,
            Some(Bytes(measured / u64::from(cell.fraction)))
        );
        let budget = record.budget.unwrap();
        match record.choice.as_ref().unwrap() {
            Choice::Fits {
                knobs, predicted, ..
            } => {
                assert!(*predicted <= budget, "{}", cell.name());
                let report = record.report.as_ref().expect("a run that fits ran");
                let config = &report["config"];
                assert_eq!(config["activation_checkpointing"], knobs.checkpointing);
                assert_eq!(config["grad_accum"], knobs.grad_accum);
                assert!(
                    record.command.contains("--data-dir $GLUE"),
                    "{}",
                    record.command
                );
                if cell.contender == Contender::Slimfit {
                    assert_eq!(report["budget"]["budget"], budget.0);
                }
            }
            Choice::DoesNotFit { least, .. } => {
                assert!(*least > budget, "{}", cell.name());
                assert!(record.report.is_none() && record.command.is_empty());
            }
            Choice::Refused { message, .. } => {
                assert!(message.contains("memory budget"), "{message}");
                assert!(record.report.is_none());
            }
        }
    }
    let fits = |contender, fraction| {
        records
            .iter()
            .find(|r| r.cell.contender == contender && r.cell.fraction == fraction)
            .map(|r| matches!(r.choice, Some(Choice::Fits { .. })))
            .unwrap()
    };
    // At half of full fine-tuning's peak SlimFit trains; full fine-tuning cannot, whatever
    // it recomputes or splits: its weights, gradients and moments alone are above it, as
    // they are for LISA (its word-embedding table trains with its moments) at a sixth.
    assert!(fits(Contender::Slimfit, 2));
    assert!(!fits(Contender::Full, 2));
    assert!(!fits(Contender::Full, 6) && !fits(Contender::Lisa, 6));
    // The reference recorded its setup peak (the floor every prediction respects).
    let floor = records[0].report.as_ref().unwrap()["setup_peak_bytes"]
        .as_u64()
        .unwrap();
    assert!(floor > 0 && floor < measured);

    let written = super::output::write_all(dir.path(), &records, &[2, 6]).unwrap();
    let table = std::fs::read_to_string(dir.path().join("table.md")).unwrap();
    assert!(
        table.contains("| SlimFit |") && table.contains("does not fit"),
        "{table}"
    );
    assert!(written.iter().any(|p| p.ends_with("frontier-mrpc.svg")));

    // A rerun trains nothing: every record is reused as it was.
    let again = sweep.run(&cells, false).unwrap();
    let text = |rs: &[super::cells::Record]| serde_json::to_string(rs).unwrap();
    assert_eq!(text(&again), text(&records));
}
