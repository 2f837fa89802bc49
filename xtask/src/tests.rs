//! Tests of `reproduce-table` on real `TrainReport`s: one tiny real run of every method
//! (MRPC, 32 examples of 32 tokens, one epoch), shared by the tests; skipped, with the reason
//! printed, where the GLUE files or the checkpoint are missing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use slimfit_data::GlueTask;
use slimfit_data::assets::MINILM_L6_V2;
use slimfit_trainer::backend::BACKEND_NAME;
use slimfit_trainer::task::glue_dir_from_env;
use slimfit_trainer::train::PolicyKind;

use crate::reproduce::{
    self, Args, BackendArg, Calibration, CellRecord, CellSpec, CellStore, Method, RunContext,
    TaskSettings, cell_specs, paper_plans, run_cells, token_counts,
};
use crate::table::{self, Meta, ReportView};

struct Fixture {
    _dir: tempfile::TempDir,
    ctx: RunContext,
    specs: Vec<CellSpec>,
    records: Vec<CellRecord>,
    computed: usize,
    reused: usize,
}

fn tiny_settings() -> TaskSettings {
    TaskSettings {
        epochs: 1,
        batch: 16,
        lr: 3e-4,
        max_len: 32,
        max_train_examples: Some(32),
        max_dev_examples: Some(32),
        freeze_rate: 0.9,
    }
}

pub(crate) fn glue_dir() -> Option<PathBuf> {
    let dir = glue_dir_from_env()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/glue"));
    GlueTask::Mrpc
        .path(&dir, slimfit_data::Split::Train)
        .is_file()
        .then_some(dir)
}

/// The tiny run, made once; `None` (with the reason printed) where it cannot run here.
fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let Some(glue) = glue_dir() else {
                println!("skipped: no GLUE MRPC files ($SLIMFIT_GLUE_DIR or ../shared/data/glue)");
                return None;
            };
            let model = match MINILM_L6_V2.resolve(None) {
                Ok(model) => model,
                Err(e) => {
                    println!("skipped: no checkpoint ({e})");
                    return None;
                }
            };
            let dir = tempfile::tempdir().expect("temporary directory");
            let ctx = RunContext {
                glue,
                model,
                out: dir.path().to_path_buf(),
                jobs: 1,
            };
            let specs = cell_specs(
                "test",
                &[(GlueTask::Mrpc, tiny_settings())],
                1,
                &Method::ALL,
            );
            let outcome = run_cells(&specs, &ctx, |_| Ok(())).expect("tiny run");
            Some(Fixture {
                _dir: dir,
                ctx,
                specs,
                records: outcome.records,
                computed: outcome.computed,
                reused: outcome.reused,
            })
        })
        .as_ref()
}

fn meta(f: &Fixture) -> Meta {
    Meta {
        profile: "test".into(),
        backend: BACKEND_NAME.into(),
        model: f.ctx.model.display().to_string(),
        glue_dir: f.ctx.glue.display().to_string(),
        seeds: vec![reproduce::FIRST_SEED],
        settings: vec![("mrpc".to_string(), tiny_settings())],
        skipped: vec![],
        command: "test".into(),
        run_wall_seconds: None,
        cells_trained: 0,
        cells_reused: 0,
    }
}

fn record(f: &Fixture, method: Method) -> (&CellRecord, ReportView) {
    let r = f
        .records
        .iter()
        .find(|r| r.method == method)
        .expect("every method ran");
    (r, ReportView::parse(&r.report).expect("a TrainReport"))
}

