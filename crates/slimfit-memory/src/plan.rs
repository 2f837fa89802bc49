//! The peak memory of one training step, predicted phase by phase.
//!
//! A step is forward → backward → AdamW update. Memory that lives across steps (weights,
//! Adam moments) is *resident*; on top of it:
//! - **forward** ends with every saved activation alive; its peak adds the materialised
//!   attention-mask bias and the busiest kernel of the last layer;
//! - **backward** walks the layers top-down: layer `l`'s kernels run while the saved
//!   activations of layers `≤ l` are still alive and the gradients of everything above are
//!   already held; it ends at the embeddings, where a trainable table's gradient is built
//!   beside the finished gradients;
//! - **update** visits parameters one by one with every gradient alive and one temporary
//!   of the current parameter's size.
//!
//! The peak is the largest of these moments. Transient workspaces are counted in full-size
//! buffers ([`Workspace`]) live at once at the busiest point of a kernel, read off the op
//! sequence of each storage mode and checked with the counting allocator (docs/MEMORY.md).

use serde::Serialize;

use crate::Bytes;
use crate::activations::{Dims, Saved, saved};
use crate::shape::{EncoderShape, Family, UnitRole, UnitSpec};
use crate::storage::{ActivationStorage, OptimizerState};

/// Bytes per parameter value (fp32 training).
const F32: u64 = 4;

/// What to predict.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRequest {
    /// The model.
    pub shape: EncoderShape,
    /// Sequences per batch.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Storage of saved activations.
    pub storage: ActivationStorage,
    /// Fraction of each row a frozen LayerNorm keeps in `paper` storage.
    pub layer_norm_keep: f64,
    /// Adam moments of frozen units.
    pub optimizer_state: OptimizerState,
    /// Which units train in the step, one flag per `shape.units()`.
    pub trainable: Vec<bool>,
    /// Bytes the process holds besides the model (runtime, thread pools); added to the total
    /// so that it compares with a whole-process measurement.
    pub runtime_overhead: Bytes,
    /// The trainer copies each trainable unit before the step to score its update
    /// (SLIMFIT.md §2): 4 B × its size, alive for the whole step, counted with the
    /// optimizer state. `measure-step` takes no copies.
    pub score_snapshots: bool,
    /// Gradient accumulation (`train --grad-accum N`, N > 1): the request's `batch` is one
    /// micro-batch, and from the second micro-batch of an optimizer step on, the summed
    /// gradients of the earlier ones — every trainable unit, bias and β — stay alive through
    /// its whole forward and backward pass (and beside its finished gradients while they are
    /// added in). Counted with the gradients of the forward, backward and embedding
    /// moments; the update holds only the sum.
    pub accumulated_gradients: bool,
    /// Activation checkpointing (`train --activation-checkpointing`): the forward pass keeps
    /// only each encoder layer's input (one `[tokens, hidden]` fp32 tensor per layer) and the
    /// head's saved state; backward recomputes one layer at a time, so layer `l`'s saved
    /// activations live beside the inputs of layers `≤ l` and the gradient arriving at its
    /// output, and the embeddings' while their gradient is built.
    pub recompute_layers: bool,
    /// LoRA (`train --policy lora`): each trainable encoder-layer matrix (query, key, value,
    /// attention output, FFN) is *adapted*, not trained — its weight stays frozen, with no
    /// gradient and no moments, and a rank-r adapter (`r × (in + out)` values) trains in
    /// its place; the matrix's input is kept as if it trained (the adapter's gradient reads
    /// it). Other trainable units (the head) train whole. The adapter's `[tokens, r]`
    /// intermediate is not counted (r ≪ hidden). `None`: no adapters.
    pub adapter_rank: Option<usize>,
    /// Head-only training (`train --policy head`): the head's units alone train, the
    /// encoder's biases and β as well as its weights are frozen, so no gradient flows below
    /// the head — the encoder saves no activation and runs no backward kernel; only the
    /// head's gradients exist. `trainable` should mark the head's units alone.
    pub head_only: bool,
}

/// Errors of the accountant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The request does not describe a step.
    #[error("{0}")]
    Invalid(String),
    /// Even with every unit frozen the step does not fit.
    #[error(
        "a memory budget of {budget} cannot hold this step: with every unit frozen it needs \
         {minimum}"
    )]
    BudgetTooSmall {
        /// The budget asked for.
        budget: Bytes,
        /// The predicted peak with every unit frozen.
        minimum: Bytes,
    },
}

