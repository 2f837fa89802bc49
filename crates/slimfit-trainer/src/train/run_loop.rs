//! SlimFit's training loop over any [`Workload`].

use std::collections::{HashMap, HashSet};

use burn::module::{AutodiffModule, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};
use serde::{Deserialize, Serialize};
use slimfit_memory::{Bytes, counting};
use slimfit_models::{HasUnits, Unit, UnitKind};

use super::TrainError;
use super::budget::{BudgetState, fit_step};
use super::measured_peak;
use super::params::{Decay, first_non_finite, snapshot};
use super::report::EpochMetrics;
use super::resume::{Checkpoints, ResumeState};
use super::schedule::{Schedule, decays, learning_rate};
use crate::measure::OptimizerStatePolicy;

/// A fine-tuning job [`run_slimfit`] can run: a model made of SlimFit units, the batches of
/// each epoch, the loss of a batch, and the dev evaluation.
pub trait Workload<B: AutodiffBackend> {
    /// The model trained.
    type Model: HasUnits<B> + AutodiffModule<B>;

    /// Batches per epoch: the length of every [`Workload::epoch_batches`] (micro-batches
    /// under gradient accumulation).
    fn batches_per_epoch(&self) -> usize;

    /// The batches of epoch `epoch` (0-based), as indices of training examples.
    fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>>;

    /// The mean training loss of the examples at `batch` (a forward pass that autodiff
    /// records).
    fn loss(&mut self, model: &Self::Model, batch: &[usize]) -> Result<Tensor<B, 1>, TrainError>;

    /// Back-propagates the loss of `batch`, divided by `divide_by` (the micro-batches of the
    /// step), into `grads`, and returns the undivided loss. The default records
    /// [`Workload::loss`] and runs one backward pass ([`plain_backward`]); a workload may
    /// recompute activations instead of keeping them (activation checkpointing).
    fn backward(
        &mut self,
        model: &Self::Model,
        batch: &[usize],
        divide_by: usize,
        grads: &mut GradientsAccumulator<Self::Model>,
    ) -> Result<Tensor<B, 1>, TrainError> {
        let loss = self.loss(model, batch)?;
        Ok(plain_backward(model, loss, divide_by, grads))
    }

    /// Tokens per example of `batch` as the model will see it (its padded length), where
    /// the workload knows it: budget mode plans each step at this length rather than the
    /// longest allowed. `None`: every batch is as long as planned.
    fn tokens(&self, _batch: &[usize]) -> Option<usize> {
        None
    }

    /// The workload's own state (random generators, pass counters), for a resumable
    /// checkpoint: a workload restored from it ([`Workload::restore`]) draws the same
    /// batches, augmentations and dropout masks from then on.
    fn state(&self) -> Vec<u64> {
        Vec::new()
    }

    /// Continues from a [`Workload::state`] of the same workload.
    fn restore(&mut self, state: &[u64]) -> Result<(), TrainError> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(TrainError::Checkpoint(format!(
                "holds {} workload values this workload has no use for",
                state.len()
            )))
        }
    }

    /// Dev metrics (name → value, ×100) of the model without autodiff.
    fn evaluate(
        &self,
        model: &<Self::Model as AutodiffModule<B>>::InnerModule,
    ) -> Result<HashMap<String, f64>, TrainError>;
}

/// What [`run_slimfit`] tells its `fit` callback before each step.
#[derive(Debug, Clone, Copy)]
pub struct StepContext<'a> {
    /// The current scores; `None` during the head warm-up (the set is the head alone).
    pub scores: Option<&'a [f64]>,
    /// The measured peak since the previous step's set was fitted (that step, and an
    /// evaluation when an epoch ended), where measured.
    pub last_peak: Option<Bytes>,
    /// Tokens per example of this step's longest micro-batch ([`Workload::tokens`]).
    pub tokens: Option<usize>,
}

/// What [`run_slimfit`] records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoopOutcome {
    /// Dev metrics after each epoch.
    pub dev_metrics: Vec<EpochMetrics>,
    /// Training loss per optimizer step (the mean over its micro-batches).
    pub loss_curve: Vec<f32>,
    /// Units frozen at each optimizer step.
    pub frozen_per_step: Vec<usize>,
    /// How many steps each unit trained, by unit index.
    pub trained_count: Vec<usize>,
    /// The units that trained at each optimizer step, by unit index, ascending.
    pub trained_per_step: Vec<Vec<u16>>,
    /// Measured peak of each optimizer step, where measured ([`measured_peak`]).
    pub step_peaks: Vec<Bytes>,
    /// Whether each step copied its trainable units to score their update.
    pub score_snapshots: bool,
}

