//! The cells of a sweep, their records, and the processes that train them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use slimfit_data::{GlueTask, LabelKind};
use slimfit_memory::Bytes;
use slimfit_trainer::task::Task;

use super::contender::{Contender, Knobs, strings};
use super::fit::{Choice, Planner, choose};
use crate::reproduce::portable;
use crate::table::ReportView;

/// Optimizer steps between a cell's resumable checkpoints (as `reproduce-table`'s).
const CHECKPOINT_EVERY: usize = 100;

/// One run of the sweep: `fraction` 1 is the reference (full fine-tuning as published).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cell {
    /// The task.
    #[serde(with = "task_name")]
    pub task: GlueTask,
    /// The seed.
    pub seed: u64,
    /// The method.
    pub contender: Contender,
    /// The budget is the reference's measured peak / `fraction`.
    pub fraction: u32,
}

impl Cell {
    /// `<task>-<method>-<1 | 1of<f>>-seed<s>`.
    pub fn name(&self) -> String {
        let share = match self.fraction {
            1 => "1".to_string(),
            f => format!("1of{f}"),
        };
        format!(
            "{}-{}-{share}-seed{}",
            self.task.name(),
            self.contender.key(),
            self.seed
        )
    }

    /// The reference run whose peak this cell's budget divides.
    pub fn reference(&self) -> Cell {
        Cell {
            contender: Contender::Full,
            fraction: 1,
            ..*self
        }
    }
}

/// A finished cell, as committed under `records/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The cell.
    pub cell: Cell,
    /// Its budget (`None` for the reference).
    pub budget: Option<Bytes>,
    /// What it ran in (`None` for the reference), or why nothing fits.
    pub choice: Option<Choice>,
    /// The `slimfit-trainer train` command it ran (paths as `$GLUE`, `$SLIMFIT_HOME`);
    /// empty where nothing fits.
    pub command: String,
    /// The trainer's report; `None` where nothing fits.
    pub report: Option<serde_json::Value>,
}

impl Record {
    /// The parsed report.
    pub fn view(&self) -> Option<ReportView> {
        self.report.as_ref().and_then(|r| ReportView::parse(r).ok())
    }
}

/// Every cell: per seed and task the reference, then each fraction's contenders.
pub fn cells(
    tasks: &[GlueTask],
    seeds: usize,
    fractions: &[u32],
    contenders: &[Contender],
) -> Vec<Cell> {
    let mut cells = Vec::new();
    for seed in (0..seeds as u64).map(|s| crate::reproduce::FIRST_SEED + s) {
        for &task in tasks {
            let at = |contender, fraction| Cell {
                task,
                seed,
                contender,
                fraction,
            };
            cells.push(at(Contender::Full, 1));
            for &fraction in fractions {
                for &contender in contenders {
                    cells.push(at(contender, fraction));
                }
            }
        }
    }
    cells
}

/// Builds `slimfit-trainer` (release) with cargo; its path.
pub fn build_trainer() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--release", "--quiet", "-p", "slimfit-trainer"])
        .status()
        .with_context(|| format!("running {cargo} build"))?;
    if !status.success() {
        bail!("building slimfit-trainer failed ({status})");
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("locating target/release")?;
    Ok(dir.join(format!("slimfit-trainer{}", std::env::consts::EXE_SUFFIX)))
}

/// Where and how a sweep runs.
pub struct Sweep {
    pub glue: PathBuf,
    pub model: PathBuf,
    pub out: PathBuf,
    pub trainer: PathBuf,
    pub jobs: usize,
    pub epochs: Option<usize>,
    pub max_train_examples: Option<usize>,
    pub max_dev_examples: Option<usize>,
}

/// A cell ready to train: its flags, budget and choice.
struct Prepared {
    flags: Vec<String>,
    budget: Option<Bytes>,
    choice: Option<Choice>,
}

impl Sweep {
    fn records_dir(&self) -> PathBuf {
        self.out.join("records")
    }

    fn work_dir(&self) -> PathBuf {
        self.out.join("cells")
    }

    fn record_path(&self, cell: &Cell) -> PathBuf {
        self.records_dir().join(format!("{}.json", cell.name()))
    }

    /// The flags every cell of `cell`'s task and seed shares.
    fn common_flags(&self, cell: &Cell) -> Vec<String> {
        let mut flags = strings(&["--task", cell.task.name(), "--seed"]);
        flags.push(cell.seed.to_string());
        flags.push("--data-dir".into());
        flags.push(self.glue.display().to_string());
        flags.push("--model".into());
        flags.push(self.model.display().to_string());
        for (flag, value) in [
            ("--epochs", self.epochs),
            ("--max-train-examples", self.max_train_examples),
            ("--max-dev-examples", self.max_dev_examples),
        ] {
            if let Some(v) = value {
                flags.extend([flag.to_string(), v.to_string()]);
            }
        }
        flags
    }

