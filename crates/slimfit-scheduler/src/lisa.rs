//! LISA, layer-wise importance sampling (Pan et al. 2024, "LISA: Layerwise Importance
//! Sampling for Memory-Efficient Large Language Model Fine-Tuning", Algorithm 1).
//!
//! Every `K` steps, `γ` of the `N` transformer layers are drawn uniformly without
//! replacement; the units of the drawn layers train, those of the other layers are frozen,
//! and every unit outside the layers (embeddings, pooler, head, final norm) trains at every
//! step. Defaults as LMFlow's (the authors' code): `γ = 2`, `K = 20`.

use thiserror::Error;

use crate::FreezePolicy;
use crate::rng::{XorShift, drawn_state, restore_drawn};

/// A LISA setting that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LisaError {
    /// γ is zero or above the number of layers.
    #[error("LISA samples {active} layers per period, but the model has {layers} layers")]
    Active {
        /// γ.
        active: usize,
        /// Layers of the model.
        layers: usize,
    },
    /// K is zero.
    #[error("LISA's sampling period must be at least one step")]
    Interval,
}

/// LISA's sampling: `active` layers every `interval` steps.
#[derive(Debug, Clone)]
pub struct Lisa {
    /// Each unit's transformer layer; `None`: outside the layers, always trains.
    layers: Vec<Option<usize>>,
    n_layers: usize,
    active: usize,
    interval: usize,
    rng: XorShift,
    current: Option<Vec<bool>>,
}

impl Lisa {
    /// LISA over units whose layer index is `layers[i]` (`None` outside the transformer
    /// layers): `active` (γ) layers drawn every `interval` (K) steps from `seed`.
    pub fn new(
        layers: Vec<Option<usize>>,
        active: usize,
        interval: usize,
        seed: u64,
    ) -> Result<Self, LisaError> {
        let n_layers = layers.iter().flatten().max().map_or(0, |&l| l + 1);
        if active == 0 || active > n_layers {
            return Err(LisaError::Active {
                active,
                layers: n_layers,
            });
        }
        if interval == 0 {
            return Err(LisaError::Interval);
        }
        Ok(Self {
            layers,
            n_layers,
            active,
            interval,
            rng: XorShift::new(seed),
            current: None,
        })
    }

    /// The layers training now (ascending), once a step was taken.
    pub fn active_layers(&self) -> Option<Vec<usize>> {
        let current = self.current.as_ref()?;
        let active: std::collections::BTreeSet<usize> = self
            .layers
            .iter()
            .zip(current)
            .filter_map(|(layer, &t)| layer.filter(|_| t))
            .collect();
        Some(active.into_iter().collect())
    }

    fn draw(&mut self) -> Vec<bool> {
        let mut order: Vec<usize> = (0..self.n_layers).collect();
        self.rng.shuffle(&mut order);
        let mut drawn = vec![false; self.n_layers];
        for &l in &order[..self.active] {
            drawn[l] = true;
        }
        self.layers
            .iter()
            .map(|layer| layer.is_none_or(|l| drawn[l]))
            .collect()
    }
}

impl FreezePolicy for Lisa {
    fn trainable(&mut self, step: usize, scores: &[f64]) -> Vec<bool> {
        assert_eq!(scores.len(), self.layers.len(), "one score per unit");
        if self.current.is_none() || step.is_multiple_of(self.interval) {
            self.current = Some(self.draw());
        }
        self.current.clone().expect("drawn above")
    }

    fn name(&self) -> &'static str {
        "lisa"
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
        (self.rng, self.current) = restore_drawn(state, self.layers.len(), "LISA")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BERT-like unit list: 2 embedding units, 4 layers of 3 units, a head.
    fn units() -> Vec<Option<usize>> {
        let mut layers = vec![None, None];
        for l in 0..4 {
            layers.extend([Some(l); 3]);
        }
        layers.push(None);
        layers
    }

    /// Algorithm 1's shape: outside the layers everything trains; inside, exactly γ whole
    /// layers, the same for K steps, redrawn at each multiple of K.
    #[test]
    fn every_period_trains_gamma_whole_layers_and_everything_outside_them() {
        let layers = units();
        let mut lisa = Lisa::new(layers.clone(), 2, 5, 42).unwrap();
        let scores = vec![0.0; layers.len()];
        let mut periods = Vec::new();
        for step in 0..200 {
            let trainable = lisa.trainable(step, &scores);
            for (unit, layer) in layers.iter().enumerate() {
                if layer.is_none() {
                    assert!(
                        trainable[unit],
                        "unit {unit} outside the layers, step {step}"
                    );
                }
            }
            let active = lisa.active_layers().unwrap();
            assert_eq!(active.len(), 2, "step {step}: {active:?}");
            for (unit, layer) in layers.iter().enumerate() {
                if let Some(l) = layer {
                    assert_eq!(trainable[unit], active.contains(l), "unit {unit}");
                }
            }
            if step % 5 == 0 {
                periods.push(active);
            } else {
                assert_eq!(&active, periods.last().unwrap(), "step {step}");
            }
        }
        // Uniform sampling: over 40 periods every layer is drawn, none every time.
        for l in 0..4 {
            let drawn = periods.iter().filter(|p| p.contains(&l)).count();
            assert!((8..=32).contains(&drawn), "layer {l} drawn {drawn} of 40");
        }
    }

    #[test]
    fn a_restored_lisa_continues_the_same_sequence() {
        let scores = vec![0.0; units().len()];
        let mut original = Lisa::new(units(), 1, 3, 9).unwrap();
        for step in 0..7 {
            original.trainable(step, &scores);
        }
        let mut restored = Lisa::new(units(), 1, 3, 9).unwrap();
        restored.restore(&original.state()).unwrap();
        for step in 7..40 {
            assert_eq!(
                restored.trainable(step, &scores),
                original.trainable(step, &scores),
                "step {step}"
            );
        }
        assert!(restored.restore(&[1, 0]).is_err());
    }

    #[test]
    fn impossible_settings_are_errors() {
        assert_eq!(
            Lisa::new(units(), 5, 20, 0).unwrap_err(),
            LisaError::Active {
                active: 5,
                layers: 4
            }
        );
        assert!(Lisa::new(units(), 0, 20, 0).is_err());
        assert_eq!(
            Lisa::new(units(), 2, 0, 0).unwrap_err(),
            LisaError::Interval
        );
    }
}
