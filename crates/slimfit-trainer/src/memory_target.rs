//! Budget mode's memory budget: none, one given in bytes, or the one-run default's rule.
//!
//! `train` with no `--policy`, `--freeze-rate` or `--memory-budget` does not freeze at a
//! fixed rate: before the first step it plans, with the accountant, steps at the data's
//! widest batch and trains in budget mode under the smaller of
//! - what SlimFit needs to train every unit but the vocabulary table (the one unit whose
//!   dense gradient outweighs any layer's) with the run's compressed activations and the
//!   Adam moments of frozen units dropped — more buys nothing but that table; and
//! - [`DEFAULT_CAP`] × full fine-tuning's planned peak (every unit, exact activations, Adam
//!   state for all) — the saving a user is promised even where weights, not activations,
//!   dominate (short sequences, vision models with few tokens).
//!
//! Where activations dominate the first bound is the lower and nearly every unit trains;
//! where weights dominate the cap binds and ILS chooses which units fit. Where the process's
//! fixed memory (runtime, data) dominates, half of full fine-tuning may not even hold the
//! frozen model: the target is then never below the all-frozen plan plus
//! [`MIN_TRAINABLE_SHARE`] of what training every unit adds to it. How the rule was
//! chosen: docs/RESULTS.md, "The one-run default".

use std::fmt;

use serde::{Serialize, Serializer};
use slimfit_memory::{
    ActivationStorage, Bytes, OptimizerState, PlanError, PlanRequest, UnitRole, plan,
};

/// The one-run default's cap: this share of full fine-tuning's planned peak.
pub const DEFAULT_CAP: f64 = 0.5;

/// The least the one-run default spends above the all-frozen plan: this share of what
/// training every unit (but the vocabulary table) adds to it.
pub const MIN_TRAINABLE_SHARE: f64 = 0.25;

/// How much memory budget mode may use.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum MemoryBudget {
    /// No budget: the freezing rate decides how many units train.
    #[default]
    Off,
    /// A budget in bytes (`--memory-budget`, `--memory-budget-of`).
    Bytes(Bytes),
    /// The one-run default: the smaller of SlimFit's plan with every unit but the
    /// vocabulary table trainable and `cap` (in (0, 1]) × full fine-tuning's plan.
    Auto {
        /// The share of full fine-tuning's planned peak never exceeded.
        cap: f64,
    },
}

impl MemoryBudget {
    /// The one-run default, capped at [`DEFAULT_CAP`].
    pub fn one_run_default() -> Self {
        Self::Auto { cap: DEFAULT_CAP }
    }

    /// Whether budget mode is on.
    pub fn is_on(self) -> bool {
        self != Self::Off
    }

    /// Checks the cap's range.
    pub fn validate(self) -> Result<(), String> {
        match self {
            Self::Auto { cap } if !(cap > 0.0 && cap <= 1.0) => {
                Err(format!("memory target cap {cap}: it must lie in (0, 1]"))
            }
            _ => Ok(()),
        }
    }

    /// The budget in bytes, given the planned peaks; `None` when off. A capped share is
    /// rounded down to whole bytes.
    pub fn resolve(self, plans: PlannedPeaks) -> Option<Bytes> {
        match self {
            Self::Off => None,
            Self::Bytes(b) => Some(b),
            Self::Auto { cap } => Some(plans.slimfit_all.min(plans.cap(cap)).max(plans.least())),
        }
    }
}

/// In reports: `null` (off), a number of bytes (given), or `{"cap_of_full": c}`.
impl Serialize for MemoryBudget {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Auto {
            cap_of_full: f64,
        }
        match *self {
            Self::Off => serializer.serialize_none(),
            Self::Bytes(b) => b.serialize(serializer),
            Self::Auto { cap } => Auto { cap_of_full: cap }.serialize(serializer),
        }
    }
}

