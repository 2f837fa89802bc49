//! A fixed trainable set: head-only fine-tuning (a linear probe), or LoRA's adapters and
//! head — the same units at every step.

use crate::FreezePolicy;

/// The units flagged in `trainable` train at every step, the others never. In a trainer
/// whose units are weight tensors (biases and LayerNorm β are not units), the trainer
/// decides what happens to those.
#[derive(Debug, Clone)]
pub struct Fixed {
    name: &'static str,
    trainable: Vec<bool>,
}

impl Fixed {
    /// Trains exactly the units flagged in `trainable`; `name` goes to reports.
    pub fn new(name: &'static str, trainable: Vec<bool>) -> Self {
        Self { name, trainable }
    }
}

impl FreezePolicy for Fixed {
    fn trainable(&mut self, _step: usize, scores: &[f64]) -> Vec<bool> {
        assert_eq!(scores.len(), self.trainable.len(), "one score per unit");
        self.trainable.clone()
    }

    fn name(&self) -> &'static str {
        self.name
    }

    fn reads_scores(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_units_train_at_every_step() {
        let head = vec![false, false, false, true];
        let mut policy = Fixed::new("head", head.clone());
        for step in 0..3 {
            assert_eq!(policy.trainable(step, &[1.0, 2.0, 3.0, 4.0]), head);
        }
        assert_eq!(policy.name(), "head");
    }
}