    /// The flags of `cell` run as `contender` with `knobs` under `budget` (`None` where
    /// the knobs cannot keep the task's effective batch).
    fn flags(&self, cell: &Cell, knobs: Knobs, budget: Option<Bytes>) -> Option<Vec<String>> {
        let mut flags = self.common_flags(cell);
        flags.extend(cell.contender.flags());
        if let Some(lr) = cell.contender.lr(cell.task) {
            flags.extend(["--lr".to_string(), format!("{lr:e}")]);
        }
        let (_, _, batch) = Task::Glue(cell.task).defaults();
        flags.extend(knobs.flags(batch)?);
        if let (Contender::Slimfit, Some(budget)) = (cell.contender, budget) {
            flags.extend(["--memory-budget".to_string(), budget.0.to_string()]);
        }
        Some(flags)
    }

    /// What `cell` runs, once its reference is finished (`None` before).
    fn prepare(&self, cell: &Cell, done: &HashMap<Cell, Record>) -> Result<Option<Prepared>> {
        let plain = Knobs {
            checkpointing: false,
            grad_accum: 1,
            lisa_layers: None,
        };
        if cell.fraction == 1 {
            return Ok(Some(Prepared {
                flags: self
                    .flags(cell, plain, None)
                    .context("the reference's flags")?,
                budget: None,
                choice: None,
            }));
        }
        let reference = cell.reference();
        let Some(record) = done.get(&reference) else {
            return Ok(None);
        };
        let view = record.view().context("the reference's report")?;
        let floor = record
            .report
            .as_ref()
            .and_then(|r| r["setup_peak_bytes"].as_u64())
            .map_or(Bytes::ZERO, Bytes);
        let measured = Bytes(
            view.peak_bytes
                .with_context(|| format!("{}: no measured peak (flex only)", reference.name()))?,
        );
        let planner = Planner::calibrate(
            &self.model,
            num_labels(cell.task),
            &self
                .flags(&reference, plain, None)
                .context("the reference's flags")?,
            view.longest_train_sequence,
            (measured, floor),
        )?;
        let budget = Bytes(measured.0 / u64::from(cell.fraction));
        let choice = choose(cell.contender, budget, |knobs| {
            self.flags(cell, knobs, Some(budget))
                .map(|flags| planner.plan(&flags))
                .transpose()
        })?;
        let flags = match &choice {
            Choice::Fits { knobs, .. } => {
                self.flags(cell, *knobs, Some(budget)).unwrap_or_default()
            }
            Choice::DoesNotFit { .. } | Choice::Refused { .. } => Vec::new(),
        };
        Ok(Some(Prepared {
            flags,
            budget: Some(budget),
            choice: Some(choice),
        }))
    }

    /// The command line a record keeps.
    fn command(&self, flags: &[String]) -> String {
        if flags.is_empty() {
            return String::new();
        }
        portable(
            &format!("slimfit-trainer train {}", flags.join(" ")),
            &self.glue,
        )
    }

    /// A committed record of `cell` made as `prepared` would make it (the same command,
    /// budget and choice), if any.
    fn reusable(&self, cell: &Cell, prepared: &Prepared) -> Option<Record> {
        let text = std::fs::read_to_string(self.record_path(cell)).ok()?;
        let record: Record = serde_json::from_str(&text).ok()?;
        (record.command == self.command(&prepared.flags)
            && record.budget == prepared.budget
            && record.choice == prepared.choice)
            .then_some(record)
    }

    fn save(&self, record: &Record) -> Result<()> {
        std::fs::create_dir_all(self.records_dir())?;
        let path = self.record_path(&record.cell);
        slimfit_trainer::outputs::write_atomically(
            &path,
            serde_json::to_string_pretty(record)?.as_bytes(),
        )?;
        Ok(())
    }

