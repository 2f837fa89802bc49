//! How each contender fits a budget: the accountant's plan of each configuration on its
//! ladder, calibrated to the measured peak of the reference full fine-tuning run.
//!
//! A plan predicts one step; a run's measured peak also holds what the process keeps besides
//! (runtime, tokenizer, the tokenized data). That difference is measured once per task and
//! seed, from the reference run: its measured whole-run peak less the plan of its own step.
//! Every other configuration of that task is predicted as its plan plus that overhead, and
//! never below the reference's setup peak (loading the checkpoint and the data, before the
//! first step: the floor of every run of that model and data).

use std::path::Path;

use anyhow::{Context, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};
use slimfit_memory::{Bytes, EncoderShape, PlanError};
use slimfit_trainer::accountant::{encoder_shape, plan_run};
use slimfit_trainer::run_config::TrainSettings;

use super::contender::{Contender, Knobs};

/// `train`'s flags, parsed as the binary parses them: the flags a cell runs with are the
/// flags it is planned with.
#[derive(Parser)]
#[command(no_binary_name = true)]
struct Flags {
    #[command(flatten)]
    settings: TrainSettings,
}

/// The shape and widest batch a task's runs are planned at.
pub struct Planner {
    /// The model as the accountant sees it.
    pub shape: EncoderShape,
    /// Tokens of the longest training sequence (the reference run's report).
    pub seq: usize,
    /// What a run holds besides its step: the reference's measured peak less its plan.
    pub overhead: Bytes,
    /// The reference's measured peak before its first step (zero where not recorded).
    pub floor: Bytes,
}

impl Planner {
    /// Calibrated on the reference run (`reference_flags`, full fine-tuning as published)
    /// whose measured whole-run peak was `measured` at `seq` tokens, `floor` before its
    /// first step.
    pub fn calibrate(
        model: &Path,
        num_labels: usize,
        reference_flags: &[String],
        seq: usize,
        (measured, floor): (Bytes, Bytes),
    ) -> Result<Self> {
        let config = slimfit_models::BertConfig::from_json_file(model.join("config.json"))
            .with_context(|| format!("reading {}", model.join("config.json").display()))?;
        let mut planner = Self {
            shape: encoder_shape(&config, num_labels),
            seq,
            overhead: Bytes::ZERO,
            floor: Bytes::ZERO,
        };
        let step = planner.plan(reference_flags)?;
        planner.overhead = Bytes(measured.0.saturating_sub(step.0.0));
        planner.floor = floor;
        Ok(planner)
    }

    /// The predicted whole-run peak of `train flags` (its step's plan, or the setup floor
    /// where that is higher) and the units it trains per step. In budget mode where no unit
    /// fits, the all-frozen step's peak and 0 units (such a run would train nothing).
    pub fn plan(&self, flags: &[String]) -> Result<(Bytes, usize)> {
        let parsed = Flags::try_parse_from(flags)
            .with_context(|| format!("parsing train flags {flags:?}"))?;
        let config = parsed
            .settings
            .resolve()
            .with_context(|| format!("resolving train flags {flags:?}"))?;
        match plan_run(&config, self.shape.clone(), self.seq, self.overhead) {
            // Budget mode that fits only the all-frozen step: nothing would train.
            Ok(plan) if plan.trainable_units == 0 && config.memory_budget.is_on() => {
                Ok((plan.total_peak_bytes.max(self.floor), 0))
            }
            Ok(plan) => Ok((plan.total_peak_bytes.max(self.floor), plan.trainable_units)),
            // Not even the all-frozen step fits: what that step needs.
            Err(PlanError::BudgetTooSmall { minimum, .. }) => Ok((minimum.max(self.floor), 0)),
            Err(e) => Err(e).with_context(|| format!("planning train flags {flags:?}")),
        }
    }
}

/// What a contender runs at a budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "fit")]
pub enum Choice {
    /// It fits with these knobs, at this predicted peak, training this many units per step.
    Fits {
        /// The knobs.
        knobs: Knobs,
        /// Predicted whole-run peak.
        predicted: Bytes,
        /// Units trained per step (the costliest step).
        trainable_units: usize,
    },
    /// Predicted to fit, but the trainer's own plan (with the overhead it measures at
    /// start) refused the budget: its message.
    Refused {
        /// The knobs it was started with.
        knobs: Knobs,
        /// The trainer's error.
        message: String,
    },
    /// No configuration of its ladder fits: the least any predicts.
    DoesNotFit {
        /// The lowest predicted peak on its ladder.
        least: Bytes,
        /// Its knobs.
        knobs: Knobs,
    },
}

/// The configuration `contender` runs in under `budget`: the first on its ladder predicted
/// to fit; for SlimFit, whose own knob is budget mode (it trains as many units per step as
/// fit), the configuration that trains the most units, the earliest among equals.
/// `plan(knobs)` predicts `(peak, units)`; `None` for knobs that do not apply (a
/// micro-batch that would not divide the batch).
pub fn choose(
    contender: Contender,
    budget: Bytes,
    mut plan: impl FnMut(Knobs) -> Result<Option<(Bytes, usize)>>,
) -> Result<Choice> {
    let mut least: Option<(Bytes, Knobs)> = None;
    let mut best: Option<Choice> = None;
    for knobs in contender.ladder() {
        let Some((predicted, units)) = plan(knobs)? else {
            continue;
        };
        if least.is_none_or(|(l, _)| predicted < l) {
            least = Some((predicted, knobs));
        }
        // A budget-mode run that could train no unit does not fit either.
        if predicted > budget || units == 0 {
            continue;
        }
        let choice = Choice::Fits {
            knobs,
            predicted,
            trainable_units: units,
        };
        if contender != Contender::Slimfit {
            return Ok(choice);
        }
        let better = match &best {
            Some(Choice::Fits {
                trainable_units, ..
            }) => units > *trainable_units,
            _ => true,
        };
        if better {
            best = Some(choice);
        }
    }
    Ok(best.unwrap_or_else(|| {
        let (least, knobs) = least.unwrap_or((Bytes(u64::MAX), contender.ladder()[0]));
        Choice::DoesNotFit { least, knobs }
    }))
}
