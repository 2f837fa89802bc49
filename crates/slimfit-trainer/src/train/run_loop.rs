//! SlimFit's training loop over any [`Workload`].

use std::collections::{HashMap, HashSet};

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};
use slimfit_memory::{Bytes, counting};
use slimfit_models::{HasUnits, Unit, UnitKind};

use super::TrainError;
use super::measured_peak;
use super::report::EpochMetrics;
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

    /// Tokens per example of `batch` as the model will see it (its padded length), where
    /// the workload knows it: budget mode plans each step at this length rather than the
    /// longest allowed. `None`: every batch is as long as planned.
    fn tokens(&self, _batch: &[usize]) -> Option<usize> {
        None
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
#[derive(Debug, Clone, Default)]
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

/// Copies the values of chosen parameters to the host.
struct Snapshot<'a> {
    wanted: &'a HashMap<ParamId, usize>,
    values: HashMap<usize, Vec<f32>>,
}

impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for Snapshot<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(&unit) = self.wanted.get(&param.id) {
            let data = param.val().into_data().convert::<f32>();
            self.values
                .insert(unit, data.into_vec().expect("f32 values"));
        }
    }
}

fn snapshot<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    wanted: &HashMap<ParamId, usize>,
) -> HashMap<usize, Vec<f32>> {
    let mut visitor = Snapshot {
        wanted,
        values: HashMap::new(),
    };
    model.visit(&mut visitor);
    visitor.values
}

/// Decoupled weight decay `W ← W·(1 − lr·wd)` on the chosen parameters (AdamW's decay,
/// applied only to weights that are not biases or LayerNorm, and only when they trained).
struct Decay<'a> {
    ids: &'a HashSet<ParamId>,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Decay<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if !self.ids.contains(&param.id) {
            return param;
        }
        let factor = self.factor;
        param.map(|t| {
            let tracked = t.is_require_grad();
            let t = Tensor::from_inner(t.inner().mul_scalar(factor));
            if tracked { t.require_grad() } else { t }
        })
    }
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
    if k == 1 {
        let loss = workload.loss(model, &micro_batches[0])?;
        let value: f32 = loss.clone().into_scalar().elem();
        return Ok((GradientsParams::from_grads(loss.backward(), model), value));
    }
    let mut accumulator = GradientsAccumulator::<W::Model>::new();
    // The losses are summed on the device: one host sync per optimizer step, not per
    // micro-batch.
    let mut sum: Option<Tensor<B, 1>> = None;
    for batch in micro_batches {
        let loss = workload.loss(model, batch)?;
        let value = loss.clone().detach();
        sum = Some(match sum {
            Some(s) => s + value,
            None => value,
        });
        let scaled = loss.div_scalar(k as f64);
        accumulator.accumulate(model, GradientsParams::from_grads(scaled.backward(), model));
    }
    let sum: f32 = sum.expect("k > 1 micro-batches").into_scalar().elem();
    Ok((accumulator.grads(), sum / k as f32))
}

