//! # slimfit-scheduler
//!
//! Freezing policies: given per-unit scores, which weight tensors train this step —
//! SlimFit's inter-layer scheduling (ILS, SLIMFIT.md §3) and the baselines it is compared
//! with. Pure logic over `f64` scores: no tensor library.
//!
//! ```
//! use slimfit_scheduler::{FreezePolicy, FreezeRate, Ils};
//!
//! let mut ils = Ils::new(FreezeRate::new(0.5).unwrap(), vec![true; 4]);
//! let trainable = ils.trainable(0, &[0.3, 0.1, 0.4, 0.2]);
//! // The two lowest scores (units 1 and 3) are frozen.
//! assert_eq!(trainable, vec![true, false, true, false]);
//! ```

use std::fmt;

use serde::Serialize;

mod fixed;
mod lisa;
mod rng;

pub use fixed::Fixed;
pub use lisa::{Lisa, LisaError};
use rng::{XorShift, drawn_state, restore_drawn};

/// A freezing rate `r ∈ [0, 1)`: the fraction of candidate units frozen each step.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct FreezeRate(f64);

/// An out-of-range freezing rate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("freezing rate must lie in [0, 1), got {0}")]
pub struct InvalidFreezeRate(pub f64);

impl FreezeRate {
    /// Validates `r ∈ [0, 1)` (1 would freeze everything: nothing would learn).
    pub fn new(r: f64) -> Result<Self, InvalidFreezeRate> {
        if (0.0..1.0).contains(&r) {
            Ok(Self(r))
        } else {
            Err(InvalidFreezeRate(r))
        }
    }

    /// The rate.
    pub fn get(self) -> f64 {
        self.0
    }

    /// `floor(r · t)`: how many of `t` candidates are frozen.
    pub fn frozen_of(self, t: usize) -> usize {
        // The small nudge keeps e.g. 0.9 · 10 = 8.999… from flooring to 8.
        ((self.0 * t as f64) + 1e-9).floor() as usize
    }
}

impl fmt::Display for FreezeRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A freezing policy: decides, before each step, which units train.
pub trait FreezePolicy {
    /// `trainable[i]` for each unit at optimizer step `step`, given the current scores (stale
    /// for units that did not train lately).
    fn trainable(&mut self, step: usize, scores: &[f64]) -> Vec<bool>;

    /// Short name for reports.
    fn name(&self) -> &'static str;

    /// Whether [`FreezePolicy::trainable`] reads the scores. A trainer need not score
    /// the updates of a policy that does not (SLIMFIT.md §2 costs a copy of each trainable
    /// unit per step).
    fn reads_scores(&self) -> bool {
        true
    }

    /// The policy's internal state (a random generator, say), for a resumable checkpoint:
    /// a policy restored from it ([`FreezePolicy::restore`]) makes the same choices from then
    /// on as the one it was taken from. Empty for a policy whose choices depend only on the
    /// step and the scores.
    fn state(&self) -> Vec<u64> {
        Vec::new()
    }

    /// Continues from a [`FreezePolicy::state`] of the same policy and candidates.
    fn restore(&mut self, state: &[u64]) -> Result<(), String> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the {} policy has no state, but {} values were given",
                self.name(),
                state.len()
            ))
        }
    }
}

/// Units that are not candidates always train; candidates are chosen by `pick`.
fn with_candidates(candidates: &[bool], frozen_candidates: &[usize]) -> Vec<bool> {
    let mut trainable = vec![true; candidates.len()];
    for &i in frozen_candidates {
        trainable[i] = false;
    }
    trainable
}

fn candidate_indices(candidates: &[bool]) -> Vec<usize> {
    candidates
        .iter()
        .enumerate()
        .filter_map(|(i, &c)| c.then_some(i))
        .collect()
}

