//! How the loop freezes and updates: the policy over the candidate units, the scores, and the
//! optimizer's settings and learning-rate schedule.

use slimfit_dynamics::{ScoreFormula, UnitScores};
#[cfg(doc)]
use slimfit_models::HasUnits;
use slimfit_models::{Unit, UnitKind};
use slimfit_scheduler::{
    Fixed, FreezePolicy, FreezeRate, Full, Ils, Lisa, RandomFreeze, StaticPrefix,
};

use super::TrainError;
use super::config::{LisaOptions, PolicyKind, TrainConfig};
use crate::measure::OptimizerStatePolicy;
use crate::task::Task;

/// How [`run_slimfit`] freezes, scores and updates.
pub struct Schedule {
    /// Picks the trainable units of each step from the scores.
    pub policy: Box<dyn FreezePolicy>,
    /// Training-dynamics scores, one per unit.
    pub scores: UnitScores,
    /// Epochs.
    pub epochs: usize,
    /// Peak learning rate (linear decay to 0 after `warmup`).
    pub lr: f64,
    /// Fraction of optimizer steps with linear warm-up.
    pub warmup: f64,
    /// Micro-batches per optimizer step ([`step_gradients`]); 1: none.
    pub grad_accum: usize,
    /// Decoupled weight decay of the units that decay ([`decays`]).
    pub weight_decay: f64,
    /// Adam state of frozen units.
    pub optimizer_state: OptimizerStatePolicy,
    /// Head warm-up: for this fraction of the optimizer steps only the head trains (a linear
    /// probe), then the policy takes over. 0: none.
    pub head_warmup: f64,
    /// Biases and LayerNorm β follow their unit ([`HasUnits::with_trainable_modules`]):
    /// the baselines that freeze whole modules (LISA, head-only, LoRA). SlimFit and its
    /// ablations train them at every step.
    pub whole_modules: bool,
}

/// Whether AdamW's weight decay applies to a unit: every weight but LayerNorm γ and
/// DINOv2's layer-scale λ (biases and LayerNorm β are not units and never decay).
pub fn decays(kind: UnitKind) -> bool {
    !matches!(kind, UnitKind::LayerNorm | UnitKind::LayerScale)
}

pub(super) fn learning_rate(step: usize, total: usize, peak: f64, warmup: f64) -> f64 {
    let warm = (warmup * total as f64).round() as usize;
    if step < warm {
        peak * (step + 1) as f64 / warm as f64
    } else {
        peak * (total.saturating_sub(step)) as f64 / (total - warm).max(1) as f64
    }
}

/// The units the freezing policy chooses from: all but the head where the task trains it
/// at every step ([`Task::head_always_trains`]).
pub(super) fn candidates(units: &[Unit], task: Task) -> Vec<bool> {
    units
        .iter()
        .map(|u| !(task.head_always_trains() && u.kind == UnitKind::Head))
        .collect()
}

/// The loop's schedule for `config`: its policy at `rate` over `candidates` of `units`,
/// fresh scores, and the optimizer settings.
pub(super) fn schedule_of(
    config: &TrainConfig,
    rate: FreezeRate,
    units: &[Unit],
    candidates: Vec<bool>,
    formula: ScoreFormula,
) -> Result<Schedule, TrainError> {
    Ok(Schedule {
        policy: make_policy(
            config.policy,
            config.lisa,
            config.seed,
            rate,
            units,
            candidates,
        )?,
        scores: UnitScores::new(units.len(), formula, 1e10, config.seed),
        epochs: config.epochs,
        lr: config.lr,
        warmup: config.warmup,
        grad_accum: config.grad_accum,
        weight_decay: 0.01,
        optimizer_state: config.optimizer_state,
        head_warmup: config.head_warmup,
        whole_modules: matches!(
            config.policy,
            PolicyKind::Lisa | PolicyKind::Head | PolicyKind::Lora
        ),
    })
}

/// The freezing policy of `config` over `candidates` of `units` (units outside them
/// always train; LISA draws layers, head-only trains the head).
pub(super) fn make_policy(
    kind: PolicyKind,
    lisa: Option<LisaOptions>,
    seed: u64,
    rate: FreezeRate,
    units: &[Unit],
    candidates: Vec<bool>,
) -> Result<Box<dyn FreezePolicy>, TrainError> {
    Ok(match kind {
        PolicyKind::Ils => Box::new(Ils::new(rate, candidates)),
        PolicyKind::Full => Box::new(Full),
        PolicyKind::StaticPrefix => Box::new(StaticPrefix::new(rate, candidates)),
        PolicyKind::Random => Box::new(RandomFreeze::new(rate, candidates, 1, seed)),
        PolicyKind::Lisa => {
            let lisa = lisa.unwrap_or_default();
            let layers = units.iter().map(|u| u.layer).collect();
            Box::new(
                Lisa::new(layers, lisa.layers, lisa.interval, seed)
                    .map_err(|e| TrainError::Invalid(format!("--policy lisa: {e}")))?,
            )
        }
        PolicyKind::Head => Box::new(Fixed::new(
            "head",
            units.iter().map(|u| u.kind == UnitKind::Head).collect(),
        )),
        // The base model's biases and LayerNorm β are frozen where the adapters are made
        // (`lora::attach`), as PEFT's `bias = "none"`.
        PolicyKind::Lora => Box::new(Fixed::new(
            "lora",
            units
                .iter()
                .map(|u| matches!(u.kind, UnitKind::Head | UnitKind::LoraA | UnitKind::LoraB))
                .collect(),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Budget mode plans score snapshots for ILS alone; the loop takes them for a policy
    /// that reads scores. The two must agree, or budget plans miss (or invent) the copies.
    #[test]
    fn budget_plans_snapshots_exactly_for_the_policies_whose_updates_are_scored() {
        let rate = FreezeRate::new(0.5).unwrap();
        let units: Vec<Unit> = (0..4)
            .map(|index| Unit {
                index,
                name: format!("u{index}"),
                shape: vec![2, 2],
                kind: if index == 3 {
                    UnitKind::Head
                } else {
                    UnitKind::Query
                },
                layer: (index < 3).then_some(index),
                param_id: burn::module::ParamId::new(),
                bias_id: None,
            })
            .collect();
        for kind in [
            PolicyKind::Ils,
            PolicyKind::Full,
            PolicyKind::StaticPrefix,
            PolicyKind::Random,
            PolicyKind::Lisa,
            PolicyKind::Head,
            PolicyKind::Lora,
        ] {
            let policy = make_policy(kind, None, 0, rate, &units, vec![true; 4]).unwrap();
            assert_eq!(policy.reads_scores(), kind == PolicyKind::Ils, "{kind:?}");
        }
    }

    #[test]
    fn layer_norm_and_layer_scale_do_not_decay() {
        assert!(!decays(UnitKind::LayerNorm));
        assert!(!decays(UnitKind::LayerScale));
        for kind in [
            UnitKind::Embedding,
            UnitKind::PatchEmbedding,
            UnitKind::Query,
            UnitKind::Ffn2,
            UnitKind::Head,
        ] {
            assert!(decays(kind), "{kind:?}");
        }
    }

    #[test]
    fn learning_rate_warms_up_then_decays_linearly_to_zero() {
        assert_eq!(learning_rate(0, 10, 1.0, 0.0), 1.0);
        assert!((learning_rate(9, 10, 1.0, 0.0) - 0.1).abs() < 1e-12);
        assert!((learning_rate(0, 10, 1.0, 0.2) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(2, 10, 1.0, 0.2), 1.0);
    }
}
