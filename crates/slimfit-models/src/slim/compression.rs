//! How each SlimFit op stores what it saves for the backward pass (SLIMFIT.md §4).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Storage of one op's saved activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Full fp32, as plain burn ops keep it.
    #[default]
    Exact,
    /// The reference's fixed-point formats: Q3.4 int8, Q0.8 uint8, Q2.1 4-bit; fixed ranges
    /// clip. A frozen LayerNorm keeps the top 10 % of its normalised output.
    Paper,
    /// Our default: absmax-scaled int8 with one scale per row (last dimension) where the
    /// paper uses Q3.4 / Q0.8, so nothing clips; GELU keeps its *derivative* in 8 bits
    /// (bounded, so a fixed range loses nothing); a frozen LayerNorm keeps its normalised
    /// output in int8 instead of the top 10 %; dropout masks take one bit per value, so
    /// attention dropout stays on P as in BERT (the reference moves it to V).
    Scaled,
}

impl Compression {
    /// All modes, for command-line help and sweeps.
    pub const ALL: [Compression; 3] = [Self::Exact, Self::Paper, Self::Scaled];

    /// Revision of what the mode stores and computes: bumped whenever its numerics change,
    /// so that a recorded result says which storage it measured (scaled 2: GELU′ in 8 bits
    /// instead of 4; 3: attention dropout on P, as BERT, instead of on V).
    pub fn revision(self) -> u32 {
        match self {
            Self::Exact | Self::Paper => 1,
            Self::Scaled => 3,
        }
    }

    /// The mode's name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Paper => "paper",
            Self::Scaled => "scaled",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown compression {s:?}: expected exact, paper or scaled"))
    }
}

/// The compression of every op of a transformer layer, selectable one by one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CompressionConfig {
    /// Q and K saved by `QKᵀ` (paper: int8 Q3.4).
    pub attention_scores: Compression,
    /// P and V saved by `softmax · V` (paper: P uint8 Q0.8, V int8 Q3.4).
    pub attention_context: Compression,
    /// The GELU input (paper: 4-bit Q2.1, two values per byte; scaled: GELU′ in 8 bits).
    pub gelu: Compression,
    /// The FFN2 input when FFN2 trains (paper: int8 Q3.4).
    pub ffn2_input: Compression,
    /// A frozen LayerNorm's state (paper: top-k of the normalised output + per-row std;
    /// scaled: the normalised output in int8 + per-row std).
    pub layer_norm: Compression,
    /// Dropout keep masks (exact/paper: one byte per value; scaled: one bit). `paper` also
    /// moves attention dropout from P to V, as the reference does.
    pub dropout_mask: Compression,
    /// Fraction of the normalised output a frozen LayerNorm keeps (paper: 0.1).
    pub layer_norm_keep: f32,
}

impl CompressionConfig {
    /// Every op in `mode` (the paper's 10 % LayerNorm keep rate).
    pub fn uniform(mode: Compression) -> Self {
        Self {
            attention_scores: mode,
            attention_context: mode,
            gelu: mode,
            ffn2_input: mode,
            layer_norm: mode,
            dropout_mask: mode,
            layer_norm_keep: 0.1,
        }
    }

    /// Plain burn ops everywhere: the baseline.
    pub fn exact() -> Self {
        Self::uniform(Compression::Exact)
    }

    /// `true` when no op compresses, so the model can run on plain burn ops.
    pub fn is_exact(&self) -> bool {
        [
            self.attention_scores,
            self.attention_context,
            self.gelu,
            self.ffn2_input,
            self.layer_norm,
            self.dropout_mask,
        ]
        .iter()
        .all(|&m| m == Compression::Exact)
    }
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self::exact()
    }
}