/// The accountant's plans of a run's step at its widest batch, with the runtime overhead
/// measured at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlannedPeaks {
    /// Every unit frozen, the run's activation storage: what no choice of units goes below.
    pub frozen: Bytes,
    /// The run's storage and moments policy with every unit trainable but the vocabulary
    /// table (where the model has one).
    pub slimfit_all: Bytes,
    /// Full fine-tuning: every unit trains, exact activations, Adam state kept.
    pub full: Bytes,
    /// Whether the model has a vocabulary table that `slimfit_all` leaves frozen.
    pub has_vocabulary_table: bool,
}

impl PlannedPeaks {
    /// `cap` × the full fine-tuning plan, rounded down.
    pub fn cap(&self, cap: f64) -> Bytes {
        Bytes((cap * self.full.0 as f64) as u64)
    }

    /// The all-frozen plan plus [`MIN_TRAINABLE_SHARE`] of what training every unit (but the
    /// vocabulary table) adds to it: the least the one-run default spends.
    pub fn least(&self) -> Bytes {
        let added = self.slimfit_all.0.saturating_sub(self.frozen.0);
        Bytes(self.frozen.0 + (MIN_TRAINABLE_SHARE * added as f64) as u64)
    }
}

/// The plans [`MemoryBudget::resolve`] takes, from the run's own `request` (its storage,
/// moments policy, score copies, batch, widest sequence and runtime overhead; its trainable
/// set is ignored).
pub fn planned_peaks(request: &PlanRequest) -> Result<PlannedPeaks, PlanError> {
    let units = request.shape.units();
    let with = |trainable: Vec<bool>| PlanRequest {
        trainable,
        ..request.clone()
    };
    // The vocabulary table: an embedding table larger than every other unit (BERT's word
    // embeddings); its dense gradient and moments cost more than a whole layer.
    let largest_other = units
        .iter()
        .filter(|u| u.role != UnitRole::EmbeddingTable)
        .map(|u| u.numel)
        .max()
        .unwrap_or(0);
    let all_but_vocabulary: Vec<bool> = units
        .iter()
        .map(|u| !(u.role == UnitRole::EmbeddingTable && u.numel > largest_other))
        .collect();
    let has_vocabulary_table = all_but_vocabulary.contains(&false);
    Ok(PlannedPeaks {
        frozen: plan(&with(vec![false; units.len()]))?.total_peak_bytes,
        slimfit_all: plan(&with(all_but_vocabulary))?.total_peak_bytes,
        // Full fine-tuning as users run it by default: every activation kept.
        full: plan(&PlanRequest {
            storage: ActivationStorage::Exact,
            optimizer_state: OptimizerState::Keep,
            score_snapshots: false,
            recompute_layers: false,
            ..with(vec![true; units.len()])
        })?
        .total_peak_bytes,
        has_vocabulary_table,
    })
}

/// Where a run's budget came from, for the start-up line and the report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BudgetOrigin {
    /// The rule as configured.
    pub rule: MemoryBudget,
    /// The plans it was resolved against.
    pub planned: PlannedPeaks,
    /// The resolved budget.
    pub budget: Bytes,
}

impl BudgetOrigin {
    /// The budget over full fine-tuning's planned peak.
    pub fn share_of_full_peak(&self) -> f64 {
        self.budget.as_f64() / self.planned.full.as_f64().max(1.0)
    }
}

impl BudgetOrigin {
    fn but_table(&self) -> &'static str {
        if self.planned.has_vocabulary_table {
            " but the vocabulary table"
        } else {
            ""
        }
    }
}