/// The gradients of one optimizer step over `micro_batches` (k of them) and the mean of
/// their losses. Each micro-batch's mean loss is scaled by 1/k and back-propagated, and the
/// gradients are summed as they come: the mean of the micro-batches' gradients — for k
/// micro-batches of equal size, the gradient of the mean loss over all their examples.
/// Between micro-batches only the running sum is kept (one gradient per trainable
/// parameter); with k = 1 the step is a plain backward pass.
pub fn step_gradients<B, W>(
    workload: &mut W,
    model: &W::Model,
    micro_batches: &[Vec<usize>],
) -> Result<(GradientsParams, f32), TrainError>
where
    B: AutodiffBackend,
    W: Workload<B>,
{
    let k = micro_batches.len();
    let mut accumulator = GradientsAccumulator::<W::Model>::new();
    // The losses are summed on the device: one host sync per optimizer step, not per
    // micro-batch.
    let mut sum: Option<Tensor<B, 1>> = None;
    for batch in micro_batches {
        let value = workload.backward(model, batch, k, &mut accumulator)?;
        sum = Some(match sum {
            Some(s) => s + value,
            None => value,
        });
    }
    let sum: f32 = sum.expect("at least one micro-batch").into_scalar().elem();
    Ok((accumulator.grads(), sum / k as f32))
}

/// One backward pass of `loss` divided by `divide_by` (not divided for 1) into `grads`;
/// returns the undivided loss, detached.
pub fn plain_backward<B, M>(
    model: &M,
    loss: Tensor<B, 1>,
    divide_by: usize,
    grads: &mut GradientsAccumulator<M>,
) -> Tensor<B, 1>
where
    B: AutodiffBackend,
    M: burn::module::AutodiffModule<B>,
{
    let value = loss.clone().detach();
    let scaled = if divide_by > 1 {
        loss.div_scalar(divide_by as f64)
    } else {
        loss
    };
    grads.accumulate(model, GradientsParams::from_grads(scaled.backward(), model));
    value
}

/// SlimFit's training loop over any [`Workload`]; returns what it recorded and the trained
/// model. Per optimizer step ([`LoopState`]): the policy picks the trainable units from the
/// scores and budget mode ([`fit_step`]) may change the set to fit its budget (it gets the
/// scores, except during the head warm-up); frozen units' Adam moments are dropped when
/// asked; the model is switched to that set; the gradients of the step's `grad_accum`
/// micro-batches are computed ([`step_gradients`]); weight decay and AdamW update the
/// trained units (with `lr` decayed linearly over the optimizer steps); and the scores of
/// the trained units are updated from their values before and after the step. The dev set
/// is evaluated after every epoch.
///
/// With `checkpoints`, the whole state is written every N steps (after the epoch's
/// evaluation when the step ends an epoch), and a resumed run starts at the step after its
/// checkpoint with the state it held: it ends as the uninterrupted run would.
///
/// A step whose loss is NaN or infinite, or whose update leaves a trained unit with a NaN or
/// infinite value, stops the run with [`TrainError::Diverged`] naming the step (and the
/// unit): a diverged model is never returned.
pub(super) fn run_slimfit<B, W>(
    workload: &mut W,
    mut model: W::Model,
    units: &[Unit],
    mut schedule: Schedule,
    budget: &mut Option<BudgetState>,
    checkpoints: Option<&Checkpoints>,
    progress: &mut impl FnMut(usize, usize, f32, usize),
) -> Result<(LoopOutcome, W::Model), TrainError>
where
    B: AutodiffBackend,
    W: Workload<B>,
{
    let accum = schedule.grad_accum.max(1);
    let per_epoch = workload.batches_per_epoch().div_ceil(accum);
    let total_steps = total_steps(workload.batches_per_epoch(), accum, schedule.epochs)?;
    let mut state = LoopState::<B, W::Model>::new(units, &schedule, total_steps);
    if let Some(saved) = checkpoints.and_then(Checkpoints::resumed) {
        let c = checkpoints.expect("resumed from checkpoints");
        state.resume(c, saved, &mut schedule, workload, &model)?;
    }
    for epoch in state.step / per_epoch.max(1)..schedule.epochs {
        let done_in_epoch = state.step - epoch * per_epoch;
        for micro_batches in workload
            .epoch_batches(epoch)
            .chunks(accum)
            .skip(done_in_epoch)
        {
            let tokens = micro_batches
                .iter()
                .filter_map(|batch| workload.tokens(batch))
                .max();
            let trainable = state.choose(&mut schedule, tokens, budget)?;
            state.drop_frozen_moments(&schedule, &trainable);
            model = if schedule.whole_modules {
                model.with_trainable_modules(units, &trainable)
            } else {
                model.with_trainable(units, &trainable)
            };
            let wanted = state.trained_params(&trainable);
            let before = state.copy_for_scores(&model, &wanted);
            let (grads, loss) = step_gradients(workload, &model, micro_batches)?;
            state.check_loss(loss)?;
            model = state.update(model, grads, &wanted, &schedule);
            state.check_weights(&model, &wanted)?;
            state.score(&mut schedule, &model, &wanted, before);
            let frozen = state.record(trainable, loss);
            progress(state.step, total_steps, loss, frozen);
            if state.step % per_epoch != 0 {
                state.checkpoint(checkpoints, &schedule, workload, budget, &model)?;
            }
        }
        let metrics = workload.evaluate(&model.valid())?;
        tracing::info!("epoch {}: {:?}", epoch + 1, metrics);
        state.outcome.dev_metrics.push(EpochMetrics {
            epoch: epoch + 1,
            metrics,
        });
        state.checkpoint(checkpoints, &schedule, workload, budget, &model)?;
    }
    Ok((state.outcome, model))
}

