//! Resumable checkpoints: the whole state of a run between two optimizer steps, written so
//! that a run continued from it ends exactly as if it had never stopped.
//!
//! A checkpoint directory holds the model's weights (`model.bin`) and the optimizer's Adam
//! moments (`optimizer.bin`, with the keep/drop policy's actual contents), both in burn's
//! full-precision binary records, and `state.json`: the step, the training-dynamics scores
//! (stale ones included), the freezing policy's and the workload's generators, the set
//! trained last, budget mode's running corrections, and everything the report holds so far.
//! Dropout is reseeded before every forward segment from the run's seed, the pass and the
//! segment, and the data order of an epoch is a function of the seed and the epoch, so
//! nothing else carries over.
//!
//! The directory is written as a whole ([`StagedDir`]): a kill during a save leaves the
//! previous checkpoint. Writing it is not counted in the run's measured peaks (it is a host
//! copy of the weights and moments, freed before the next step).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::AdamW;
use burn::optim::Optimizer;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};
use slimfit_memory::{Bytes, counting};
use slimfit_models::staged_dir::StagedDir;

use super::TrainError;
use super::budget::BudgetProgress;
use super::config::TrainConfig;
use super::run_loop::LoopOutcome;

/// Version of the checkpoint layout.
pub(super) const FORMAT: u32 = 1;
const STATE: &str = "state.json";
const MODEL: &str = "model";
const OPTIMIZER: &str = "optimizer";

/// The record of the loop's AdamW over model `M`.
type AdamRecord<B, M> = <OptimizerAdaptor<AdamW, M, B> as Optimizer<M, B>>::Record;

/// Everything of a run's state that is not a tensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ResumeState {
    /// [`FORMAT`].
    pub format: u32,
    /// The run's settings ([`run_identity`]): a checkpoint continues only the run it was
    /// taken from.
    pub run: serde_json::Value,
    /// Optimizer steps taken.
    pub step: usize,
    /// Optimizer steps of the whole run.
    pub total_steps: usize,
    /// The training-dynamics score of every unit.
    pub scores: Vec<f64>,
    /// The freezing policy's state (`FreezePolicy::state`).
    pub policy: Vec<u64>,
    /// The workload's state (`Workload::state`).
    pub workload: Vec<u64>,
    /// The units that trained at the last step (their Adam moments may be kept).
    pub trained_last: Vec<bool>,
    /// What the loop recorded so far.
    pub outcome: LoopOutcome,
    /// Budget mode's fitted overhead, running counts and corrections.
    pub budget: Option<BudgetProgress>,
    /// The measured whole-run peak so far, where measured.
    pub peak: Option<Bytes>,
    /// The measured peak since the last step's set was fitted (what the next step's budget
    /// fit reads as its predecessor's), where measured.
    pub window_peak: Option<Bytes>,
    /// Wall-clock seconds of the run so far (every process that worked on it).
    pub elapsed_seconds: f64,
}

/// A run's resumable checkpoints: where, how often, and the state it continues from.
pub(super) struct Checkpoints {
    dir: PathBuf,
    every: Option<usize>,
    run: serde_json::Value,
    resumed: Option<ResumeState>,
    started: Instant,
}

/// The settings that make a run what it is: the configuration less where its outputs go
/// and how it is checkpointed.
fn run_identity(config: &TrainConfig) -> Result<serde_json::Value, TrainError> {
    let mut value = serde_json::to_value(config)
        .map_err(|e| TrainError::Checkpoint(format!("cannot encode the run's settings: {e}")))?;
    if let Some(map) = value.as_object_mut() {
        map.remove("output");
        map.remove("checkpoints");
    }
    Ok(value)
}

fn recorder() -> BinFileRecorder<FullPrecisionSettings> {
    BinFileRecorder::new()
}

fn failed(dir: &Path, what: &str, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint(format!("{}: {what}: {e}", dir.display()))
}

impl Checkpoints {
    /// The checkpoints `config` asks for (`None`: none), with the state to continue from
    /// when it resumes and its directory holds a checkpoint of the same run.
    pub fn open(config: &TrainConfig) -> Result<Option<Self>, TrainError> {
        let c = &config.checkpoints;
        let Some(dir) = c.dir.clone().filter(|_| !c.is_off()) else {
            return Ok(None);
        };
        let run = run_identity(config)?;
        let resumed = if c.resume {
            read_state(&dir, &run)?
        } else {
            None
        };
        if let Some(state) = &resumed {
            tracing::info!(
                "resuming at step {} of {} from {}",
                state.step,
                state.total_steps,
                dir.display()
            );
        }
        Ok(Some(Self {
            dir,
            every: c.every,
            run,
            resumed,
            started: Instant::now(),
        }))
    }

    /// The state this run continues from, if it resumes one.
    pub fn resumed(&self) -> Option<&ResumeState> {
        self.resumed.as_ref()
    }

    /// `model` with the checkpoint's weights (and parameter ids) when the run resumes; as
    /// given otherwise. Units must be listed after this: the ids are the checkpoint's.
    pub fn load_model<B: Backend, M: Module<B>>(
        &self,
        model: M,
        device: &B::Device,
    ) -> Result<M, TrainError> {
        if self.resumed.is_none() {
            return Ok(model);
        }
        let record = recorder()
            .load(self.dir.join(MODEL), device)
            .map_err(|e| failed(&self.dir, "cannot read the weights", e))?;
        Ok(model.load_record(record))
    }