#[test]
fn every_cell_is_trained_once_then_reused() {
    let Some(f) = fixture() else { return };
    assert_eq!((f.computed, f.reused), (Method::ALL.len(), 0));
    assert_eq!(f.records.len(), Method::ALL.len());
    for (spec, r) in f.specs.iter().zip(&f.records) {
        assert_eq!(
            (r.method, r.seed, r.task.as_str()),
            (spec.method, spec.seed, "mrpc")
        );
        assert!(CellStore::new(&f.ctx.out).path(spec).is_file());
        let view = ReportView::parse(&r.report).unwrap();
        assert_eq!(view.train_examples, 32);
        assert_eq!(
            view.frozen_per_step.len(),
            2,
            "32 examples in batches of 16"
        );
    }
    // A second run trains nothing and returns the same reports (as read back: serde_json's
    // float parsing may differ from the in-memory value in the last bit).
    let again = run_cells(&f.specs, &f.ctx, |_| panic!("nothing to train")).unwrap();
    assert_eq!((again.computed, again.reused), (0, Method::ALL.len()));
    for (a, b) in again.records.iter().zip(&f.records) {
        assert_eq!(
            (a.method, a.seed, &a.settings),
            (b.method, b.seed, &b.settings)
        );
        for key in [
            "peak_bytes",
            "frozen_per_step",
            "trained_steps_per_unit",
            "config",
        ] {
            assert_eq!(a.report[key], b.report[key], "{key}");
        }
        let (va, vb) = (
            ReportView::parse(&a.report).unwrap(),
            ReportView::parse(&b.report).unwrap(),
        );
        for (name, value) in vb.final_metrics() {
            assert!((va.final_metrics()[&name] - value).abs() <= 1e-12 * value.abs().max(1.0));
        }
    }
}

#[test]
fn cells_of_other_settings_or_corrupt_files_are_not_reused() {
    let Some(f) = fixture() else { return };
    let store = CellStore::new(&f.ctx.out);
    let spec = &f.specs[0];
    assert!(store.load(spec, BACKEND_NAME).unwrap().is_some());
    let mut other = spec.clone();
    other.settings.lr *= 2.0;
    let why = store.load(&other, BACKEND_NAME).unwrap_err();
    assert!(why.contains("other settings"), "{why}");
    let elsewhere = store.load(spec, "some-other-backend").unwrap_err();
    assert!(elsewhere.contains("cell on"), "{elsewhere}");

    // A corrupt copy under another profile name is refused, and a fresh name is absent.
    let mut corrupt = spec.clone();
    corrupt.profile = "corrupt".into();
    std::fs::write(store.path(&corrupt), "{\"profile\": ").unwrap();
    assert!(store.load(&corrupt, BACKEND_NAME).is_err());
    let mut absent = spec.clone();
    absent.profile = "absent".into();
    assert!(store.load(&absent, BACKEND_NAME).unwrap().is_none());
    std::fs::remove_file(store.path(&corrupt)).unwrap();
}

#[test]
fn table_rows_come_from_the_reports() {
    let Some(f) = fixture() else { return };
    let plans = paper_plans().unwrap();
    let t = table::build(&meta(f), &f.records, &plans).unwrap();
    assert_eq!(t.rows.len(), 1);
    assert_eq!(t.methods.len(), Method::ALL.len());
    let row = &t.rows[0];
    assert_eq!((row.task.as_str(), row.metric.as_str()), ("mrpc", "f1"));

    let (_, full) = record(f, Method::Full);
    let (_, slim) = record(f, Method::SlimfitDefault);
    let (_, paper) = record(f, Method::SlimfitPaper);
    let f1 = |v: &ReportView| v.final_metrics()["f1"];
    assert_eq!(row.full.unwrap().mean, f1(&full));
    assert_eq!(row.slimfit_default.unwrap().mean, f1(&slim));
    assert_eq!(row.slimfit_paper.unwrap().mean, f1(&paper));
    assert_eq!(row.delta.unwrap(), f1(&slim) - f1(&full));

    // Memory: measured by the counting allocator this binary installs.
    let (pf, ps) = (full.peak_bytes.unwrap(), slim.peak_bytes.unwrap());
    assert_eq!(row.peak_full.unwrap(), pf as f64);
    assert_eq!(row.peak_ratio.unwrap(), pf as f64 / ps as f64);
    assert!(
        pf > ps,
        "full fine-tuning {pf} B should peak above SlimFit {ps} B"
    );

    // Frozen: floor(0.9 · t) of t units at every step for the paper's ILS and the
    // baselines, none for full fine-tuning; the default, under its memory target with
    // frozen moments dropped, fits more units per step.
    let t_units = slim.total_units;
    let frozen = (0.9 * t_units as f64).floor() / t_units as f64;
    let summary = |m: Method| t.methods.iter().find(|s| s.method == m).unwrap();
    assert_eq!(summary(Method::Full).frozen_fraction.mean, 0.0);
    for m in [Method::StaticPrefix, Method::Random, Method::SlimfitPaper] {
        assert!(
            (summary(m).frozen_fraction.mean - frozen).abs() < 1e-9,
            "{m:?} freezes floor(r · t) units"
        );
    }
    let default_frozen = summary(Method::SlimfitDefault).frozen_fraction.mean;
    assert_eq!(row.frozen_percent.unwrap(), 100.0 * default_frozen);
    assert!(
        default_frozen < frozen,
        "the default under the paper's peak freezes {default_frozen}, the paper {frozen}"
    );
    // The accountant's categories add up to its total, which is of the measured order.
    for m in &t.methods {
        let p = m.predicted.as_ref().expect("a plan of the MiniLM shape");
        let sum: u64 = p.categories.iter().map(|(_, b)| b.0).sum();
        assert_eq!(sum, p.total.0, "{:?}", m.method);
        let measured = m.peak_bytes.unwrap().mean;
        assert!(p.total.as_f64() < 3.0 * measured && measured < 3.0 * p.total.as_f64());
    }
    // Under its budget the default's column is the trainer's own plan of its costliest
    // step, rebuilt to the byte (not a plan of some other set).
    let (_, view) = record(f, Method::SlimfitDefault);
    let recorded = view
        .budget
        .as_ref()
        .expect("a budgeted run")
        .predicted_step_peaks
        .clone();
    let p = summary(Method::SlimfitDefault).predicted.as_ref().unwrap();
    assert_eq!(Some(&p.total.0), recorded.iter().max());
    assert!(p.seq <= view.longest_train_sequence);
}

