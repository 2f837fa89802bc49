//! SlimFit's units of freezing: one weight tensor each (SLIMFIT.md §1).
//!
//! Every parameter with two or more dimensions (Q, K, V, attention-output, FFN1, FFN2,
//! pooler, head, each embedding table) and every LayerNorm γ is a unit. Biases and LayerNorm β
//! are not units: they always train. A unit is frozen by switching off `require_grad` on its
//! parameter between steps, so the model is never rebuilt: frozen weights get no gradient,
//! no optimizer update, and (through the SlimFit ops) their inputs are not kept for backward.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::{Tensor, backend::Backend};
use serde::Serialize;

/// What a unit is, for the scheduler and the memory accountant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// A word, position or token-type embedding table; for ViT the cls token and the
    /// position embeddings.
    Embedding,
    /// ViT's patch projection (a convolution with stride = kernel, computed as a Linear
    /// layer over flattened patches: `[hidden, channels · patch²]`).
    PatchEmbedding,
    /// Attention query projection.
    Query,
    /// Attention key projection.
    Key,
    /// Attention value projection.
    Value,
    /// Attention output projection.
    AttentionOutput,
    /// First feed-forward projection (H → F).
    Ffn1,
    /// Second feed-forward projection (F → H).
    Ffn2,
    /// A LayerNorm γ.
    LayerNorm,
    /// A DINOv2 layer-scale λ (per-channel scale of a residual branch).
    LayerScale,
    /// The pooler projection.
    Pooler,
    /// A task head (classifier, QA outputs).
    Head,
    /// A LoRA adapter's down-projection `A` (`[rank, d_input]`).
    LoraA,
    /// A LoRA adapter's up-projection `B` (`[d_output, rank]`).
    LoraB,
}

/// One freezable weight tensor.
#[derive(Debug, Clone, Serialize)]
pub struct Unit {
    /// Position in the model's unit list (stable for a given architecture).
    pub index: usize,
    /// Hugging Face name of the tensor, e.g. `encoder.layer.3.attention.self.query.weight`.
    pub name: String,
    /// Shape of the tensor.
    pub shape: Vec<usize>,
    /// What the tensor is.
    pub kind: UnitKind,
    /// Transformer layer index, `None` outside the encoder layers.
    pub layer: Option<usize>,
    /// The parameter's id in the burn module.
    #[serde(skip)]
    pub param_id: ParamId,
    /// The bias of a projection's weight, the β of a LayerNorm's γ: a parameter that is not
    /// a unit but belongs with it. SlimFit trains these always; a baseline that freezes whole
    /// modules (LISA's layers, head-only, LoRA's base model) freezes them with their unit
    /// ([`HasUnits::with_trainable_modules`]).
    #[serde(skip)]
    pub bias_id: Option<ParamId>,
}

impl Unit {
    /// Number of scalars in the tensor.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Collects units in a fixed order while a model describes itself.
#[derive(Debug, Default)]
pub struct UnitList {
    units: Vec<Unit>,
}

impl UnitList {
    /// Appends `param` as a unit.
    pub fn push<B: Backend, const D: usize>(
        &mut self,
        name: impl Into<String>,
        param: &Param<Tensor<B, D>>,
        kind: UnitKind,
        layer: Option<usize>,
    ) {
        self.units.push(Unit {
            index: self.units.len(),
            name: name.into(),
            shape: param.shape().to_vec(),
            kind,
            layer,
            param_id: param.id,
            bias_id: None,
        });
    }

    /// Appends `param` as a unit whose bias (or LayerNorm β) is `bias`.
    pub fn push_with_bias<B: Backend, const D: usize>(
        &mut self,
        name: impl Into<String>,
        param: &Param<Tensor<B, D>>,
        bias: &Param<Tensor<B, 1>>,
        kind: UnitKind,
        layer: Option<usize>,
    ) {
        self.push(name, param, kind, layer);
        self.units.last_mut().expect("pushed").bias_id = Some(bias.id);
    }

    /// The collected units.
    pub fn into_vec(self) -> Vec<Unit> {
        self.units
    }
}

/// A model made of SlimFit units.
pub trait HasUnits<B: Backend>: Module<B> + Sized {
    /// All units, in a stable order (embeddings, then layer by layer, then pooler and head).
    fn units(&self) -> Vec<Unit>;

    /// Sets which units train: `trainable[i]` for `units[i]`. Parameters that are not units
    /// (biases, LayerNorm β) always train.
    ///
    /// # Panics
    /// When `trainable` and `units` differ in length.
    fn with_trainable(self, units: &[Unit], trainable: &[bool]) -> Self {
        assert_eq!(units.len(), trainable.len(), "one flag per unit");
        let wanted = units
            .iter()
            .zip(trainable)
            .map(|(u, &t)| (u.param_id, t))
            .collect();
        self.map(&mut RequireGrad { wanted })
    }

    /// [`HasUnits::with_trainable`], with each unit's bias or β ([`Unit::bias_id`]) following
    /// its unit: whole modules train or freeze, as baselines that freeze layers define it.
    fn with_trainable_modules(self, units: &[Unit], trainable: &[bool]) -> Self {
        assert_eq!(units.len(), trainable.len(), "one flag per unit");
        let wanted = units
            .iter()
            .zip(trainable)
            .flat_map(|(u, &t)| {
                [(u.param_id, t)]
                    .into_iter()
                    .chain(u.bias_id.map(|b| (b, t)))
            })
            .collect();
        self.map(&mut RequireGrad { wanted })
    }
}

/// Sets `require_grad` on the parameters it knows, leaves the others as they are.
struct RequireGrad {
    wanted: HashMap<ParamId, bool>,
}

impl<B: Backend> ModuleMapper<B> for RequireGrad {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        match self.wanted.get(&param.id) {
            Some(&on) => param.set_require_grad(on),
            None => param,
        }
    }
}
