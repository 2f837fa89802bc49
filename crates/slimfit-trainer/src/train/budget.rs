//! Budget mode: the memory target resolved against the accountant's plans before the first
//! step, and each step's trainable set shed or refilled to fit it.

use serde::{Deserialize, Serialize};
use slimfit_memory::Bytes;
use slimfit_scheduler::FreezeRate;

use super::TrainError;
use super::config::{PolicyKind, TrainConfig};
use super::report::BudgetReport;
use super::run_loop::StepContext;
use crate::memory_target::{BudgetOrigin, planned_peaks};

/// Budget mode: the budget (resolved from `config.memory_budget` against the accountant's
/// all-frozen and full fine-tuning plans of the widest batch) and how many units fit in it,
/// given what is already live.
///
/// `shape` is the model's shape for the accountant and `seq` the tokens per example (the
/// longest training sequence of text, `1 + patches` of images).
fn fit_budget(
    config: &TrainConfig,
    shape: slimfit_memory::EncoderShape,
    seq: usize,
    live_with_model: Bytes,
    saved: Option<&BudgetProgress>,
) -> Result<(BudgetReport, slimfit_memory::PlanRequest), TrainError> {
    let invalid =
        |e: slimfit_memory::PlanError| TrainError::Invalid(format!("--memory-budget: {e}"));
    let mut request = slimfit_memory::PlanRequest::with_freeze_rate(
        shape,
        config.batch,
        seq,
        crate::accountant::storage(config.compression),
        crate::accountant::optimizer_state(config.optimizer_state),
        0.0,
    );
    // The loop scores (copies units) only for a policy that reads scores: ILS alone
    // (`FreezePolicy::reads_scores`; the trainer's tests check the two agree).
    request.score_snapshots = config.policy == PolicyKind::Ils;
    request.accumulated_gradients = config.grad_accum > 1;
    request.recompute_layers = config.activation_checkpointing;
    // What is live now, less the weights the plan counts itself, stays for the whole run.
    let weights = slimfit_memory::plan(&slimfit_memory::PlanRequest {
        trainable: vec![false; request.trainable.len()],
        ..request.clone()
    })
    .map_err(invalid)?
    .categories
    .parameters;
    // A resumed run keeps the overhead it was fitted with: the same budget, the same k.
    let runtime_overhead = saved.map_or(Bytes(live_with_model.0.saturating_sub(weights.0)), |s| {
        s.runtime_overhead
    });
    request.runtime_overhead = runtime_overhead;
    let planned = planned_peaks(&request).map_err(invalid)?;
    let budget = config
        .memory_budget
        .resolve(planned)
        .ok_or_else(|| TrainError::Invalid("budget mode without a budget".into()))?;
    let fit = slimfit_memory::fit_budget(&request, budget).map_err(invalid)?;
    if fit.trainable_units == 0 {
        return Err(TrainError::Invalid(format!(
            "--memory-budget {budget} holds a step only with every unit frozen (predicted {}); \
             nothing would train",
            fit.worst_case.total_peak_bytes
        )));
    }
    Ok((
        BudgetReport {
            budget,
            origin: BudgetOrigin {
                rule: config.memory_budget,
                planned,
                budget,
            },
            trainable_units: fit.trainable_units,
            freeze_rate: 1.0 - fit.trainable_units as f64 / fit.worst_case.total_units as f64,
            predicted_worst_case_peak: fit.worst_case.total_peak_bytes,
            runtime_overhead,
            shed_unit_steps: 0,
            refilled_unit_steps: 0,
            predicted_step_peaks: Vec::new(),
            largest_underestimate: Bytes(0),
        },
        request,
    ))
}

/// What budget mode carries from step to step, for a resumable checkpoint: the overhead
/// it was fitted with and the running counts and corrections of its report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct BudgetProgress {
    runtime_overhead: Bytes,
    shed_unit_steps: usize,
    refilled_unit_steps: usize,
    predicted_step_peaks: Vec<Bytes>,
    largest_underestimate: Bytes,
}

impl BudgetState {
    /// The state a resumable checkpoint keeps.
    pub(super) fn progress(&self) -> BudgetProgress {
        let r = &self.report;
        BudgetProgress {
            runtime_overhead: r.runtime_overhead,
            shed_unit_steps: r.shed_unit_steps,
            refilled_unit_steps: r.refilled_unit_steps,
            predicted_step_peaks: r.predicted_step_peaks.clone(),
            largest_underestimate: r.largest_underestimate,
        }
    }

    fn continue_from(&mut self, saved: &BudgetProgress) {
        let r = &mut self.report;
        r.shed_unit_steps = saved.shed_unit_steps;
        r.refilled_unit_steps = saved.refilled_unit_steps;
        r.predicted_step_peaks = saved.predicted_step_peaks.clone();
        r.largest_underestimate = saved.largest_underestimate;
    }
}