#[test]
fn markdown_json_and_figures_are_written() {
    let Some(f) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let plans = paper_plans().unwrap();
    let t = table::build(&meta(f), &f.records, &plans).unwrap();
    let files = table::write(dir.path(), &t, &f.records).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "table.md",
            "table.json",
            "memory-mrpc.svg",
            "frozen-mrpc.svg",
            "metric-vs-memory.svg",
            "records"
        ]
    );
    // The raw data: one record per cell, under the name it has in cells/.
    let mut kept: Vec<String> = std::fs::read_dir(dir.path().join("records"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    kept.sort();
    let mut expected: Vec<String> = f.specs.iter().map(CellSpec::file_name).collect();
    expected.sort();
    assert_eq!(kept, expected);
    let md = std::fs::read_to_string(dir.path().join("table.md")).unwrap();
    let row = md.lines().find(|l| l.starts_with("| mrpc | f1 |")).unwrap();
    let (_, full) = record(f, Method::Full);
    assert!(
        row.contains(&format!("{:.1}", full.final_metrics()["f1"])),
        "{row}"
    );
    assert!(
        md.contains("| BERT-base, SQuAD 2.0 | 128 × 384 | 0.8 |"),
        "{md}"
    );
    for (file, _) in table::figure_list(&t) {
        assert!(md.contains(&format!("]({file})")));
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("table.json")).unwrap())
            .unwrap();
    assert_eq!(json["rows"][0]["task"], "mrpc");
    assert_eq!(json["methods"].as_array().unwrap().len(), Method::ALL.len());
    assert_eq!(json["plans"].as_array().unwrap().len(), 3);
    for name in &names[2..names.len() - 1] {
        let svg = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("mrpc"), "{name}");
    }
    let memory = std::fs::read_to_string(dir.path().join("memory-mrpc.svg")).unwrap();
    for label in ["SlimFit (default)", "optimizer state", "measured peak"] {
        assert!(memory.contains(label), "{label}");
    }
}

