//! LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"), as
//! a baseline to SlimFit: a frozen weight `W` plus a trained low-rank update,
//! `y = x Wᵀ + b + (α / r) · dropout(x) Aᵀ Bᵀ` with `A: [r, d_input]`, `B: [d_output, r]`.
//!
//! The configuration ([`LoraConfig`]) is separate from the model it wraps, as in PEFT, and
//! its defaults are PEFT's for BERT: rank 8, α 8, dropout 0, adapters on `query` and
//! `value`, biases not trained. `A` starts Kaiming-uniform (PEFT's `init_lora_weights =
//! True`: uniform in ±1/√d_input) and `B` at zero, so an adapted model starts exactly where
//! the base model is. [`LoraAdapter::merge_into`] folds the update into `W`, which is how a
//! fine-tuned model is saved: a plain checkpoint, no adapter files.

use std::fmt;
use std::str::FromStr;

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Distribution, Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::bert::{BertLayer, BertModel};
use crate::dense::Dense;
use crate::slim::SlimOps;
use crate::units::{UnitKind, UnitList};

/// A projection of a transformer layer that can carry an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoraTarget {
    /// `attention.self.query`.
    Query,
    /// `attention.self.key`.
    Key,
    /// `attention.self.value`.
    Value,
    /// `attention.output.dense`.
    AttentionOutput,
    /// `intermediate.dense` (FFN1).
    Ffn1,
    /// `output.dense` (FFN2).
    Ffn2,
}

impl LoraTarget {
    /// Every target, in layer order.
    pub const ALL: [LoraTarget; 6] = [
        Self::Query,
        Self::Key,
        Self::Value,
        Self::AttentionOutput,
        Self::Ffn1,
        Self::Ffn2,
    ];

    /// The projection's path inside `encoder.layer.N` (Hugging Face's names).
    pub fn path(self) -> &'static str {
        match self {
            Self::Query => "attention.self.query",
            Self::Key => "attention.self.key",
            Self::Value => "attention.self.value",
            Self::AttentionOutput => "attention.output.dense",
            Self::Ffn1 => "intermediate.dense",
            Self::Ffn2 => "output.dense",
        }
    }

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Key => "key",
            Self::Value => "value",
            Self::AttentionOutput => "attention-output",
            Self::Ffn1 => "ffn1",
            Self::Ffn2 => "ffn2",
        }
    }
}

impl fmt::Display for LoraTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LoraTarget {
    type Err = LoraError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| LoraError::Target(s.to_string()))
    }
}

/// A LoRA setting that cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoraError {
    /// An unknown target name.
    #[error(
        "unknown LoRA target `{0}`: expected query, key, value, attention-output, ffn1 or ffn2"
    )]
    Target(String),
    /// Rank 0, a non-positive α, a dropout outside [0, 1), or no target.
    #[error("invalid LoRA setting: {0}")]
    Setting(String),
}

/// Where adapters go and how they scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank `r` of each update.
    pub rank: usize,
    /// α: the update is scaled by `α / r`.
    pub alpha: f64,
    /// Dropout on the adapter's input (training only).
    pub dropout: f64,
    /// The projections of every layer that carry an adapter.
    pub targets: Vec<LoraTarget>,
}

impl Default for LoraConfig {
    /// PEFT's defaults for BERT: `r = 8`, `lora_alpha = 8`, `lora_dropout = 0.0`, target
    /// modules `query` and `value`.
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 8.0,
            dropout: 0.0,
            targets: vec![LoraTarget::Query, LoraTarget::Value],
        }
    }
}

impl LoraConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), LoraError> {
        let bad = |m: String| Err(LoraError::Setting(m));
        if self.rank == 0 {
            return bad("the rank must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(format!("alpha = {} must be positive", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout = {} must lie in [0, 1)", self.dropout));
        }
        if self.targets.is_empty() {
            return bad("no target module".into());
        }
        Ok(())
    }

    /// `α / r`.
    pub fn scaling(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// One adapter: the two low-rank factors of a projection's update.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `A`, `[rank, d_input]` (PEFT's `lora_A`).
    pub a: Param<Tensor<B, 2>>,
    /// `B`, `[d_output, rank]` (PEFT's `lora_B`), zero at the start.
    pub b: Param<Tensor<B, 2>>,
    /// Dropout on the adapter's input.
    pub dropout: Dropout,
    /// `α / r`.
    #[module(skip)]
    pub scaling: f64,
}