/// Where the peak happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "phase", content = "layer")]
pub enum PeakPhase {
    /// End of the forward pass (last layer's busiest kernel).
    Forward,
    /// Backward through encoder layer `n`.
    Backward(usize),
    /// Backward through the embeddings (gradients complete).
    Embeddings,
    /// AdamW update.
    Update,
}

/// The six kinds of memory at the peak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Categories {
    /// Weights.
    pub parameters: Bytes,
    /// Gradients alive at the peak.
    pub gradients: Bytes,
    /// Adam moments (and the trainer's score snapshots of the trainable units).
    pub optimizer_state: Bytes,
    /// Saved activations alive at the peak that exist because a unit trains.
    pub dynamic_activations: Bytes,
    /// Saved activations alive at the peak whatever is frozen.
    pub static_activations: Bytes,
    /// Buffers of the kernel running at the peak (and the attention-mask bias in forward).
    pub transient_workspace: Bytes,
}

impl Categories {
    /// Their sum.
    pub fn total(&self) -> Bytes {
        self.parameters
            + self.gradients
            + self.optimizer_state
            + self.dynamic_activations
            + self.static_activations
            + self.transient_workspace
    }

    /// `(name, bytes)` in display order.
    pub fn named(&self) -> [(&'static str, Bytes); 6] {
        [
            ("parameters", self.parameters),
            ("gradients", self.gradients),
            ("optimizer_state", self.optimizer_state),
            ("dynamic_activations", self.dynamic_activations),
            ("static_activations", self.static_activations),
            ("transient_workspace", self.transient_workspace),
        ]
    }
}

/// Memory of one unit.
#[derive(Debug, Clone, Serialize)]
pub struct UnitBytes {
    /// Hugging Face name.
    pub name: String,
    /// Whether it trains in this step.
    pub trainable: bool,
    /// Weight bytes.
    pub parameters: Bytes,
    /// Gradient bytes (when it trains).
    pub gradient: Bytes,
    /// Adam moments held for it.
    pub optimizer_state: Bytes,
    /// Saved activations its training costs.
    pub dynamic_activations: Bytes,
}

/// The prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Predicted peak bytes of the step (categories + runtime overhead).
    pub total_peak_bytes: Bytes,
    /// The peak, by kind.
    pub categories: Categories,
    /// Bytes besides the model, as requested.
    pub runtime_overhead: Bytes,
    /// Where the peak happens.
    pub peak_phase: PeakPhase,
    /// Weights, moments and runtime: what is live between steps.
    pub resident_bytes: Bytes,
    /// All saved activations at the end of the forward pass.
    pub saved_activation_bytes: Bytes,
    /// Peak of each phase (whole process).
    pub forward_peak_bytes: Bytes,
    /// Peak of the backward pass.
    pub backward_peak_bytes: Bytes,
    /// Peak of the update.
    pub update_peak_bytes: Bytes,
    /// Units that train.
    pub trainable_units: usize,
    /// All units.
    pub total_units: usize,
    /// Per unit.
    pub units: Vec<UnitBytes>,
}

/// Full-size fp32 buffers a kernel holds at once, beyond what the step saves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workspace {
    /// `[tokens, ffn]` buffers at the FFN's busiest point in forward.
    pub forward_ffn: f64,
    /// `[batch, heads, seq, seq]` buffers at attention's busiest point in forward.
    pub forward_scores: f64,
    /// `[tokens, ffn]` buffers in the FFN/GELU backward.
    pub backward_ffn: f64,
    /// `[batch, heads, seq, seq]` buffers in the attention backward.
    pub backward_scores: f64,
}

