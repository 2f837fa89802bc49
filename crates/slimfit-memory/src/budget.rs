//! Budget mode: the most trainable units whose step fits a byte budget.

use serde::Serialize;

use crate::Bytes;
use crate::activations::{Dims, saved};
use crate::plan::{Plan, PlanError, PlanRequest, plan};
use crate::storage::OptimizerState;

/// The outcome of [`fit_budget`].
#[derive(Debug, Clone, Serialize)]
pub struct BudgetFit {
    /// The budget.
    pub budget: Bytes,
    /// Units that may train in every step.
    pub trainable_units: usize,
    /// The plan of the costliest choice of that many units (the guarantee).
    pub worst_case: Plan,
}

/// Finds the largest `k` such that *any* `k` trainable units fit `budget`: units are ranked
/// by what training them adds (gradient, moments under `drop`, the activations only they
/// save — Q/K/V share one input, FFN2's input is int8 under compression, a trainable
/// embedding table also builds its gradient densely) and the plan of the `k` costliest is
/// checked. The scheduler may then pick any `k` units per step. `request.trainable` is
/// ignored.
pub fn fit_budget(request: &PlanRequest, budget: Bytes) -> Result<BudgetFit, PlanError> {
    let units = request.shape.units();
    let t = units.len();
    let d = Dims::new(&request.shape, request.batch, request.seq);
    let cost = |i: usize| -> u64 {
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
        let moments = if request.optimizer_state == OptimizerState::Drop {
            8 * numel
        } else {
            0
        };
        let snapshot = if request.score_snapshots {
            4 * numel
        } else {
            0
        };
        4 * numel + moments + snapshot + activations
    };
    let mut order: Vec<usize> = (0..t).collect();
    let costs: Vec<u64> = (0..t).map(cost).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(costs[i]));

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