/// The candidates in ILS's freezing order: lowest score first. Sorting follows the
/// reference (`torch.sort`): NaN counts as the largest score; ties break by unit index.
/// A budget-mode trainer refills in the reverse order (the unit ILS would freeze last
/// first).
pub fn freezing_order(candidates: &[bool], scores: &[f64]) -> Vec<usize> {
    assert_eq!(scores.len(), candidates.len(), "one score per unit");
    let mut order = candidate_indices(candidates);
    order.sort_by(|&a, &b| {
        let (x, y) = (scores[a], scores[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => a.cmp(&b),
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => x.total_cmp(&y).then(a.cmp(&b)),
        }
    });
    order
}

/// Inter-layer scheduling: freeze the `floor(r·t)` candidates with the lowest scores.
///
/// Sorting follows the reference (`torch.sort`): NaN counts as the largest score, so a unit
/// whose score is NaN is never frozen. Ties break by unit index, so a run is reproducible.
#[derive(Debug, Clone)]
pub struct Ils {
    rate: FreezeRate,
    candidates: Vec<bool>,
}

impl Ils {
    /// ILS over the units flagged in `candidates` (the rest always train).
    pub fn new(rate: FreezeRate, candidates: Vec<bool>) -> Self {
        Self { rate, candidates }
    }

    /// Number of candidates kept trainable each step (`k = t − floor(r·t)`).
    pub fn trainable_per_step(&self) -> usize {
        let t = self.candidates.iter().filter(|&&c| c).count();
        t - self.rate.frozen_of(t)
    }
}

impl FreezePolicy for Ils {
    fn trainable(&mut self, _step: usize, scores: &[f64]) -> Vec<bool> {
        assert_eq!(scores.len(), self.candidates.len(), "one score per unit");
        let order = freezing_order(&self.candidates, scores);
        let n_frozen = self.rate.frozen_of(order.len());
        with_candidates(&self.candidates, &order[..n_frozen])
    }

    fn name(&self) -> &'static str {
        "ils"
    }
}

/// Full fine-tuning: nothing frozen.
#[derive(Debug, Clone, Default)]
pub struct Full;

impl FreezePolicy for Full {
    fn trainable(&mut self, _step: usize, scores: &[f64]) -> Vec<bool> {
        vec![true; scores.len()]
    }

    fn name(&self) -> &'static str {
        "full"
    }

    fn reads_scores(&self) -> bool {
        false
    }
}

/// The lowest-index `floor(r·t)` candidates stay frozen for the whole run.
#[derive(Debug, Clone)]
pub struct StaticPrefix {
    rate: FreezeRate,
    candidates: Vec<bool>,
}

impl StaticPrefix {
    /// Freezes the first `floor(r·t)` of the `candidates`.
    pub fn new(rate: FreezeRate, candidates: Vec<bool>) -> Self {
        Self { rate, candidates }
    }
}

impl FreezePolicy for StaticPrefix {
    fn trainable(&mut self, _step: usize, _scores: &[f64]) -> Vec<bool> {
        let order = candidate_indices(&self.candidates);
        let n = self.rate.frozen_of(order.len());
        with_candidates(&self.candidates, &order[..n])
    }

    fn name(&self) -> &'static str {
        "static-prefix"
    }

    fn reads_scores(&self) -> bool {
        false
    }
}

/// A random `floor(r·t)` of the candidates, redrawn every `interval` steps (LISA-like).
#[derive(Debug, Clone)]
pub struct RandomFreeze {
    rate: FreezeRate,
    candidates: Vec<bool>,
    interval: usize,
    rng: XorShift,
    current: Option<Vec<bool>>,
}

impl RandomFreeze {
    /// Seeded random freezing; `interval` ≥ 1 steps between redraws.
    pub fn new(rate: FreezeRate, candidates: Vec<bool>, interval: usize, seed: u64) -> Self {
        Self {
            rate,
            candidates,
            interval: interval.max(1),
            rng: XorShift::new(seed),
            current: None,
        }
    }
}

impl FreezePolicy for RandomFreeze {
    fn trainable(&mut self, step: usize, _scores: &[f64]) -> Vec<bool> {
        if self.current.is_none() || step.is_multiple_of(self.interval) {
            let mut order = candidate_indices(&self.candidates);
            self.rng.shuffle(&mut order);
            let n = self.rate.frozen_of(order.len());
            self.current = Some(with_candidates(&self.candidates, &order[..n]));
        }
        self.current.clone().expect("drawn above")
    }