impl fmt::Display for BudgetOrigin {
    /// `memory target 331.11 MiB = 0.50 × full fine-tuning's planned 662.22 MiB (the cap;
    /// training every unit but the vocabulary table would need 381.00 MiB) …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ratio = self.share_of_full_peak();
        let (full, all) = (self.planned.full, self.planned.slimfit_all);
        match self.rule {
            MemoryBudget::Auto { cap } => {
                write!(
                    f,
                    "memory target {} = {ratio:.2} × full fine-tuning's planned {full} (",
                    self.budget
                )?;
                let capped = self.planned.cap(cap);
                if self.budget > all.min(capped) {
                    write!(
                        f,
                        "all frozen plus {MIN_TRAINABLE_SHARE} of what training every unit{} \
                         adds ({all}): the cap of {cap:.2} × full fine-tuning, {capped}, is below \
                         it",
                        self.but_table()
                    )?;
                } else if all <= capped {
                    write!(
                        f,
                        "what SlimFit needs to train every unit{}",
                        self.but_table()
                    )?;
                } else {
                    write!(
                        f,
                        "the cap of {cap:.2} × full fine-tuning; training every unit{} would need \
                         {all}",
                        self.but_table()
                    )?;
                }
                write!(
                    f,
                    "; all frozen {}): the one-run default — --memory-budget, --freeze-rate or \
                     --policy choose otherwise",
                    self.planned.frozen
                )
            }
            _ => write!(
                f,
                "memory budget {} (given) = {ratio:.2} × full fine-tuning's planned {full}",
                self.budget
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn plans(slimfit_all: u64) -> PlannedPeaks {
        PlannedPeaks {
            frozen: Bytes(100 * MIB),
            slimfit_all: Bytes(slimfit_all * MIB),
            full: Bytes(600 * MIB),
            has_vocabulary_table: true,
        }
    }

    #[test]
    fn the_default_takes_what_training_every_unit_needs_up_to_half_of_full_fine_tuning() {
        let default = MemoryBudget::one_run_default();
        // Activations dominate: SlimFit's everything-but-the-table plan is the lower.
        assert_eq!(default.resolve(plans(250)), Some(Bytes(250 * MIB)));
        // Weights dominate: the cap binds.
        assert_eq!(default.resolve(plans(400)), Some(Bytes(300 * MIB)));
        assert_eq!(MemoryBudget::Off.resolve(plans(250)), None);
        assert_eq!(
            MemoryBudget::Bytes(Bytes(42)).resolve(plans(250)),
            Some(Bytes(42))
        );
        let line = |slimfit_all| {
            let planned = plans(slimfit_all);
            BudgetOrigin {
                rule: default,
                planned,
                budget: default.resolve(planned).unwrap(),
            }
            .to_string()
        };
        let capped = line(400);
        assert!(
            capped.starts_with(
                "memory target 300.00 MiB = 0.50 × full fine-tuning's planned 600.00 MiB (the cap"
            ),
            "{capped}"
        );
        assert!(capped.contains("would need 400.00 MiB"), "{capped}");
        let all = line(250);
        assert!(
            all.contains("0.42 ×") && all.contains("every unit but"),
            "{all}"
        );
    }

    #[test]
    fn where_fixed_memory_dominates_the_default_still_leaves_units_to_train() {
        // Half of full fine-tuning (300 MiB) is below the frozen model (320 MiB).
        let planned = PlannedPeaks {
            frozen: Bytes(320 * MIB),
            slimfit_all: Bytes(480 * MIB),
            full: Bytes(600 * MIB),
            has_vocabulary_table: false,
        };
        let budget = MemoryBudget::one_run_default().resolve(planned).unwrap();
        assert_eq!(budget, Bytes(360 * MIB));
        let line = BudgetOrigin {
            rule: MemoryBudget::one_run_default(),
            planned,
            budget,
        }
        .to_string();
        assert!(line.contains("all frozen plus 0.25"), "{line}");
    }

    #[test]
    fn a_cap_outside_zero_to_one_is_refused() {
        for cap in [0.0, 1.5, f64::NAN] {
            assert!(MemoryBudget::Auto { cap }.validate().is_err(), "{cap}");
        }
        assert!(MemoryBudget::one_run_default().validate().is_ok());
    }

    #[test]
    fn reports_keep_the_old_shapes_for_off_and_bytes() {
        let json = |b: MemoryBudget| serde_json::to_string(&b).unwrap();
        assert_eq!(json(MemoryBudget::Off), "null");
        assert_eq!(json(MemoryBudget::Bytes(Bytes(7))), "7");
        assert_eq!(
            json(MemoryBudget::one_run_default()),
            r#"{"cap_of_full":0.5}"#
        );
    }
}