impl Workspace {
    /// The workspace of each storage mode on burn's CPU backend (flex).
    ///
    /// - exact forward: the GELU output beside its saved input; backward: the FFN2 input
    ///   gradient and GELU′ product (2 × `[N,F]`), or in attention the gradients of the
    ///   dropped probabilities and of the scores while the saved draws are released
    ///   (≈ 1⅓ score buffers);
    /// - paper forward: FFN1 output, GELU output and the 4-bit quantiser's scaled copy
    ///   (3 × `[N,F]`), or scores + probabilities (+ half a copy being quantised);
    ///   backward: the unpacked GELU input, GELU′ at it, the incoming gradient and the
    ///   product (4 × `[N,F]`), or dequantised P, dP, dP⊙P and dS (3 score buffers);
    /// - scaled forward: as paper plus GELU′ evaluated for storage (4 × `[N,F]`);
    ///   backward: the dequantised GELU′ is read directly (3 × `[N,F]`). With attention
    ///   dropout (on P, inside the fused op) forward also holds the keep draws and the
    ///   dropped P (2.5 score buffers), and backward the unpacked mask beside P, dP and dS
    ///   (4 score buffers).
    pub fn of(storage: ActivationStorage, attention_dropout: bool) -> Self {
        if storage == ActivationStorage::Scaled && attention_dropout {
            return Self {
                forward_scores: 2.5,
                backward_scores: 4.0,
                ..Self::of(storage, false)
            };
        }
        match storage {
            ActivationStorage::Exact => Self {
                forward_ffn: 1.0,
                forward_scores: 0.0,
                backward_ffn: 2.0,
                backward_scores: 4.0 / 3.0,
            },
            ActivationStorage::Paper => Self {
                forward_ffn: 3.0,
                forward_scores: 1.5,
                backward_ffn: 4.0,
                backward_scores: 3.0,
            },
            ActivationStorage::Scaled => Self {
                forward_ffn: 4.0,
                forward_scores: 1.5,
                backward_ffn: 3.0,
                backward_scores: 3.0,
            },
        }
    }

    fn forward(&self, d: &Dims, mask_bias: bool) -> u64 {
        // BERT's additive mask bias, materialised at the scores' shape, lives for the whole
        // forward pass (ViT passes a single broadcast zero).
        let mask = if mask_bias { d.a4() } else { 0 };
        mask + max_f(
            self.forward_ffn * d.nf4() as f64,
            self.forward_scores * d.a4() as f64,
        )
    }

    fn backward(&self, d: &Dims) -> u64 {
        max_f(
            self.backward_ffn * d.nf4() as f64,
            self.backward_scores * d.a4() as f64,
        )
    }
}

fn max_f(a: f64, b: f64) -> u64 {
    a.max(b).round() as u64
}

impl PlanRequest {
    /// A request with every unit trainable except the lowest `floor(rate · units)` — the
    /// frozen set `measure-step` uses.
    pub fn with_freeze_rate(
        shape: EncoderShape,
        batch: usize,
        seq: usize,
        storage: ActivationStorage,
        optimizer_state: OptimizerState,
        rate: f64,
    ) -> Self {
        let t = shape.units().len();
        let frozen = (rate * t as f64).floor() as usize;
        Self {
            shape,
            batch,
            seq,
            storage,
            layer_norm_keep: 0.1,
            optimizer_state,
            trainable: (0..t).map(|i| i >= frozen).collect(),
            runtime_overhead: Bytes::ZERO,
            score_snapshots: false,
            accumulated_gradients: false,
            recompute_layers: false,
            adapter_rank: None,
            head_only: false,
        }
    }

    /// Values that train for unit `unit` when it is trainable: its own size, or under
    /// [`PlanRequest::adapter_rank`] its adapter's when it is an encoder-layer matrix.
    fn trained_numel(&self, unit: &UnitSpec) -> u64 {
        let (h, f) = (self.shape.hidden as u64, self.shape.intermediate as u64);
        let fan = match unit.role {
            UnitRole::Query | UnitRole::Key | UnitRole::Value | UnitRole::AttentionOutput => {
                Some(h + h)
            }
            UnitRole::Ffn1 | UnitRole::Ffn2 => Some(h + f),
            _ => None,
        };
        match (self.adapter_rank, fan) {
            (Some(rank), Some(fan)) => rank as u64 * fan,
            _ => unit.numel as u64,
        }
    }

    /// Adapter values alive beside the weights: every trainable unit that is adapted.
    fn adapter_numel(&self, units: &[UnitSpec]) -> u64 {
        if self.adapter_rank.is_none() {
            return 0;
        }
        units
            .iter()
            .zip(&self.trainable)
            .filter(|(u, t)| **t && self.trained_numel(u) != u.numel as u64)
            .map(|(u, _)| self.trained_numel(u))
            .sum()
    }

