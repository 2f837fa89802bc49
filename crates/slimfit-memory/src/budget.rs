//! Budget mode: the most trainable units whose step fits a byte budget.

use serde::Serialize;

use crate::Bytes;
use crate::activations::{Dims, saved};
use crate::plan::{Plan, PlanError, PlanRequest, plan};
use crate::shape::UnitRole;
use crate::storage::OptimizerState;

/// The outcome of [`fit_budget`].
#[derive(Debug, Clone, Serialize)]
pub struct BudgetFit {
    /// The budget.
    pub budget: Bytes,
    /// Units that may train per step.
    pub trainable_units: usize,
    /// The plan of the costliest choice of that many units (embedding tables aside).
    pub worst_case: Plan,
}

/// What training each unit alone adds to a step, in bytes: gradient (twice under gradient
/// accumulation: the running sum and the micro-batch's), Adam moments under `drop`, score
/// snapshot, the activations only it saves (Q/K/V share one input, FFN2's
/// input is int8 under compression), and for an embedding table its dense gradient buffer.
pub fn unit_costs(request: &PlanRequest) -> Vec<u64> {
    let units = request.shape.units();
    let t = units.len();
    let d = Dims::new(&request.shape, request.batch, request.seq);
    (0..t)
        .map(|i| {
            let mut alone = vec![false; t];
            alone[i] = true;
            let activations = saved(
                &request.shape,
                &units,
                &d,
                request.storage,
                request.layer_norm_keep,
                &alone,
            )
            .per_unit[i];
            let numel = units[i].numel as u64;
            let moments = match request.optimizer_state {
                OptimizerState::Drop => 8 * numel,
                OptimizerState::Keep => 0,
            };
            let snapshot = if request.score_snapshots {
                4 * numel
            } else {
                0
            };
            let dense = if units[i].role == UnitRole::EmbeddingTable {
                4 * numel
            } else {
                0
            };
            let accumulated = if request.accumulated_gradients {
                4 * numel
            } else {
                0
            };
            4 * numel + moments + snapshot + activations + dense + accumulated
        })
        .collect()
}

/// Finds the largest `k` such that any `k` trainable units other than embedding tables fit
/// `budget`: units are ranked by [`unit_costs`] and the plan of the `k` costliest is
/// checked.
///
/// Embedding tables are ranked last: a word-embedding table's dense gradient alone can
/// cost more than the rest of a step, so a worst case that includes it would leave almost
/// nothing trainable. A trainer in budget mode therefore also checks each step's actual set
/// with [`plan`] and sheds its costliest units while it does not fit ([`shed_to_budget`]).
/// `request.trainable` is ignored. Fails with [`PlanError::BudgetTooSmall`] (naming the
/// minimum) when even an all-frozen step does not fit.
pub fn fit_budget(request: &PlanRequest, budget: Bytes) -> Result<BudgetFit, PlanError> {
    let units = request.shape.units();
    let t = units.len();
    let costs = unit_costs(request);
    let mut order: Vec<usize> = (0..t).collect();
    order.sort_by_key(|&i| {
        let table = units[i].role == UnitRole::EmbeddingTable;
        (table, std::cmp::Reverse(costs[i]))
    });
    let plan_k = |k: usize| -> Result<Plan, PlanError> {
        let mut trainable = vec![false; t];
        for &i in &order[..k] {
            trainable[i] = true;
        }
        plan(&PlanRequest {
            trainable,
            ..request.clone()
        })
    };
    let frozen = plan_k(0)?;
    if frozen.total_peak_bytes > budget {
        return Err(PlanError::BudgetTooSmall {
            budget,
            minimum: frozen.total_peak_bytes,
        });
    }
    // The ranking makes the peak grow with k; search from the top for the first fit.
    for k in (1..=t).rev() {
        let worst_case = plan_k(k)?;
        if worst_case.total_peak_bytes <= budget {
            return Ok(BudgetFit {
                budget,
                trainable_units: k,
                worst_case,
            });
        }
    }
    Ok(BudgetFit {
        budget,
        trainable_units: 0,
        worst_case: frozen,
    })
}

/// Freezes units of `request.trainable` — costliest first — until the predicted peak fits
/// `budget`. Returns the units it froze.
pub fn shed_to_budget(request: &mut PlanRequest, budget: Bytes) -> Result<Vec<usize>, PlanError> {
    let costs = unit_costs(request);
    let mut shed = Vec::new();
    while plan(request)?.total_peak_bytes > budget {
        let costliest = (0..costs.len())
            .filter(|&i| request.trainable[i])
            .max_by_key(|&i| costs[i]);
        match costliest {
            Some(i) => {
                request.trainable[i] = false;
                shed.push(i);
            }
            None => break,
        }
    }
    Ok(shed)
}

/// Makes frozen units of `request.trainable` trainable, trying them in `order` (most wanted
/// first), while the predicted peak stays within `budget`: a unit that does not fit is
/// skipped and the next one is tried, so cheap units fill the room a costly one leaves.
/// Returns the units it added, in the order added.
///
/// This is the per-step complement of [`fit_budget`]: the worst-case `k` leaves room
/// whenever a step's set is cheaper than the `k` costliest units.
pub fn fill_to_budget(
    request: &mut PlanRequest,
    budget: Bytes,
    order: &[usize],
) -> Result<Vec<usize>, PlanError> {
    let mut added = Vec::new();
    for &i in order {
        if request.trainable[i] {
            continue;
        }
        request.trainable[i] = true;
        if plan(request)?.total_peak_bytes <= budget {
            added.push(i);
        } else {
            request.trainable[i] = false;
        }
    }
    Ok(added)
}