/// SlimFit's training loop over any [`Workload`]; returns what it recorded and the trained
/// model. Per optimizer step: the policy picks the trainable units from the scores, `fit`
/// may change the set to fit a memory budget (it gets the scores, except during the head
/// warm-up), the model is switched to that set, the gradients of the
/// step's `grad_accum` micro-batches are computed ([`step_gradients`]), weight decay and
/// AdamW update the trained units (with `lr` decayed linearly over the optimizer steps),
/// frozen units' Adam state is dropped when asked, and the scores of the trained units are
/// updated from their values before and after the step. The dev set is evaluated after
/// every epoch.
pub fn run_slimfit<B, W>(
    workload: &mut W,
    mut model: W::Model,
    units: &[Unit],
    mut schedule: Schedule,
    mut fit: impl FnMut(&mut [bool], StepContext<'_>) -> Result<(), TrainError>,
    progress: &mut impl FnMut(usize, usize, f32, usize),
) -> Result<(LoopOutcome, W::Model), TrainError>
where
    B: AutodiffBackend,
    W: Workload<B>,
{
    let t = units.len();
    let decay_ids: HashSet<ParamId> = units
        .iter()
        .filter(|u| decays(u.kind))
        .map(|u| u.param_id)
        .collect();
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-6)
        .with_weight_decay(0.0)
        .init::<B, W::Model>();
    let accum = schedule.grad_accum.max(1);
    let total_steps = workload.batches_per_epoch().div_ceil(accum) * schedule.epochs;
    let mut outcome = LoopOutcome {
        dev_metrics: Vec::new(),
        loss_curve: Vec::with_capacity(total_steps),
        frozen_per_step: Vec::with_capacity(total_steps),
        trained_count: vec![0; t],
        trained_per_step: Vec::with_capacity(total_steps),
        step_peaks: Vec::with_capacity(total_steps),
        score_snapshots: false,
    };
    let measuring = measured_peak().is_some();
    // Scoring copies every trainable unit twice a step: only for a policy that reads scores.
    let scoring = schedule.policy.reads_scores();
    outcome.score_snapshots = scoring;
    let mut trained_last = vec![false; t];
    let head_warmup_steps = (schedule.head_warmup * total_steps as f64).round() as usize;
    let mut step = 0;
    for epoch in 0..schedule.epochs {
        for micro_batches in workload.epoch_batches(epoch).chunks(accum) {
            let warming = step < head_warmup_steps;
            let mut trainable = if warming {
                // A fresh head's first gradients are noise to the backbone; under freezing
                // a backbone unit pushed off by them trains too rarely to recover.
                units.iter().map(|u| u.kind == UnitKind::Head).collect()
            } else {
                schedule
                    .policy
                    .trainable(step - head_warmup_steps, schedule.scores.scores())
            };
            let context = StepContext {
                scores: (!warming).then(|| schedule.scores.scores()),
                last_peak: (measuring && step > 0).then(counting::window_peak),
                tokens: micro_batches
                    .iter()
                    .filter_map(|batch| workload.tokens(batch))
                    .max(),
            };
            fit(&mut trainable, context)?;
            counting::reset_window();
            let frozen = trainable.iter().filter(|&&x| !x).count();
            let newly_frozen = (0..t).any(|i| trained_last[i] && !trainable[i]);
            if schedule.optimizer_state == OptimizerStatePolicy::Drop && newly_frozen {
                // Freed before the forward pass, not after the update: the step's peak then
                // holds the moments of this step's units only, as the accountant plans it.
                // Only last step's units hold moments, so nothing to do unless one froze.
                let mut record = optim.to_record();
                let before = record.len();
                for unit in units.iter().filter(|u| !trainable[u.index]) {
                    record.remove(&unit.param_id);
                }
                if record.len() != before {
                    optim = optim.load_record(record);
                }
            }
            model = model.with_trainable(units, &trainable);
            let wanted: HashMap<ParamId, usize> = units
                .iter()
                .filter(|u| trainable[u.index])
                .map(|u| (u.param_id, u.index))
                .collect();
            // `wanted` also picks the weights that decay below: only the copies are skipped.
            let before = if scoring {
                snapshot::<B, _>(&model, &wanted)
            } else {
                HashMap::new()
            };

            let (grads, loss_value) = step_gradients(workload, &model, micro_batches)?;
            let lr = learning_rate(step, total_steps, schedule.lr, schedule.warmup);
            let trained_decay: HashSet<ParamId> = decay_ids
                .iter()
                .filter(|id| wanted.contains_key(id))
                .copied()
                .collect();
            model = model.map(&mut Decay {
                ids: &trained_decay,
                factor: 1.0 - lr * schedule.weight_decay,
            });
            model = optim.step(lr, model, grads);
            let after = if scoring {
                snapshot::<B, _>(&model, &wanted)
            } else {
                HashMap::new()
            };
            for (unit, old) in &before {
                schedule
                    .scores
                    .record(*unit, old, &after[unit])
                    .expect("same unit, same length");
            }
            for (count, _) in outcome
                .trained_count
                .iter_mut()
                .zip(&trainable)
                .filter(|(_, trains)| **trains)
            {
                *count += 1;
            }
            if measuring {
                outcome.step_peaks.push(counting::window_peak());
            }
            outcome.loss_curve.push(loss_value);
            outcome.frozen_per_step.push(frozen);
            outcome
                .trained_per_step
                .push((0..t).filter(|&i| trainable[i]).map(|i| i as u16).collect());
            trained_last = trainable;
            step += 1;
            progress(step, total_steps, loss_value, frozen);
        }
        let metrics = workload.evaluate(&model.valid())?;
        tracing::info!("epoch {}: {:?}", epoch + 1, metrics);
        outcome.dev_metrics.push(EpochMetrics {
            epoch: epoch + 1,
            metrics,
        });
    }
    Ok((outcome, model))
}