    fn validate(&self, units: &[UnitSpec]) -> Result<(), PlanError> {
        self.shape.validate().map_err(PlanError::Invalid)?;
        if self.batch == 0 || self.seq == 0 {
            return Err(PlanError::Invalid("batch and seq must be positive".into()));
        }
        let bound = upper_bound_bytes(&self.shape, self.batch, self.seq);
        if bound > MAX_PLANNED_BYTES {
            return Err(PlanError::Invalid(format!(
                "batch {} × seq {} on this shape is beyond the accountant's range (up to \
                 {bound:.1e} bytes; at most {MAX_PLANNED_BYTES:.1e} are planned)",
                self.batch, self.seq
            )));
        }
        if let crate::shape::Family::Bert { max_positions, .. } = self.shape.family
            && self.seq > max_positions
        {
            return Err(PlanError::Invalid(format!(
                "seq {} exceeds max_positions ({max_positions})",
                self.seq
            )));
        }
        if self.trainable.len() != units.len() {
            return Err(PlanError::Invalid(format!(
                "{} trainable flags for {} units",
                self.trainable.len(),
                units.len()
            )));
        }
        if !(0.0..=1.0).contains(&self.layer_norm_keep) {
            return Err(PlanError::Invalid(format!(
                "layer_norm_keep must lie in [0, 1], got {}",
                self.layer_norm_keep
            )));
        }
        Ok(())
    }
}

/// The most bytes a plan may involve (2⁶⁰, an exbibyte): 16 times below where its u64
/// sums could wrap, and far beyond any machine.
pub const MAX_PLANNED_BYTES: f64 = (1u64 << 60) as f64;

/// A generous upper bound (in f64, which cannot overflow here) on every byte count a plan of
/// `shape` at `batch × seq` sums: 16 bytes per parameter (weights, gradients, two moments)
/// plus 64 bytes per activation element of every layer (attention scores included) — more
/// than any storage keeps. Planning is refused above [`MAX_PLANNED_BYTES`], so the exact u64
/// arithmetic never wraps.
fn upper_bound_bytes(shape: &EncoderShape, batch: usize, seq: usize) -> f64 {
    let f = |v: usize| v as f64;
    let (h, i, l) = (f(shape.hidden), f(shape.intermediate), f(shape.layers));
    let tables = match shape.family {
        Family::Bert {
            vocab,
            max_positions,
            token_types,
        } => f(vocab) + f(max_positions) + f(token_types),
        Family::Vit {
            image_size,
            patch_size,
            channels,
            ..
        } => {
            f(channels) * f(patch_size) * f(patch_size)
                + (f(image_size) / f(patch_size)).powi(2)
                + 2.0
        }
    };
    let parameters = l * (4.0 * h * h + 2.0 * h * i + 16.0 * h)
        + tables * h
        + (h + 1.0) * (h + 2.0 * f(shape.num_labels));
    let per_token = f(shape.heads) * f(seq) + i + 16.0 * h;
    16.0 * parameters + 64.0 * f(batch) * f(seq) * per_token * (l + 1.0)
}