    fn name(&self) -> &'static str {
        "random"
    }

    fn reads_scores(&self) -> bool {
        false
    }

    /// The generator's state, then the current set (one value per unit, 1: trainable)
    /// when one was drawn.
    fn state(&self) -> Vec<u64> {
        drawn_state(&self.rng, &self.current)
    }

    fn restore(&mut self, state: &[u64]) -> Result<(), String> {
        (self.rng, self.current) = restore_drawn(state, self.candidates.len(), "random")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimfit_dynamics::{ScoreFormula, UnitScores};

    #[test]
    fn a_restored_random_policy_continues_the_same_sequence() {
        let rate = FreezeRate::new(0.5).unwrap();
        let mut original = RandomFreeze::new(rate, vec![true; 12], 3, 7);
        let scores = vec![0.0; 12];
        for step in 0..5 {
            original.trainable(step, &scores);
        }
        let mut restored = RandomFreeze::new(rate, vec![true; 12], 3, 7);
        restored.restore(&original.state()).unwrap();
        for step in 5..20 {
            assert_eq!(
                restored.trainable(step, &scores),
                original.trainable(step, &scores),
                "step {step}"
            );
        }
        assert!(restored.restore(&[1, 2]).is_err());
        assert!(Full.state().is_empty());
        assert!(Full.restore(&[]).is_ok() && Full.restore(&[3]).is_err());
    }

    /// `reads_scores` is what lets a trainer skip scoring: a policy that says `false` must
    /// pick the same sets whatever the scores, and ILS must not.
    #[test]
    fn only_ils_reads_the_scores() {
        let rate = FreezeRate::new(0.5).unwrap();
        let candidates = vec![true; 8];
        let rising: Vec<f64> = (0..8).map(f64::from).collect();
        let falling: Vec<f64> = rising.iter().rev().copied().collect();
        let mut policies: Vec<(Box<dyn FreezePolicy>, Box<dyn FreezePolicy>)> = vec![
            (Box::new(Full), Box::new(Full)),
            (
                Box::new(StaticPrefix::new(rate, candidates.clone())),
                Box::new(StaticPrefix::new(rate, candidates.clone())),
            ),
            (
                Box::new(RandomFreeze::new(rate, candidates.clone(), 1, 7)),
                Box::new(RandomFreeze::new(rate, candidates.clone(), 1, 7)),
            ),
            (
                Box::new(Ils::new(rate, candidates.clone())),
                Box::new(Ils::new(rate, candidates.clone())),
            ),
        ];
        for (a, b) in &mut policies {
            let differs =
                (0..5).any(|step| a.trainable(step, &rising) != b.trainable(step, &falling));
            assert_eq!(differs, a.reads_scores(), "{}", a.name());
        }
        assert!(policies[3].0.reads_scores(), "ILS reads them");
    }

    #[test]
    fn freezing_order_is_by_score_with_nan_last_and_skips_non_candidates() {
        let candidates = [true, true, false, true, true, true];
        let scores = [0.5, f64::NAN, 9.0, 0.7, 0.5, 2.0];
        // Unit 2 is not a candidate; NaN ranks highest (ILS never freezes it first); the tie
        // between units 0 and 4 breaks by index. A budget-mode refill walks this backwards.
        assert_eq!(freezing_order(&candidates, &scores), vec![0, 4, 3, 5, 1]);
    }

    fn rate(r: f64) -> FreezeRate {
        FreezeRate::new(r).unwrap()
    }

    #[test]
    fn invalid_rates_are_errors() {
        for r in [-0.1, 1.0, 1.5, f64::NAN] {
            assert!(FreezeRate::new(r).is_err(), "{r}");
        }
        assert_eq!(rate(0.9).frozen_of(10), 9);
        assert_eq!(rate(0.9).frozen_of(54), 48);
        assert_eq!(rate(0.95).frozen_of(102), 96);
    }

    #[test]
    fn zero_rate_freezes_nothing() {
        let mut ils = Ils::new(rate(0.0), vec![true; 7]);
        assert_eq!(ils.trainable(0, &[1.0; 7]), vec![true; 7]);
        let mut prefix = StaticPrefix::new(rate(0.0), vec![true; 7]);
        assert_eq!(prefix.trainable(0, &[1.0; 7]), vec![true; 7]);
    }

    /// With the huge random initial scores, every unit trains within ceil(t/k) steps: a unit
    /// that trained gets a real (tiny) score and sinks below all untouched ones.
    #[test]
    fn ils_warm_up_trains_every_unit_round_robin() {
        let t = 54;
        let r = rate(0.9);
        let mut ils = Ils::new(r, vec![true; t]);
        let k = ils.trainable_per_step();
        assert_eq!(k, 6);
        let mut scores = UnitScores::new(t, ScoreFormula::RelativeL1, 1e10, 43);
        let mut trained = vec![false; t];
        for step in 0..t.div_ceil(k) {
            let trainable = ils.trainable(step, scores.scores());
            assert_eq!(trainable.iter().filter(|&&x| x).count(), k);
            for (i, _) in trainable.iter().enumerate().filter(|(_, x)| **x) {
                trained[i] = true;
                scores.record(i, &[1.0], &[1.0 + 1e-3]).unwrap();
            }
        }
        assert!(trained.iter().all(|&x| x), "untrained: {trained:?}");
    }

    #[test]
    fn ils_freezes_lowest_scores_and_never_nan() {
        let mut ils = Ils::new(rate(0.5), vec![true; 4]);
        let trainable = ils.trainable(0, &[f64::NAN, 0.1, 0.2, 0.3]);
        assert_eq!(trainable, vec![true, false, false, true]);
    }

    #[test]
    fn non_candidates_always_train() {
        let mut ils = Ils::new(rate(0.5), vec![true, true, false, true, true]);
        let trainable = ils.trainable(0, &[0.0, 0.0, 0.0, 1.0, 1.0]);
        // t = 4 candidates, 2 frozen: units 0 and 1; unit 2 is no candidate.
        assert_eq!(trainable, vec![false, false, true, true, true]);
    }

    #[test]
    fn same_seed_same_trace() {
        let trace = |seed| {
            let mut scores = UnitScores::new(20, ScoreFormula::Paper, 1e10, seed);
            let mut ils = Ils::new(rate(0.8), vec![true; 20]);
            let mut random = RandomFreeze::new(rate(0.8), vec![true; 20], 3, seed);
            (0..30)
                .map(|step| {
                    let t = ils.trainable(step, scores.scores());
                    for i in (0..20).filter(|&i| t[i]) {
                        let moved = 1.0 + 1e-3 / (1.0 + step as f32 + i as f32);
                        scores.record(i, &[1.0], &[moved]).unwrap();
                    }
                    (t, random.trainable(step, &[0.0; 20]))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(trace(5), trace(5));
        assert_ne!(trace(5), trace(6));
    }

    #[test]
    fn random_redraws_only_on_its_interval() {
        let mut random = RandomFreeze::new(rate(0.5), vec![true; 10], 4, 1);
        let first = random.trainable(0, &[0.0; 10]);
        assert_eq!(first.iter().filter(|&&x| !x).count(), 5);
        for step in 1..4 {
            assert_eq!(random.trainable(step, &[0.0; 10]), first);
        }
        let draws: Vec<_> = (1..6)
            .map(|i| random.trainable(4 * i, &[0.0; 10]))
            .collect();
        assert!(draws.iter().any(|d| *d != first));
    }

    #[test]
    fn static_prefix_freezes_lowest_indices() {
        let mut p = StaticPrefix::new(rate(0.5), vec![true; 6]);
        assert_eq!(
            p.trainable(0, &[9.0; 6]),
            vec![false, false, false, true, true, true]
        );
    }
}