/// The most optimizer steps a run may have: far beyond any fine-tuning run, and a bound
/// that keeps the per-step records' sizes representable.
pub const MAX_STEPS: usize = 1 << 32;

/// Optimizer steps of a run, refused beyond [`MAX_STEPS`].
fn total_steps(batches: usize, accum: usize, epochs: usize) -> Result<usize, TrainError> {
    batches
        .div_ceil(accum)
        .checked_mul(epochs)
        .filter(|&n| n <= MAX_STEPS)
        .ok_or_else(|| {
            TrainError::Invalid(format!(
                "{epochs} epochs of {batches} batches are more than {MAX_STEPS} optimizer \
                 steps; lower --epochs"
            ))
        })
}

/// What the loop carries from step to step: the optimizer, the set trained last, the
/// records, and the step counter.
struct LoopState<'u, B: AutodiffBackend, M: AutodiffModule<B>> {
    units: &'u [Unit],
    optim: OptimizerAdaptor<AdamW, M, B>,
    decay_ids: HashSet<ParamId>,
    outcome: LoopOutcome,
    trained_last: Vec<bool>,
    /// Optimizer steps taken so far.
    step: usize,
    total_steps: usize,
    head_warmup_steps: usize,
    measuring: bool,
    /// Whether the policy reads scores: only then are trained units copied to score them.
    scoring: bool,
    /// The measured window a resumed run's first step takes as its last step's.
    resumed_window: Option<Bytes>,
    _model: std::marker::PhantomData<(B, M)>,
}

/// AdamW as the loop runs it: ε = 1e-6, and its decay off (applied to the trained units
/// that decay only, by [`Decay`]).
fn adamw<B: AutodiffBackend, M: AutodiffModule<B>>() -> OptimizerAdaptor<AdamW, M, B> {
    AdamWConfig::new()
        .with_epsilon(1e-6)
        .with_weight_decay(0.0)
        .init::<B, M>()
}

impl<'u, B, M> LoopState<'u, B, M>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + HasUnits<B>,
{
    fn new(units: &'u [Unit], schedule: &Schedule, total_steps: usize) -> Self {
        let t = units.len();
        // Records grow as steps are taken; reserve no more than a long run's worth up front.
        let reserve = total_steps.min(1 << 16);
        let scoring = schedule.policy.reads_scores();
        Self {
            units,
            optim: adamw(),
            decay_ids: units
                .iter()
                .filter(|u| decays(u.kind))
                .map(|u| u.param_id)
                .collect(),
            outcome: LoopOutcome {
                dev_metrics: Vec::new(),
                loss_curve: Vec::with_capacity(reserve),
                frozen_per_step: Vec::with_capacity(reserve),
                trained_count: vec![0; t],
                trained_per_step: Vec::with_capacity(reserve),
                step_peaks: Vec::with_capacity(reserve),
                score_snapshots: scoring,
            },
            trained_last: vec![false; t],
            step: 0,
            total_steps,
            head_warmup_steps: (schedule.head_warmup * total_steps as f64).round() as usize,
            measuring: measured_peak().is_some(),
            scoring,
            resumed_window: None,
            _model: std::marker::PhantomData,
        }
    }