/// Predicts the peak memory of the step `request` describes.
pub fn plan(request: &PlanRequest) -> Result<Plan, PlanError> {
    let shape = &request.shape;
    // Before `units()` multiplies the dimensions.
    shape.validate().map_err(PlanError::Invalid)?;
    let units = shape.units();
    request.validate(&units)?;
    let trainable = &request.trainable;
    let d = Dims::new(shape, request.batch, request.seq);
    let saved: Saved = saved(
        shape,
        &units,
        &d,
        request.storage,
        request.layer_norm_keep,
        trainable,
    );
    let workspace = Workspace::of(request.storage, shape.attention_dropout);

    // Resident.
    let bias_numel = shape.always_trained_numel() as u64;
    // Head-only: the head's own bias and the classifier's are the only ones that train.
    let trained_bias_numel = if request.head_only {
        (shape.hidden + shape.num_labels) as u64
    } else {
        bias_numel
    };
    let adapters = request.adapter_numel(&units);
    let parameters = F32 * (shape.parameters() as u64 + adapters);
    let trained_numel: Vec<u64> = units
        .iter()
        .zip(trainable)
        .map(|(u, t)| if *t { request.trained_numel(u) } else { 0 })
        .collect();
    let trained_total: u64 = trained_numel.iter().sum();
    let moments_numel = match request.optimizer_state {
        OptimizerState::Keep => shape.parameters() as u64 + adapters,
        OptimizerState::Drop => trained_bias_numel + trained_total,
    };
    let snapshots = if request.score_snapshots {
        F32 * trained_total
    } else {
        0
    };
    let optimizer_state = 2 * F32 * moments_numel + snapshots;
    let resident = parameters + optimizer_state - snapshots;

    // Gradients: every trainable unit (its adapter, where adapted), every bias and β.
    let unit_grad = |i: usize| F32 * trained_numel[i];
    // Per layer: Q/K/V/O biases, FFN biases, two LayerNorm β.
    let layer_bias_numel = (4 * shape.hidden + shape.intermediate + 3 * shape.hidden) as u64;
    let grads_total = (0..units.len()).map(unit_grad).sum::<u64>() + F32 * trained_bias_numel;
    // Gradient accumulation: the running sum of earlier micro-batches' gradients.
    let accumulated = if request.accumulated_gradients {
        grads_total
    } else {
        0
    };

    let dynamic_of_layer = |l: usize| -> u64 {
        units
            .iter()
            .enumerate()
            .filter(|(_, u)| u.layer == Some(l))
            .map(|(i, _)| saved.per_unit[i])
            .sum()
    };
    let dynamic_outside = |role_filter: &dyn Fn(UnitRole) -> bool| -> u64 {
        units
            .iter()
            .enumerate()
            .filter(|(_, u)| u.layer.is_none() && role_filter(u.role))
            .map(|(i, _)| saved.per_unit[i])
            .sum()
    };
    let dynamic_embeddings =
        dynamic_outside(&|r| matches!(r, UnitRole::EmbeddingTable | UnitRole::EmbeddingNorm));
    let dynamic_total: u64 = saved.per_unit.iter().sum();
    let static_total = saved.static_total();

    let mut moments: Vec<(PeakPhase, Categories)> = Vec::new();
    let cats = |grads: u64, dynamic: u64, stat: u64, transient: u64| Categories {
        parameters: Bytes(parameters),
        gradients: Bytes(grads),
        optimizer_state: Bytes(optimizer_state),
        dynamic_activations: Bytes(dynamic),
        static_activations: Bytes(stat),
        transient_workspace: Bytes(transient),
    };

    // Forward: everything saved, plus the mask bias and the last layer's busiest kernel.
    // Recomputing layers, the head's saved state and every layer's input instead.
    let recompute = request.recompute_layers;
    let layer_inputs = |n: usize| if recompute { n as u64 * d.nh4() } else { 0 };
    let (forward_dynamic, forward_static) = if request.head_only {
        let head =
            dynamic_outside(&|r| !matches!(r, UnitRole::EmbeddingTable | UnitRole::EmbeddingNorm));
        (head, saved.head)
    } else if recompute {
        let head =
            dynamic_outside(&|r| !matches!(r, UnitRole::EmbeddingTable | UnitRole::EmbeddingNorm));
        (head, saved.head + layer_inputs(shape.layers))
    } else {
        (dynamic_total, static_total)
    };
    moments.push((
        PeakPhase::Forward,
        cats(
            accumulated,
            forward_dynamic,
            forward_static,
            workspace.forward(&d, !shape.is_vit()),
        ),
    ));

    // Backward, layer by layer from the top: the head's gradients are done (its saved
    // state is released), layers above `l` have released theirs and hold gradients.
    let head_grads: u64 = units
        .iter()
        .enumerate()
        .filter(|(_, u)| {
            matches!(
                u.role,
                UnitRole::Pooler | UnitRole::Classifier | UnitRole::FinalNorm
            )
        })
        .map(|(i, _)| unit_grad(i))
        .sum::<u64>()
        + F32 * (shape.hidden + shape.num_labels) as u64;
    let mut grads_above = head_grads;
    // Recomputing, a layer's forward kernels run again in backward, and the mask bias stays
    // for the whole backward pass.
    let backward_transient = if recompute {
        let mask = if shape.is_vit() { 0 } else { d.a4() };
        workspace
            .forward(&d, !shape.is_vit())
            .max(mask + workspace.backward(&d))
    } else {
        workspace.backward(&d)
    };
    let encoder_layers = if request.head_only { 0 } else { shape.layers };
    for l in (0..encoder_layers).rev() {
        let (dynamic_below, static_below) = if recompute {
            // Layer l re-run: its saved state, the inputs of layers ≤ l and the gradient
            // at its output.
            (dynamic_of_layer(l), saved.layers[l] + layer_inputs(l + 2))
        } else {
            (
                dynamic_embeddings + (0..=l).map(dynamic_of_layer).sum::<u64>(),
                saved.embeddings + saved.layers[..=l].iter().sum::<u64>(),
            )
        };
        moments.push((
            PeakPhase::Backward(l),
            cats(
                accumulated + grads_above,
                dynamic_below,
                static_below,
                backward_transient,
            ),
        ));
        grads_above += units
            .iter()
            .enumerate()
            .filter(|(_, u)| u.layer == Some(l))
            .map(|(i, _)| unit_grad(i))
            .sum::<u64>()
            + F32 * layer_bias_numel;
    }

    // Embeddings: a trainable table's gradient is assembled beside the finished ones, with
    // the incoming [tokens, hidden] gradient.
    let largest_table = units
        .iter()
        .enumerate()
        .filter(|(i, u)| u.role == UnitRole::EmbeddingTable && trainable[*i])
        .map(|(_, u)| F32 * u.numel as u64)
        .max();
    let embedding_transient = largest_table.map_or(0, |t| t + d.nh4());
    let (embeddings_dynamic, embeddings_static) = if recompute {
        (dynamic_embeddings, saved.embeddings)
    } else {
        (0, 0)
    };
    moments.push((
        PeakPhase::Embeddings,
        cats(
            accumulated + grads_total,
            embeddings_dynamic,
            embeddings_static,
            embedding_transient,
        ),
    ));

    // Update: one temporary of the largest trained tensor.
    let largest_trained = units
        .iter()
        .enumerate()
        .filter(|(i, _)| trainable[*i])
        .map(|(i, _)| trained_numel[i])
        .chain([shape.largest_always_trained() as u64])
        .max()
        .unwrap_or(0);
    moments.push((
        PeakPhase::Update,
        cats(grads_total, 0, 0, F32 * largest_trained),
    ));

    let phase_peak = |pred: &dyn Fn(&PeakPhase) -> bool| -> Bytes {
        moments
            .iter()
            .filter(|(p, _)| pred(p))
            .map(|(_, c)| c.total() + request.runtime_overhead)
            .max()
            .unwrap_or(Bytes::ZERO)
    };
    let (peak_phase, categories) = moments
        .iter()
        .copied()
        .max_by_key(|(_, c)| c.total())
        .expect("at least the forward moment");

    let unit_bytes = units
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let has_moments = request.optimizer_state == OptimizerState::Keep || trainable[i];
            UnitBytes {
                name: u.name.clone(),
                trainable: trainable[i],
                parameters: Bytes(F32 * u.numel as u64),
                gradient: Bytes(unit_grad(i)),
                optimizer_state: Bytes(if has_moments {
                    2 * F32
                        * if trainable[i] {
                            trained_numel[i]
                        } else {
                            u.numel as u64
                        }
                } else {
                    0
                }),
                dynamic_activations: Bytes(saved.per_unit[i]),
            }
        })
        .collect();

    Ok(Plan {
        total_peak_bytes: categories.total() + request.runtime_overhead,
        categories,
        runtime_overhead: request.runtime_overhead,
        peak_phase,
        resident_bytes: Bytes(resident) + request.runtime_overhead,
        saved_activation_bytes: Bytes(dynamic_total + static_total),
        forward_peak_bytes: phase_peak(&|p| *p == PeakPhase::Forward),
        backward_peak_bytes: phase_peak(&|p| {
            matches!(p, PeakPhase::Backward(_) | PeakPhase::Embeddings)
        }),
        update_peak_bytes: phase_peak(&|p| *p == PeakPhase::Update),
        trainable_units: trainable.iter().filter(|t| **t).count(),
        total_units: units.len(),
        units: unit_bytes,
    })
}
