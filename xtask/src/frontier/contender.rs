//! The methods a user could pick instead of SlimFit, each with the knobs it may turn to fit
//! a memory budget, in the order it should try them (the cheapest in time first).

use serde::{Deserialize, Serialize};
use slimfit_data::GlueTask;

/// A method of the frontier.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Contender {
    /// SlimFit: ILS (our variant, scaled storage) in budget mode under the budget, Adam
    /// moments of frozen units dropped.
    Slimfit,
    /// Full fine-tuning (with activation checkpointing and gradient accumulation where the
    /// budget needs them). At 1× it is the reference run every budget derives from.
    Full,
    /// LoRA at PEFT's defaults for BERT (query/value, r 8, α 8, no dropout), head trained.
    Lora,
    /// LISA: embeddings and head always, γ encoder layers drawn every K = 20 steps.
    Lisa,
    /// The head alone (a linear probe on the frozen encoder).
    Head,
}

impl Contender {
    /// Every contender, in table order.
    pub const ALL: [Contender; 5] = [
        Self::Slimfit,
        Self::Full,
        Self::Lora,
        Self::Lisa,
        Self::Head,
    ];

    /// File-name and JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Self::Slimfit => "slimfit",
            Self::Full => "full",
            Self::Lora => "lora",
            Self::Lisa => "lisa",
            Self::Head => "head",
        }
    }

    /// Row title.
    pub fn label(self) -> &'static str {
        match self {
            Self::Slimfit => "SlimFit",
            Self::Full => "full FT",
            Self::Lora => "LoRA (q/v, r 8)",
            Self::Lisa => "LISA",
            Self::Head => "head only",
        }
    }

    /// Its learning rate, where it is not the task's default (full fine-tuning's and
    /// SlimFit's): the best of a small grid on CoLA seed 42 (docs/RESULTS.md, "The
    /// frontier": LoRA 5e-4 / 1e-3, LISA 8e-5 / 2e-4, head 8e-5 / 1e-3 / 1e-2 — all three
    /// the same there). A per-task grid is not run yet.
    pub fn lr(self, _task: GlueTask) -> Option<f64> {
        match self {
            Self::Slimfit | Self::Full => None,
            Self::Lora => Some(1e-3),
            Self::Lisa => Some(2e-4),
            Self::Head => Some(1e-3),
        }
    }

    /// The `train` flags of the method itself (besides data, seed, knobs and budget).
    pub fn flags(self) -> Vec<String> {
        let policy = match self {
            // Budget mode with a given budget keeps the moments unless told otherwise.
            Self::Slimfit => return strings(&["--optimizer-state", "drop"]),
            Self::Full => "full",
            Self::Lora => "lora",
            Self::Lisa => "lisa",
            Self::Head => "head",
        };
        strings(&["--policy", policy])
    }

    /// The configurations it may run in, cheapest in time first: as published, then with
    /// activation checkpointing, then micro-batches of half, a quarter, an eighth of the
    /// batch (the effective batch stays); LISA first lowers γ from 2 to 1 before
    /// accumulating. Head-only has nothing to recompute or split that would matter.
    pub fn ladder(self) -> Vec<Knobs> {
        let knobs = |checkpointing, grad_accum, lisa_layers| Knobs {
            checkpointing,
            grad_accum,
            lisa_layers,
        };
        let split = |gamma: Option<usize>| {
            [1, 2, 4, 8]
                .into_iter()
                .map(move |accum| knobs(accum > 1 || gamma.is_some(), accum, gamma))
        };
        match self {
            Self::Head => vec![knobs(false, 1, None)],
            Self::Lisa => {
                let mut ladder = vec![knobs(false, 1, Some(2)), knobs(true, 1, Some(2))];
                ladder.push(knobs(false, 1, Some(1)));
                ladder.extend(split(Some(1)));
                ladder.dedup();
                ladder
            }
            _ => {
                let mut ladder = vec![knobs(false, 1, None)];
                ladder.push(knobs(true, 1, None));
                ladder.extend(split(None).skip(1));
                ladder
            }
        }
    }
}

/// What a method turns to fit a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knobs {
    /// `--activation-checkpointing`.
    pub checkpointing: bool,
    /// `--grad-accum` (1: none).
    pub grad_accum: usize,
    /// LISA's γ (`--lisa-layers`).
    pub lisa_layers: Option<usize>,
}

impl Knobs {
    /// As `train` flags, for a task whose effective batch is `batch`: accumulating N
    /// micro-batches of `batch / N` (`None` where N does not divide it).
    pub fn flags(&self, batch: usize) -> Option<Vec<String>> {
        if !batch.is_multiple_of(self.grad_accum) {
            return None;
        }
        let mut flags = Vec::new();
        if self.checkpointing {
            flags.push("--activation-checkpointing".to_string());
        }
        if self.grad_accum > 1 {
            let micro = (batch / self.grad_accum).to_string();
            flags.extend(strings(&[
                "--batch",
                &micro,
                "--grad-accum",
                &self.grad_accum.to_string(),
            ]));
        }
        if let Some(gamma) = self.lisa_layers {
            flags.extend(strings(&["--lisa-layers", &gamma.to_string()]));
        }
        Some(flags)
    }

    /// Short text for tables: `ckpt`, `accum 4`, `γ 1`, or `as published`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(gamma) = self.lisa_layers {
            parts.push(format!("γ {gamma}"));
        }
        if self.checkpointing {
            parts.push("ckpt".to_string());
        }
        if self.grad_accum > 1 {
            parts.push(format!("accum {}", self.grad_accum));
        }
        if parts.is_empty() {
            "as published".to_string()
        } else {
            parts.join(", ")
        }
    }
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}