    /// This step's trainable set: the head alone during the head warm-up, else the policy's
    /// choice from the scores; then `fit` (budget mode) may shed or refill it.
    fn choose(
        &mut self,
        schedule: &mut Schedule,
        tokens: Option<usize>,
        budget: &mut Option<BudgetState>,
    ) -> Result<Vec<bool>, TrainError> {
        let warming = self.step < self.head_warmup_steps;
        let mut trainable = if warming {
            // A fresh head's first gradients are noise to the backbone; under freezing a
            // backbone unit pushed off by them trains too rarely to recover.
            self.units
                .iter()
                .map(|u| u.kind == UnitKind::Head)
                .collect()
        } else {
            schedule
                .policy
                .trainable(self.step - self.head_warmup_steps, schedule.scores.scores())
        };
        // The first step after a resume sees the window its checkpoint measured, not this
        // process's start-up.
        let window = self
            .resumed_window
            .take()
            .unwrap_or_else(counting::window_peak);
        let context = StepContext {
            scores: (!warming).then(|| schedule.scores.scores()),
            last_peak: (self.measuring && self.step > 0).then_some(window),
            tokens,
        };
        fit_step(budget, &mut trainable, context)?;
        counting::reset_window();
        Ok(trainable)
    }

    /// Drops the Adam moments of units that trained last step and are frozen now (when the
    /// schedule asks for it). Freed before the forward pass, not after the update: the
    /// step's peak then holds the moments of this step's units only, as the accountant
    /// plans it. Only last step's units hold moments, so nothing is done unless one froze.
    fn drop_frozen_moments(&mut self, schedule: &Schedule, trainable: &[bool]) {
        let newly_frozen = (0..trainable.len()).any(|i| self.trained_last[i] && !trainable[i]);
        if schedule.optimizer_state != OptimizerStatePolicy::Drop || !newly_frozen {
            return;
        }
        let mut record = self.optim.to_record();
        let before = record.len();
        for unit in self.units.iter().filter(|u| !trainable[u.index]) {
            record.remove(&unit.param_id);
        }
        if record.len() != before {
            let optim = std::mem::replace(&mut self.optim, adamw());
            self.optim = optim.load_record(record);
        }
    }

    /// The parameters of the units that train, with their unit index.
    fn trained_params(&self, trainable: &[bool]) -> HashMap<ParamId, usize> {
        self.units
            .iter()
            .filter(|u| trainable[u.index])
            .map(|u| (u.param_id, u.index))
            .collect()
    }

    /// Host copies of the trained units for scoring, when the policy reads scores.
    fn copy_for_scores(&self, model: &M, wanted: &HashMap<ParamId, usize>) -> Copies {
        if self.scoring {
            snapshot::<B, _>(model, wanted)
        } else {
            HashMap::new()
        }
    }

    /// Stops the run on a NaN or infinite loss, before it updates anything.
    fn check_loss(&self, loss: f32) -> Result<(), TrainError> {
        if loss.is_finite() {
            return Ok(());
        }
        Err(TrainError::Diverged {
            step: self.step + 1,
            total: self.total_steps,
            reason: format!("the training loss is {loss}"),
        })
    }

    /// AdamW's decoupled weight decay on the trained units that decay, then its update.
    fn update(
        &mut self,
        model: M,
        grads: burn::optim::GradientsParams,
        wanted: &HashMap<ParamId, usize>,
        schedule: &Schedule,
    ) -> M {
        let lr = learning_rate(self.step, self.total_steps, schedule.lr, schedule.warmup);
        let trained_decay: HashSet<ParamId> = self
            .decay_ids
            .iter()
            .filter(|id| wanted.contains_key(id))
            .copied()
            .collect();
        let model = model.map(&mut Decay {
            ids: &trained_decay,
            factor: 1.0 - lr * schedule.weight_decay,
        });
        self.optim.step(lr, model, grads)
    }

    /// Stops the run when the update left a trained unit with a NaN or infinite value (a
    /// non-finite gradient, or an overflow): frozen units did not change.
    fn check_weights(&self, model: &M, wanted: &HashMap<ParamId, usize>) -> Result<(), TrainError> {
        match first_non_finite::<B, _>(model, wanted) {
            None => Ok(()),
            Some(unit) => Err(TrainError::Diverged {
                step: self.step + 1,
                total: self.total_steps,
                reason: format!(
                    "the update left unit `{}` with NaN or infinite values",
                    self.units[unit].name
                ),
            }),
        }
    }

