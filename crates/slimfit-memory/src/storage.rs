//! How saved activations are stored, and what the optimizer keeps for frozen units.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Storage of the activations a training step saves for its backward pass (the models
/// crate's `Compression`, applied to every op).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationStorage {
    /// Plain burn ops, fp32 everywhere.
    Exact,
    /// SLIMFIT.md §4: int8 fixed point for attention, 4-bit GELU input, int8 FFN2 input,
    /// top-k frozen LayerNorm, byte dropout masks.
    Paper,
    /// Per-row absmax int8, 8-bit GELU′, int8 frozen-LayerNorm x̂, 1-bit dropout masks.
    Scaled,
}

impl ActivationStorage {
    /// Every storage mode.
    pub const ALL: [Self; 3] = [Self::Exact, Self::Paper, Self::Scaled];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Paper => "paper",
            Self::Scaled => "scaled",
        }
    }
}

impl fmt::Display for ActivationStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ActivationStorage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown compression {s:?}: expected exact, paper or scaled"))
    }
}

/// What happens to the Adam moments of frozen units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerState {
    /// Kept while frozen (the reference): every unit that ever trained holds two moments.
    Keep,
    /// Freed while frozen: only the units that train now (and the always-trained biases)
    /// hold moments.
    Drop,
}