    /// The optimizer's record of the checkpoint this run resumes.
    pub fn load_optimizer<B, M>(&self, device: &B::Device) -> Result<AdamRecord<B, M>, TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
    {
        recorder()
            .load(self.dir.join(OPTIMIZER), device)
            .map_err(|e| failed(&self.dir, "cannot read the optimizer state", e))
    }

    /// Whether a checkpoint is due after optimizer step `step` (1-based) of `total`: every
    /// `every` steps and after the last.
    pub fn due(&self, step: usize, total: usize) -> bool {
        self.every
            .is_some_and(|n| step.is_multiple_of(n) || step == total)
    }

    /// Wall-clock seconds of the run so far, earlier processes included.
    pub fn elapsed_seconds(&self) -> f64 {
        self.resumed.as_ref().map_or(0.0, |s| s.elapsed_seconds)
            + self.started.elapsed().as_secs_f64()
    }

    /// The run's measured whole-run peak: this process's `now` and the earlier ones'.
    pub fn whole_run_peak(&self, now: Option<Bytes>) -> Option<Bytes> {
        let earlier = self.resumed.as_ref().and_then(|s| s.peak);
        now.max(earlier)
    }

    /// The run's settings, as [`ResumeState::run`] holds them.
    pub fn run(&self) -> &serde_json::Value {
        &self.run
    }

    /// Writes `state`, `model` and `optimizer` to the directory as a whole; the process's
    /// measured peaks are left as they were before.
    pub fn save<B, M>(
        &self,
        state: &ResumeState,
        model: &M,
        optimizer: &OptimizerAdaptor<AdamW, M, B>,
    ) -> Result<(), TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
    {
        let dir = &self.dir;
        let (peak, window) = (counting::peak(), counting::window_peak());
        let staged = StagedDir::new(dir, &[STATE]).map_err(|e| failed(dir, "cannot stage", e))?;
        let recorder = recorder();
        recorder
            .record(model.clone().into_record(), staged.file(MODEL))
            .map_err(|e| failed(dir, "cannot write the weights", e))?;
        recorder
            .record(optimizer.to_record(), staged.file(OPTIMIZER))
            .map_err(|e| failed(dir, "cannot write the optimizer state", e))?;
        let json = serde_json::to_vec(state).map_err(|e| failed(dir, "cannot encode", e))?;
        staged
            .write(STATE, &json)
            .map_err(|e| failed(dir, "cannot write", e))?;
        staged
            .commit()
            .map_err(|e| failed(dir, "cannot commit", e))?;
        counting::restore_peaks(peak, window);
        tracing::info!(
            "checkpoint at step {} of {} written to {}",
            state.step,
            state.total_steps,
            dir.display()
        );
        Ok(())
    }
}

/// The state in `dir`, if it holds a checkpoint (`None`: the directory is absent or
/// empty), checked to continue the run `run` describes.
fn read_state(dir: &Path, run: &serde_json::Value) -> Result<Option<ResumeState>, TrainError> {
    let path = dir.join(STATE);
    if !path.exists() {
        let empty = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
        if !empty {
            return Err(failed(
                dir,
                "not a resumable checkpoint",
                "it has no state.json (and is not empty)",
            ));
        }
        return Ok(None);
    }
    let text = std::fs::read(&path).map_err(|e| failed(dir, "cannot read state.json", e))?;
    let state: ResumeState =
        serde_json::from_slice(&text).map_err(|e| failed(dir, "invalid state.json", e))?;
    if state.format != FORMAT {
        return Err(failed(
            dir,
            "checkpoint format",
            format!("{} (this program reads {FORMAT})", state.format),
        ));
    }
    let differences = differing_settings(&state.run, run);
    if !differences.is_empty() {
        return Err(failed(
            dir,
            "it was taken from another run",
            format!(
                "these settings differ: {}; resume with the command that started it",
                differences.join(", ")
            ),
        ));
    }
    Ok(Some(state))
}

/// The settings (top-level keys) whose values differ between two runs, each shown as
/// `key: saved → now`.
fn differing_settings(saved: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    let (Some(saved), Some(now)) = (saved.as_object(), now.as_object()) else {
        return vec![format!("{saved} → {now}")];
    };
    let mut keys: Vec<&String> = saved.keys().chain(now.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| saved.get(*k) != now.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| v.map_or("unset".into(), |v| v.to_string());
            format!("{k}: {} → {}", show(saved.get(k)), show(now.get(k)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_settings_are_named_with_both_values() {
        let saved = serde_json::json!({"lr": 2e-5, "seed": 42, "task": "mrpc"});
        let now = serde_json::json!({"lr": 3e-5, "seed": 42, "epochs": 3, "task": "mrpc"});
        assert_eq!(
            differing_settings(&saved, &now),
            ["epochs: unset → 3", "lr: 0.00002 → 0.00003"]
        );
        assert!(differing_settings(&saved, &saved).is_empty());
    }

    #[test]
    fn a_directory_without_state_is_refused_unless_empty() {
        let dir = tempfile::tempdir().unwrap();
        let run = serde_json::json!({"seed": 1});
        assert!(
            read_state(&dir.path().join("absent"), &run)
                .unwrap()
                .is_none()
        );
        assert!(read_state(dir.path(), &run).unwrap().is_none());
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let e = read_state(dir.path(), &run).unwrap_err().to_string();
        assert!(e.contains("no state.json"), "{e}");
    }
}