    /// Starts `slimfit-trainer train` for `cell`, logging to `cells/<name>.log`.
    fn start(&self, cell: &Cell, flags: &[String]) -> Result<Child> {
        let work = self.work_dir();
        std::fs::create_dir_all(&work)?;
        let name = cell.name();
        let log = std::fs::File::create(work.join(format!("{name}.log")))?;
        let mut cmd = Command::new(&self.trainer);
        cmd.arg("train")
            .args(flags)
            .arg("--report")
            .arg(work.join(format!("{name}.report.json")))
            .arg("--checkpoint-dir")
            .arg(work.join(format!(".resume-{name}")))
            .args([
                "--checkpoint-every",
                &CHECKPOINT_EVERY.to_string(),
                "--resume",
            ])
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            cmd.env("RAYON_NUM_THREADS", (cores / self.jobs).max(1).to_string());
        }
        cmd.spawn()
            .with_context(|| format!("starting {}", self.trainer.display()))
    }

    /// The record of a cell whose process exited successfully.
    fn finish(&self, cell: &Cell, prepared: Prepared) -> Result<Record> {
        let work = self.work_dir();
        let name = cell.name();
        let path = work.join(format!("{name}.report.json"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{name}: reading {}", path.display()))?;
        let report: serde_json::Value = serde_json::from_str(&portable(&text, &self.glue))?;
        let record = Record {
            cell: *cell,
            budget: prepared.budget,
            choice: prepared.choice,
            command: self.command(&prepared.flags),
            report: Some(report),
        };
        self.save(&record)?;
        let _ = std::fs::remove_dir_all(work.join(format!(".resume-{name}")));
        Ok(record)
    }

    /// Runs every cell not already recorded (`jobs` at once); every record, in cell order.
    pub fn run(&self, cells: &[Cell], dry_run: bool) -> Result<Vec<Record>> {
        let mut done: HashMap<Cell, Record> = HashMap::new();
        let mut waiting: Vec<Cell> = cells.to_vec();
        let mut running: Vec<(Cell, Prepared, Child)> = Vec::new();
        loop {
            let mut at = 0;
            while at < waiting.len() && (dry_run || running.len() < self.jobs) {
                let cell = waiting[at];
                let Some(prepared) = self.prepare(&cell, &done)? else {
                    at += 1;
                    continue;
                };
                waiting.remove(at);
                let command = self.command(&prepared.flags);
                if let Some(record) = self.reusable(&cell, &prepared) {
                    done.insert(cell, record);
                    continue;
                }
                if dry_run || prepared.flags.is_empty() {
                    describe(&cell, &prepared, &command);
                    if prepared.flags.is_empty() && !dry_run {
                        let record = Record {
                            cell,
                            budget: prepared.budget,
                            choice: prepared.choice,
                            command,
                            report: None,
                        };
                        self.save(&record)?;
                        done.insert(cell, record);
                    }
                    continue;
                }
                describe(&cell, &prepared, &command);
                let child = self.start(&cell, &prepared.flags)?;
                running.push((cell, prepared, child));
            }
            if running.is_empty() {
                break;
            }
            let (cell, prepared, success) = wait_any(&mut running)?;
            let log = self.work_dir().join(format!("{}.log", cell.name()));
            let record = if success {
                self.finish(&cell, prepared)?
            } else if let (Some(message), Some(Choice::Fits { knobs, .. })) =
                (budget_refusal(&log), &prepared.choice)
            {
                println!(
                    "  {}: the trainer refused the budget: {message}",
                    cell.name()
                );
                let record = Record {
                    cell,
                    budget: prepared.budget,
                    choice: Some(Choice::Refused {
                        knobs: *knobs,
                        message,
                    }),
                    command: self.command(&prepared.flags),
                    report: None,
                };
                self.save(&record)?;
                record
            } else {
                for (_, _, child) in running.iter_mut() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                bail!("{} failed; its log: {}", cell.name(), log.display());
            };
            if let Some(view) = record.view() {
                println!(
                    "  {}: {} · peak {} · {:.0} s",
                    cell.name(),
                    view.metrics_text(),
                    view.peak_bytes.map_or("—".into(), |b| Bytes(b).to_string()),
                    view.wall_seconds
                );
            }
            done.insert(cell, record);
        }
        if !dry_run && !waiting.is_empty() {
            bail!(
                "cells left that cannot start (their reference did not run): {:?}",
                waiting.iter().map(Cell::name).collect::<Vec<_>>()
            );
        }
        Ok(cells.iter().filter_map(|c| done.remove(c)).collect())
    }
}

fn describe(cell: &Cell, prepared: &Prepared, command: &str) {
    match (&prepared.choice, prepared.budget) {
        (Some(Choice::DoesNotFit { least, knobs }), Some(budget)) if *least <= budget => println!(
            "{}: does not fit {budget}: only every unit frozen would ({least}, {})",
            cell.name(),
            knobs.describe()
        ),
        (Some(Choice::DoesNotFit { least, knobs }), Some(budget)) => println!(
            "{}: does not fit {budget} (least predicted {least}, {})",
            cell.name(),
            knobs.describe()
        ),
        (
            Some(Choice::Fits {
                knobs,
                predicted,
                trainable_units,
            }),
            Some(budget),
        ) => println!(
            "{}: budget {budget}: {} (predicted {predicted}, {trainable_units} units per step)\n  {command}",
            cell.name(),
            knobs.describe()
        ),
        _ => println!("{}: reference\n  {command}", cell.name()),
    }
}

/// Waits for a cell process to end: the cell, and whether it succeeded.
fn wait_any(running: &mut Vec<(Cell, Prepared, Child)>) -> Result<(Cell, Prepared, bool)> {
    loop {
        for at in 0..running.len() {
            if let Some(status) = running[at].2.try_wait()? {
                let (cell, prepared, _) = running.remove(at);
                return Ok((cell, prepared, status.success()));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// The trainer's refusal of a memory budget in a cell's log, if that is why it failed.
fn budget_refusal(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .find(|l| l.contains("--memory-budget") && l.starts_with("Error"))
        .map(|l| l.trim_start_matches("Error: ").to_string())
}

/// Labels of the task's head (1 for regression).
pub fn num_labels(task: GlueTask) -> usize {
    match task.labels() {
        LabelKind::Regression => 1,
        LabelKind::Classes(names) => names.len(),
    }
}

/// A task as its name in records.
mod task_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use slimfit_data::GlueTask;

    pub fn serialize<S: Serializer>(task: &GlueTask, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(task.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<GlueTask, D::Error> {
        let name = String::deserialize(d)?;
        name.parse()
            .map_err(|_| serde::de::Error::custom(format!("unknown GLUE task {name:?}")))
    }
}