    /// Updates the scores of the trained units from their values before and after the step.
    fn score(
        &self,
        schedule: &mut Schedule,
        model: &M,
        wanted: &HashMap<ParamId, usize>,
        before: Copies,
    ) {
        if !self.scoring {
            return;
        }
        let after = snapshot::<B, _>(model, wanted);
        for (unit, old) in &before {
            schedule
                .scores
                .record(*unit, old, &after[unit])
                .expect("same unit, same length");
        }
    }

    /// Records the step (loss, frozen count, trained set, measured peak) and returns how
    /// many units were frozen.
    fn record(&mut self, trainable: Vec<bool>, loss: f32) -> usize {
        for (count, _) in self
            .outcome
            .trained_count
            .iter_mut()
            .zip(&trainable)
            .filter(|(_, trains)| **trains)
        {
            *count += 1;
        }
        if self.measuring {
            self.outcome.step_peaks.push(counting::window_peak());
        }
        let frozen = trainable.iter().filter(|&&x| !x).count();
        self.outcome.loss_curve.push(loss);
        self.outcome.frozen_per_step.push(frozen);
        self.outcome.trained_per_step.push(
            (0..trainable.len())
                .filter(|&i| trainable[i])
                .map(|i| i as u16)
                .collect(),
        );
        self.trained_last = trainable;
        self.step += 1;
        frozen
    }
}

impl<B, M> LoopState<'_, B, M>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + HasUnits<B>,
{
    /// Continues from a checkpoint: its optimizer moments, scores, policy and workload
    /// state, the set trained last, and what was recorded (the weights were loaded with
    /// the model, [`Checkpoints::load_model`]).
    fn resume<W: Workload<B, Model = M>>(
        &mut self,
        checkpoints: &Checkpoints,
        saved: &ResumeState,
        schedule: &mut Schedule,
        workload: &mut W,
        model: &M,
    ) -> Result<(), TrainError> {
        let t = self.units.len();
        if saved.total_steps != self.total_steps || saved.trained_last.len() != t {
            return Err(TrainError::Checkpoint(format!(
                "holds a run of {} steps over {} units; this one has {} over {t}",
                saved.total_steps,
                saved.trained_last.len(),
                self.total_steps
            )));
        }
        let bad = |what: &str, e: String| TrainError::Checkpoint(format!("{what}: {e}"));
        let device = model
            .devices()
            .into_iter()
            .next()
            .ok_or_else(|| bad("the model", "has no device".into()))?;
        let record = checkpoints.load_optimizer::<B, M>(&device)?;
        let optim = std::mem::replace(&mut self.optim, adamw());
        self.optim = optim.load_record(record);
        schedule
            .scores
            .restore(&saved.scores)
            .map_err(|e| bad("scores", e.to_string()))?;
        schedule
            .policy
            .restore(&saved.policy)
            .map_err(|e| bad("policy", e))?;
        workload.restore(&saved.workload)?;
        self.trained_last = saved.trained_last.clone();
        self.outcome = saved.outcome.clone();
        self.step = saved.step;
        self.resumed_window = saved.window_peak;
        Ok(())
    }

    /// Writes a resumable checkpoint when one is due after this step.
    fn checkpoint<W: Workload<B, Model = M>>(
        &self,
        checkpoints: Option<&Checkpoints>,
        schedule: &Schedule,
        workload: &W,
        budget: &Option<BudgetState>,
        model: &M,
    ) -> Result<(), TrainError> {
        let Some(c) = checkpoints.filter(|c| c.due(self.step, self.total_steps)) else {
            return Ok(());
        };
        let state = ResumeState {
            format: super::resume::FORMAT,
            run: c.run().clone(),
            step: self.step,
            total_steps: self.total_steps,
            scores: schedule.scores.scores().to_vec(),
            policy: schedule.policy.state(),
            workload: workload.state(),
            trained_last: self.trained_last.clone(),
            outcome: self.outcome.clone(),
            budget: budget.as_ref().map(BudgetState::progress),
            peak: super::measured_peak(),
            window_peak: self.measuring.then(counting::window_peak),
            elapsed_seconds: c.elapsed_seconds(),
        };
        c.save(&state, model, &self.optim)
    }
}

/// Host copies of units' values, by unit index.
type Copies = HashMap<usize, Vec<f32>>;