#[test]
fn the_estimate_is_calibrated_by_finished_cells() {
    let Some(f) = fixture() else { return };
    let calibration = Calibration::from_records(&f.records);
    // Cells shorter than the per-cell overhead say nothing about the cost per token.
    let timed = f
        .records
        .iter()
        .filter(|r| ReportView::parse(&r.report).unwrap().wall_seconds > 4.0)
        .count();
    let expected = if timed == 0 {
        "no finished cells yet".to_string()
    } else {
        format!("timed from {timed} finished cells")
    };
    assert!(
        calibration.source.starts_with(&expected),
        "{}",
        calibration.source
    );
    let tokens = token_counts(&f.ctx.glue, &f.ctx.model, GlueTask::Mrpc, &tiny_settings()).unwrap();
    let (r, view) = record(f, Method::SlimfitDefault);
    assert_eq!(tokens, (r.train_tokens, r.dev_tokens));
    assert!(tokens.0 > 32 * 10 && tokens.0 <= 32 * 32, "{tokens:?}");
    let spec = f
        .specs
        .iter()
        .find(|s| s.method == Method::SlimfitDefault)
        .unwrap();
    let estimate = calibration.estimate(spec, tokens);
    if view.wall_seconds > 4.0 {
        assert!((estimate - view.wall_seconds).abs() < 1e-6 * view.wall_seconds);
    }
    // Cells side by side share the wall time; one at a time, it is their sum.
    assert_eq!(reproduce::wall_estimate(estimate, 1), estimate);
    assert_eq!(reproduce::wall_estimate(2.0 * estimate, 2), estimate);
}

#[test]
fn paper_plans_save_memory_and_name_their_commands() {
    let plans = paper_plans().unwrap();
    assert_eq!(plans.len(), 3);
    for p in &plans {
        assert!(p.slimfit_peak_bytes < p.full_peak_bytes, "{}", p.name);
        assert!(p.full_over_slimfit > 1.0);
        assert!(p.gpus_32gb_slimfit <= p.gpus_32gb_full);
        let total: u64 = p.categories.iter().map(|(_, f, _)| f.0).sum();
        assert_eq!(total, p.full_peak_bytes.0);
        assert!(p.command.starts_with("slimfit-trainer plan --model-config"));
    }
    assert_eq!((plans[2].seq, plans[2].image_size), (577, Some(384)));
}

#[test]
fn quick_settings_keep_the_reference_batch_and_freezing_rate() {
    for task in reproduce::DEFAULT_TASKS {
        let (q, r) = (TaskSettings::quick(task), TaskSettings::reference(task));
        assert_eq!((q.batch, q.freeze_rate), (r.batch, r.freeze_rate));
        assert_eq!((r.epochs, r.max_len, r.max_train_examples), (3, 128, None));
        assert!(q.max_train_examples.is_some() && q.max_len == 64);
    }
}

fn args(out: &Path) -> Args {
    Args {
        quick: true,
        tasks: None,
        seeds: None,
        backend: BackendArg::Flex,
        data_dir: None,
        out: out.to_path_buf(),
        model: None,
        methods: None,
        dry_run: true,
        finished_only: false,
        jobs: 1,
        max_train_examples: None,
        max_dev_examples: None,
        epochs: None,
        max_len: None,
    }
}