impl<B: Backend> LoraAdapter<B> {
    /// A fresh adapter for a `[d_output, d_input]` weight: `A` uniform in ±1/√d_input (from
    /// the backend's generator), `B` zero.
    pub fn new(config: &LoraConfig, d_input: usize, d_output: usize, device: &B::Device) -> Self {
        let bound = 1.0 / (d_input as f64).sqrt();
        let a = Tensor::random(
            [config.rank, d_input],
            Distribution::Uniform(-bound, bound),
            device,
        );
        Self {
            a: Param::from_tensor(a),
            b: Param::from_tensor(Tensor::zeros([d_output, config.rank], device)),
            dropout: DropoutConfig::new(config.dropout).init(),
            scaling: config.scaling(),
        }
    }

    /// The update for a 2-D input.
    ///
    /// # Shapes
    /// - input: `[rows, d_input]`
    /// - output: `[rows, d_output]`
    pub fn forward(&self, input: Tensor<B, 2>) -> Tensor<B, 2> {
        self.dropout
            .forward(input)
            .matmul(self.a.val().transpose())
            .matmul(self.b.val().transpose())
            .mul_scalar(self.scaling)
    }

    /// `W + (α / r) · B A`: the weight that computes the adapted projection on its own.
    ///
    /// # Shapes
    /// - weight: `[d_output, d_input]`
    pub fn merge_into(&self, weight: Tensor<B, 2>) -> Tensor<B, 2> {
        weight + self.b.val().matmul(self.a.val()).mul_scalar(self.scaling)
    }
}

impl<B: SlimOps> BertLayer<B> {
    /// The projection `target` names.
    pub fn projection(&self, target: LoraTarget) -> &Dense<B> {
        match target {
            LoraTarget::Query => &self.attention.query,
            LoraTarget::Key => &self.attention.key,
            LoraTarget::Value => &self.attention.value,
            LoraTarget::AttentionOutput => &self.attention_output.dense,
            LoraTarget::Ffn1 => &self.intermediate,
            LoraTarget::Ffn2 => &self.output.dense,
        }
    }

    fn projection_mut(&mut self, target: LoraTarget) -> &mut Dense<B> {
        match target {
            LoraTarget::Query => &mut self.attention.query,
            LoraTarget::Key => &mut self.attention.key,
            LoraTarget::Value => &mut self.attention.value,
            LoraTarget::AttentionOutput => &mut self.attention_output.dense,
            LoraTarget::Ffn1 => &mut self.intermediate,
            LoraTarget::Ffn2 => &mut self.output.dense,
        }
    }

    /// Appends the units of this layer's adapters (`A` then `B` of each, in
    /// [`LoraTarget::ALL`] order), named as PEFT names them without its wrapper prefix:
    /// `{prefix}.attention.self.query.lora_A.weight`.
    pub(crate) fn push_adapter_units(&self, units: &mut UnitList, prefix: &str, layer: usize) {
        for target in LoraTarget::ALL {
            if let Some(lora) = &self.projection(target).lora {
                let path = format!("{prefix}.{}", target.path());
                let l = Some(layer);
                units.push(format!("{path}.lora_A.weight"), &lora.a, UnitKind::LoraA, l);
                units.push(format!("{path}.lora_B.weight"), &lora.b, UnitKind::LoraB, l);
            }
        }
    }
}

impl<B: SlimOps> BertModel<B> {
    /// The encoder with fresh adapters on `config.targets` of every layer (the backend's
    /// generator initialises `A`). The model computes what it computed before: `B` is zero.
    pub fn with_lora(mut self, config: &LoraConfig) -> Result<Self, LoraError> {
        config.validate()?;
        for layer in &mut self.layers {
            for &target in &config.targets {
                layer.projection_mut(target).attach_lora(config);
            }
        }
        Ok(self)
    }

    /// The encoder with every adapter folded into its weight: a plain BERT computing the
    /// same function, which a checkpoint can hold.
    pub fn merge_lora(mut self) -> Self {
        for layer in &mut self.layers {
            for target in LoraTarget::ALL {
                layer.projection_mut(target).merge_lora();
            }
        }
        self
    }
}
