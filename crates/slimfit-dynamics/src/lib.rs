//! # slimfit-dynamics
//!
//! Training-dynamics scores per unit (one weight tensor): how much a tensor moved in an
//! optimizer step, which SlimFit's scheduler uses to decide what to freeze next
//! (SLIMFIT.md §2). Backend-free: it works on plain `f32` slices, so any framework can feed
//! it the values of the units that trained this step — never a snapshot of the whole model.
//!
//! ```
//! use slimfit_dynamics::{ScoreFormula, score};
//!
//! let before = [1.0, -2.0, 0.5];
//! let after = [1.1, -2.0, 0.45];
//! let s = score(&before, &after, ScoreFormula::Paper).unwrap();
//! assert!((s - (0.1 / 1.0 + 0.0 + 0.05 / 0.5) / 3.0).abs() < 1e-6);
//! ```

use std::fmt;
use std::str::FromStr;

/// Added to |W| in the paper formula's denominator, so that an exact zero weight does not
/// divide by zero.
pub const EPSILON: f64 = 1e-8;

/// How a unit's movement is turned into a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ScoreFormula {
    /// The reference's formula with a guard: `mean_i |ΔW_i| / (|W_prev,i| + ε)`. Entries near
    /// zero dominate it (a weight of 1e-7 that moves by 1e-5 counts 100×).
    Paper,
    /// The reference's formula exactly, `mean_i |ΔW_i| / |W_prev,i|`: an exact zero weight
    /// gives 0/0 = NaN (or x/0 = ∞), which the reference's sort places last — "largest
    /// change" — so such a unit trains every step. For parity runs only.
    PaperUnguarded,
    /// Our default: the relative L1 change of the tensor, `Σ|ΔW_i| / Σ|W_prev,i|` (ε-guarded).
    /// Zero or tiny entries cannot dominate it, and it measures what moved in proportion to
    /// what is there.
    #[default]
    RelativeL1,
}

impl ScoreFormula {
    /// Names as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Paper => "paper",
            Self::PaperUnguarded => "paper-unguarded",
            Self::RelativeL1 => "relative-l1",
        }
    }
}

impl fmt::Display for ScoreFormula {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ScoreFormula {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Paper, Self::PaperUnguarded, Self::RelativeL1]
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown score formula {s:?}: expected paper, paper-unguarded or relative-l1"
                )
            })
    }
}

/// Why a score could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoreError {
    /// The two snapshots differ in length.
    #[error("before has {before} values but after has {after}")]
    LengthMismatch {
        /// Length of the values before the step.
        before: usize,
        /// Length of the values after the step.
        after: usize,
    },
    /// There is nothing to score.
    #[error("a unit with no values has no score")]
    Empty,
}

/// The score of one unit from its values before and after a step.
///
/// Accumulates in `f64`, so millions of entries lose no precision.
pub fn score(before: &[f32], after: &[f32], formula: ScoreFormula) -> Result<f64, ScoreError> {
    if before.len() != after.len() {
        return Err(ScoreError::LengthMismatch {
            before: before.len(),
            after: after.len(),
        });
    }
    if before.is_empty() {
        return Err(ScoreError::Empty);
    }
    let pairs = before
        .iter()
        .zip(after)
        .map(|(&b, &a)| (f64::from(b), f64::from(a)));
    let n = before.len() as f64;
    Ok(match formula {
        ScoreFormula::Paper => {
            pairs
                .map(|(b, a)| (b - a).abs() / (b.abs() + EPSILON))
                .sum::<f64>()
                / n
        }
        ScoreFormula::PaperUnguarded => {
            pairs.map(|(b, a)| (b - a).abs() / b.abs()).sum::<f64>() / n
        }
        ScoreFormula::RelativeL1 => {
            let (moved, size) = pairs.fold((0.0, 0.0), |(m, s), (b, a)| {
                (m + (b - a).abs(), s + b.abs())
            });
            moved / (size + EPSILON)
        }
    })
}

/// Scores of every unit, with the reference's bookkeeping: units that did not train keep
/// their last (stale) score; the initial scores are huge random values so that every unit
/// trains once before real scores decide (round-robin warm-up).
#[derive(Debug, Clone)]
pub struct UnitScores {
    scores: Vec<f64>,
    formula: ScoreFormula,
}