#[test]
fn a_backend_not_compiled_in_names_the_cargo_command() {
    let dir = tempfile::tempdir().unwrap();
    let other = if BACKEND_NAME == "cuda" {
        BackendArg::Flex
    } else {
        BackendArg::Cuda
    };
    let err = reproduce::run(&Args {
        backend: other,
        ..args(dir.path())
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cargo run --release -p xtask --no-default-features --features"),
        "{err}"
    );
}

#[test]
fn tasks_without_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let err = reproduce::run(&Args {
        data_dir: Some(dir.path().to_path_buf()),
        tasks: Some(vec!["mrpc".into(), "rte".into()]),
        ..args(dir.path())
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("no GLUE task to run"), "{err}");
    let err = reproduce::run(&Args {
        data_dir: Some(dir.path().to_path_buf()),
        tasks: Some(vec!["nope".into()]),
        ..args(dir.path())
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown GLUE task"), "{err}");
}

#[test]
fn the_heatmap_draws_per_step_sets_where_the_report_has_them() {
    let Some(f) = fixture() else { return };
    // The static prefix trains the same units at every step: its per-step sets follow from
    // its counts, as a report with `trained_units_per_step` would list them.
    let (record, _) = record(f, Method::StaticPrefix);
    let mut report = record.report.clone();
    let view = ReportView::parse(&report).unwrap();
    let steps = view.frozen_per_step.len();
    let set: Vec<usize> = view
        .trained_steps_per_unit
        .iter()
        .enumerate()
        .filter(|(_, (_, n))| *n == steps)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(set.len(), view.total_units - view.frozen_per_step[0]);
    report["trained_units_per_step"] = serde_json::json!(vec![set.clone(); steps]);
    let view = ReportView::parse(&report).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frozen.svg");
    crate::figures::frozen_figure(&path, "mrpc", record.seed, &view).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.contains(&format!("at each of {steps} steps")));
    assert!(svg.contains("classifier") && svg.contains("L5 output.dense"));
    // One rectangle per unit row (each unit trained at every step or at none).
    let rects = svg.matches("<rect").count();
    assert!(rects >= view.total_units, "{rects} rectangles");
}

#[test]
fn the_matched_cell_trains_under_the_paper_cells_measured_peak_and_the_default_chooses_its_own() {
    let Some(f) = fixture() else { return };
    let (_, paper) = record(f, Method::SlimfitPaper);
    let (matched, view) = record(f, Method::SlimfitMatched);
    let budget = matched
        .memory_budget
        .expect("the matched cell records its budget");
    assert_eq!(Some(budget.0), paper.peak_bytes);
    assert_eq!(matched.report["config"]["optimizer_state"], "drop");
    assert!(view.peak_bytes.is_some());
    for r in f
        .records
        .iter()
        .filter(|r| r.method != Method::SlimfitMatched)
    {
        assert_eq!(r.memory_budget, None, "{:?}", r.method);
    }
    // The default needs no other cell: its report carries the target it chose.
    let (default, _) = record(f, Method::SlimfitDefault);
    assert_eq!(default.report["config"]["optimizer_state"], "drop");
    assert_eq!(
        default.report["config"]["memory_budget"]["cap_of_full"],
        slimfit_trainer::memory_target::DEFAULT_CAP
    );
    let origin = &default.report["budget"]["origin"];
    assert_eq!(origin["budget"], default.report["budget"]["budget"]);
    assert!(origin["planned"]["frozen"].as_u64() < origin["budget"].as_u64());
    assert!(origin["budget"].as_u64() < origin["planned"]["full"].as_u64());

    // A matched cell run under another budget than its paper cell gives now is retrained;
    // every other cell is reused.
    let dir = tempfile::tempdir().unwrap();
    let store = CellStore::new(dir.path());
    for (spec, record) in f.specs.iter().zip(&f.records) {
        let mut record = record.clone();
        if spec.method == Method::SlimfitMatched {
            record.memory_budget = Some(slimfit_memory::Bytes(budget.0 + 1));
        }
        store.save(spec, &record).unwrap();
    }
    let ctx = RunContext {
        glue: f.ctx.glue.clone(),
        model: f.ctx.model.clone(),
        out: dir.path().to_path_buf(),
        jobs: 1,
    };
    let again = run_cells(&f.specs, &ctx, |_| Ok(())).unwrap();
    assert_eq!((again.computed, again.reused), (1, Method::ALL.len() - 1));
    let retrained = again
        .records
        .iter()
        .find(|r| r.method == Method::SlimfitMatched)
        .unwrap();
    assert_eq!(retrained.memory_budget, Some(budget));
}

/// Saves every fixture cell without the report field `field` (as written before reports had
/// it) and loads it back: cells for which `still_valid` holds are reused, the others refused
/// with a reason containing `why`.
fn check_cells_without(field: &str, still_valid: impl Fn(&CellSpec) -> bool, why: &str) {
    let Some(f) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = CellStore::new(dir.path());
    for (spec, record) in f.specs.iter().zip(&f.records) {
        let mut old = record.clone();
        old.report.as_object_mut().unwrap().remove(field);
        store.save(spec, &old).unwrap();
        let loaded = store.load(spec, BACKEND_NAME);
        if still_valid(spec) {
            assert!(
                matches!(loaded, Ok(Some(_))),
                "{:?}: {loaded:?}",
                spec.method
            );
        } else {
            let reason = loaded.unwrap_err();
            assert!(reason.contains(why), "{reason}");
        }
    }
}

#[test]
fn cells_of_an_older_storage_revision_are_recomputed() {
    let Some(f) = fixture() else { return };
    for (spec, record) in f.specs.iter().zip(&f.records) {
        let revision = spec.method.compression().revision();
        assert_eq!(record.report["compression_revision"], revision);
    }
    check_cells_without(
        "compression_revision",
        |spec| spec.method.compression().revision() == 1,
        "revision 1 of scaled storage",
    );
}

#[test]
fn cells_measured_with_unneeded_score_snapshots_are_recomputed() {
    let Some(f) = fixture() else { return };
    let ils = |spec: &CellSpec| spec.method.policy() == PolicyKind::Ils;
    for (spec, record) in f.specs.iter().zip(&f.records) {
        assert_eq!(
            record.report["score_snapshots"],
            ils(spec),
            "{:?}",
            spec.method
        );
    }
    check_cells_without("score_snapshots", ils, "score snapshots");
}

#[test]
fn the_matched_method_needs_the_paper_cell() {
    let dir = tempfile::tempdir().unwrap();
    let err = reproduce::run(&Args {
        methods: Some(vec![Method::Full, Method::SlimfitMatched]),
        ..args(dir.path())
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("slimfit-matched needs slimfit-paper"), "{err}");
}

#[test]
fn a_stopped_run_gets_its_partial_table_without_training() {
    let Some(f) = fixture() else { return };
    // The tiny cells, stored as the quick profile's MRPC cells of seed 42; no other task
    // and no other seed has finished.
    let dir = tempfile::tempdir().unwrap();
    let store = CellStore::new(dir.path());
    for (spec, record) in f.specs.iter().zip(&f.records) {
        let spec = CellSpec {
            profile: "quick".into(),
            settings: TaskSettings::quick(GlueTask::Mrpc),
            ..spec.clone()
        };
        let record = CellRecord {
            profile: "quick".into(),
            settings: spec.settings.clone(),
            ..record.clone()
        };
        store.save(&spec, &record).unwrap();
    }
    let finished_in = |out: &Path, tasks: Vec<String>| {
        reproduce::run(&Args {
            data_dir: Some(f.ctx.glue.clone()),
            model: Some(f.ctx.model.clone()),
            tasks: Some(tasks),
            seeds: Some(2),
            dry_run: false,
            finished_only: true,
            ..args(out)
        })
    };
    let finished = |tasks: Vec<String>| finished_in(dir.path(), tasks);
    finished(vec!["mrpc".into(), "rte".into()]).unwrap();
    let md = std::fs::read_to_string(dir.path().join("table.md")).unwrap();
    // Another checkout has the committed records/ but not the git-ignored cells/: copied
    // into its cells/, they give the same table.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join("cells")).unwrap();
    for entry in std::fs::read_dir(dir.path().join("records")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            other.path().join("cells").join(entry.file_name()),
        )
        .unwrap();
    }
    finished_in(other.path(), vec!["mrpc".into(), "rte".into()]).unwrap();
    assert_eq!(
        std::fs::read_to_string(other.path().join("table.md")).unwrap(),
        md
    );
    assert!(md.contains("| mrpc | f1 |"), "{md}");
    assert!(!md.contains("| rte | accuracy |"), "{md}");
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("table.json")).unwrap())
            .unwrap();
    assert_eq!(t["methods"].as_array().unwrap().len(), Method::ALL.len());
    assert_eq!(t["methods"][0]["seeds"], serde_json::json!([42]));
    let err = finished(vec!["rte".into()]).unwrap_err().to_string();
    assert!(err.contains("none of these cells has finished"), "{err}");
}

#[test]
fn table_metadata_names_the_data_and_model_by_placeholder() {
    let glue = std::path::Path::new("/data/somewhere/glue");
    let home = slimfit_data::assets::home();
    let command = format!(
        "cargo xtask reproduce-table --data-dir {} --model {}/models/m",
        glue.display(),
        home.display()
    );
    assert_eq!(
        crate::reproduce::portable(&command, glue),
        "cargo xtask reproduce-table --data-dir $GLUE --model $SLIMFIT_HOME/models/m"
    );
}
