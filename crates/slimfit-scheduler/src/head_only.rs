//! Head-only fine-tuning (a linear probe): the task head trains, the rest stays frozen.

use crate::FreezePolicy;

/// Only the units flagged `head` train, at every step. In a trainer whose units are weight
/// tensors (biases and LayerNorm β are not units), those still train too — the usual
/// "head-only" baseline plus the biases.
#[derive(Debug, Clone)]
pub struct HeadOnly {
    head: Vec<bool>,
}

impl HeadOnly {
    /// Trains exactly the units flagged in `head`.
    pub fn new(head: Vec<bool>) -> Self {
        Self { head }
    }
}

impl FreezePolicy for HeadOnly {
    fn trainable(&mut self, _step: usize, scores: &[f64]) -> Vec<bool> {
        assert_eq!(scores.len(), self.head.len(), "one score per unit");
        self.head.clone()
    }

    fn name(&self) -> &'static str {
        "head"
    }

    fn reads_scores(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_head_trains_at_every_step() {
        let head = vec![false, false, false, true];
        let mut policy = HeadOnly::new(head.clone());
        for step in 0..3 {
            assert_eq!(policy.trainable(step, &[1.0, 2.0, 3.0, 4.0]), head);
        }
    }
}