impl UnitScores {
    /// `units` scores, initialised to `scale × U(0, 1)` from `seed` (the reference uses a
    /// scale of 1e10 for BERT).
    pub fn new(units: usize, formula: ScoreFormula, scale: f64, seed: u64) -> Self {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let scores = (0..units)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Strictly positive and above any real score.
                scale * (((state >> 11) as f64 + 1.0) / (1u64 << 53) as f64)
            })
            .collect();
        Self { scores, formula }
    }

    /// Records the step of unit `index` (its values before and after the optimizer step).
    pub fn record(
        &mut self,
        index: usize,
        before: &[f32],
        after: &[f32],
    ) -> Result<f64, ScoreError> {
        let s = score(before, after, self.formula)?;
        self.scores[index] = s;
        Ok(s)
    }

    /// The current score of every unit (stale for units that did not train).
    pub fn scores(&self) -> &[f64] {
        &self.scores
    }

    /// The formula in use.
    pub fn formula(&self) -> ScoreFormula {
        self.formula
    }

    /// Replaces every score (from a resumable checkpoint's [`UnitScores::scores`]); the
    /// count must match.
    pub fn restore(&mut self, scores: &[f64]) -> Result<(), ScoreError> {
        if scores.len() != self.scores.len() {
            return Err(ScoreError::LengthMismatch {
                before: self.scores.len(),
                after: scores.len(),
            });
        }
        self.scores.copy_from_slice(scores);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_formula_is_the_mean_relative_change() {
        let s = score(&[2.0, -4.0], &[2.2, -4.0], ScoreFormula::Paper).unwrap();
        assert!((s - 0.05).abs() < 1e-7);
    }

    #[test]
    fn zero_weights_are_guarded_except_in_unguarded_mode() {
        let before = [0.0, 1.0, 0.0];
        let after = [0.0, 1.1, 0.0];
        // 0/0 entries: the guarded formula counts them as no change.
        let guarded = score(&before, &after, ScoreFormula::Paper).unwrap();
        assert!((guarded - 0.1 / 3.0).abs() < 1e-6);
        assert!(
            score(&before, &after, ScoreFormula::PaperUnguarded)
                .unwrap()
                .is_nan()
        );
        let moved_zero = score(&[0.0, 1.0], &[0.01, 1.0], ScoreFormula::PaperUnguarded).unwrap();
        assert!(moved_zero.is_infinite());
        assert!(
            score(&before, &after, ScoreFormula::RelativeL1)
                .unwrap()
                .is_finite()
        );
    }

    #[test]
    fn tiny_entries_dominate_paper_but_not_relative_l1() {
        // One near-zero weight that moves a little, 999 normal weights that move a little.
        let mut before = vec![1.0f32; 1000];
        before[0] = 1e-7;
        let after: Vec<f32> = before.iter().map(|w| w + 1e-4).collect();
        let paper = score(&before, &after, ScoreFormula::Paper).unwrap();
        let relative = score(&before, &after, ScoreFormula::RelativeL1).unwrap();
        assert!(paper > 0.9, "paper {paper}"); // 1e-4 / 1e-7 / 1000 ≈ 1
        assert!((relative - 1e-4).abs() < 1e-6, "relative {relative}");
    }

    #[test]
    fn tiny_updates_are_resolved_in_f64() {
        let before = vec![1.0f32; 4_000_000];
        let mut after = before.clone();
        after[123] = 1.0 + f32::EPSILON;
        let s = score(&before, &after, ScoreFormula::RelativeL1).unwrap();
        assert!((s - f64::from(f32::EPSILON) / 4e6).abs() < 1e-15);
    }

    #[test]
    fn nan_weights_propagate_instead_of_hiding() {
        let s = score(&[f32::NAN, 1.0], &[1.0, 1.0], ScoreFormula::RelativeL1).unwrap();
        assert!(s.is_nan());
    }

    #[test]
    fn mismatched_or_empty_units_are_errors() {
        assert_eq!(
            score(&[1.0], &[1.0, 2.0], ScoreFormula::Paper),
            Err(ScoreError::LengthMismatch {
                before: 1,
                after: 2
            })
        );
        assert_eq!(score(&[], &[], ScoreFormula::Paper), Err(ScoreError::Empty));
    }

    #[test]
    fn initial_scores_are_huge_distinct_and_seeded() {
        let a = UnitScores::new(100, ScoreFormula::Paper, 1e10, 3);
        let b = UnitScores::new(100, ScoreFormula::Paper, 1e10, 3);
        assert_eq!(a.scores(), b.scores());
        assert!(a.scores().iter().all(|&s| s > 0.0 && s <= 1e10));
        let mut sorted = a.scores().to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        assert_eq!(sorted.len(), 100);
        assert_ne!(
            a.scores(),
            UnitScores::new(100, ScoreFormula::Paper, 1e10, 4).scores()
        );
    }

    #[test]
    fn recording_replaces_only_that_units_score() {
        let mut s = UnitScores::new(3, ScoreFormula::RelativeL1, 1e10, 0);
        let stale = s.scores().to_vec();
        s.record(1, &[1.0, 1.0], &[1.5, 1.0]).unwrap();
        assert_eq!(s.scores()[0], stale[0]);
        assert!((s.scores()[1] - 0.25).abs() < 1e-8);
        assert_eq!(s.scores()[2], stale[2]);
    }
}