/// Budget mode's state during a run: what was fitted, and the request that checks each
/// step's actual trainable set.
pub(super) struct BudgetState {
    pub(super) report: BudgetReport,
    request: slimfit_memory::PlanRequest,
    /// Candidates the refill may add (ILS only: the other policies' sets are not rankings).
    refill: Option<Vec<bool>>,
}

/// The share of the budget a refill leaves free on top of the learned correction
/// ([`BudgetReport::largest_underestimate`]): the accountant's plans were within 1.3 % of
/// measured steps (docs/MEMORY.md), and a refilled set sits right at its prediction.
const REFILL_MARGIN: f64 = 0.01;

/// The share a refill leaves free before any step was measured (or where nothing is
/// measured): a step measured up to 2.6 % above its plan (a 6 MiB forward-pass constant the
/// accountant does not model, on a 240 MiB step).
const UNMEASURED_REFILL_MARGIN: f64 = 0.03;

/// The freezing rate over the candidates: `rate` as given, or in budget mode the rate that
/// trains as many units as the accountant fits in the budget (`shape` is built only then).
/// A resumed run passes the `saved` progress of its checkpoint and continues it.
pub(super) fn budget_setting(
    config: &TrainConfig,
    shape: impl FnOnce() -> slimfit_memory::EncoderShape,
    seq: usize,
    live_with_model: Bytes,
    candidates: &[bool],
    rate: FreezeRate,
    saved: Option<&BudgetProgress>,
) -> Result<(FreezeRate, Option<BudgetState>), TrainError> {
    if !config.memory_budget.is_on() {
        return Ok((rate, None));
    }
    let (report, request) = fit_budget(config, shape(), seq, live_with_model, saved)?;
    let budget = report.budget;
    tracing::info!("{}", report.origin);
    // k trainable of t units; units outside the candidates always train.
    let t = candidates.len();
    let fixed = candidates.iter().filter(|c| !**c).count();
    let n = t - fixed;
    let k = report.trainable_units.saturating_sub(fixed).min(n);
    let rate = FreezeRate::new((n - k) as f64 / n as f64).map_err(|_| {
        TrainError::Invalid(format!(
            "--memory-budget {budget} leaves no unit trainable: the predicted peak with one \
             trainable unit is above it"
        ))
    })?;
    tracing::info!(
        "memory budget {budget}: {} of {t} units train per step (predicted worst-case peak {})",
        report.trainable_units,
        report.predicted_worst_case_peak
    );
    let refill = (config.policy == PolicyKind::Ils).then(|| candidates.to_vec());
    let mut state = BudgetState {
        report,
        request,
        refill,
    };
    if let Some(saved) = saved {
        state.continue_from(saved);
    }
    Ok((rate, Some(state)))
}

/// Budget mode, every step: freezes the costliest of this step's trainable units while the
/// predicted peak of the actual set is above the budget, then (ILS, once `scores` are given)
/// refills the room left with the frozen candidates of highest score that fit — skipping
/// those that do not, such as an embedding table whose dense gradient never fits. Both
/// counts go to the report.
pub(super) fn fit_step(
    budget: &mut Option<BudgetState>,
    trainable: &mut [bool],
    context: StepContext<'_>,
) -> Result<(), TrainError> {
    let Some(state) = budget.as_mut() else {
        return Ok(());
    };
    let invalid =
        |e: slimfit_memory::PlanError| TrainError::Invalid(format!("--memory-budget: {e}"));
    let has_measurement = context.last_peak.is_some();
    if let (Some(measured), Some(predicted)) =
        (context.last_peak, state.report.predicted_step_peaks.last())
    {
        let over = Bytes(measured.0.saturating_sub(predicted.0));
        state.report.largest_underestimate = state.report.largest_underestimate.max(over);
    }
    state.request.trainable = trainable.to_vec();
    if let Some(tokens) = context.tokens {
        // k was fitted at the longest training sequence; this step's batch may be shorter.
        state.request.seq = tokens;
    }
    let shed =
        slimfit_memory::shed_to_budget(&mut state.request, state.report.budget).map_err(invalid)?;
    state.report.shed_unit_steps += shed.len();
    if let (Some(candidates), Some(scores)) = (&state.refill, context.scores) {
        // The reverse of ILS's freezing order: the unit it would freeze last comes first.
        let mut order = slimfit_scheduler::freezing_order(candidates, scores);
        order.reverse();
        let budget = state.report.budget.0;
        let slack = if has_measurement {
            (budget as f64 * REFILL_MARGIN) as u64 + state.report.largest_underestimate.0
        } else {
            (budget as f64 * UNMEASURED_REFILL_MARGIN) as u64
        };
        let room = Bytes(budget.saturating_sub(slack));
        let added =
            slimfit_memory::fill_to_budget(&mut state.request, room, &order).map_err(invalid)?;
        state.report.refilled_unit_steps += added.len();
    }
    trainable.copy_from_slice(&state.request.trainable);
    let predicted = slimfit_memory::plan(&state.request).map_err(invalid)?;
    state
        .report
        .predicted_step_peaks
        .push(predicted.total_peak_bytes);
    Ok(())
}
