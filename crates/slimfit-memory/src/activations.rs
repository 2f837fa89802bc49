//! Bytes each op of the encoder saves for its backward pass, from the op's own definition.
//!
//! Counted in unique buffers: a tensor saved by several ops (the layer input saved by the
//! Q, K and V projections) counts once; a view (reshape, transpose) costs nothing. "Static"
//! bytes are saved whatever is frozen — every op stays on the gradient path because biases
//! and LayerNorm β always train; "dynamic" bytes are saved only because a unit trains (the
//! input of a trainable projection, the x̂ of a trainable γ), and are charged to that unit
//! (to the first trainable unit of a group that shares them).

use crate::shape::{EncoderShape, Family, UnitRole, UnitSpec};
use crate::storage::ActivationStorage;

/// Batch dimensions of one step, with the derived element counts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    /// Sequences.
    pub batch: u64,
    /// Tokens in the batch (`batch · seq`).
    pub tokens: u64,
    /// Hidden width.
    pub hidden: u64,
    /// Feed-forward width.
    pub ffn: u64,
    /// Attention-score rows (`batch · heads · seq`).
    pub score_rows: u64,
    /// Attention-score elements (`batch · heads · seq²`).
    pub scores: u64,
    /// Head width (`hidden / heads`).
    pub head_dim: u64,
}

impl Dims {
    pub fn new(shape: &EncoderShape, batch: usize, seq: usize) -> Self {
        let (b, t, h) = (batch as u64, seq as u64, shape.heads as u64);
        Self {
            batch: b,
            tokens: b * t,
            hidden: shape.hidden as u64,
            ffn: shape.intermediate as u64,
            score_rows: b * h * t,
            scores: b * h * t * t,
            head_dim: (shape.hidden / shape.heads) as u64,
        }
    }

    /// fp32 bytes of a `[tokens, hidden]` tensor.
    pub fn nh4(&self) -> u64 {
        4 * self.tokens * self.hidden
    }

    /// fp32 bytes of a `[tokens, ffn]` tensor.
    pub fn nf4(&self) -> u64 {
        4 * self.tokens * self.ffn
    }

    /// fp32 bytes of a `[batch, heads, seq, seq]` tensor.
    pub fn a4(&self) -> u64 {
        4 * self.scores
    }
}

/// Saved bytes of one step: static per block, dynamic per unit.
#[derive(Debug, Clone)]
pub(crate) struct Saved {
    /// Embedding block, static.
    pub embeddings: u64,
    /// Each encoder layer, static.
    pub layers: Vec<u64>,
    /// Pooler and head, static.
    pub head: u64,
    /// Per unit (index of `EncoderShape::units`), dynamic.
    pub per_unit: Vec<u64>,
}

impl Saved {
    /// Static bytes of the whole model.
    pub fn static_total(&self) -> u64 {
        self.embeddings + self.layers.iter().sum::<u64>() + self.head
    }
}

/// A dropout mask as stored: fp32 Bernoulli draws for burn's dropout, one byte (paper) or
/// one bit (scaled, rows padded to whole bytes) per value.
fn mask(rows: u64, cols: u64, storage: ActivationStorage) -> u64 {
    match storage {
        ActivationStorage::Exact => 4 * rows * cols,
        ActivationStorage::Paper => rows * cols,
        ActivationStorage::Scaled => rows * cols.div_ceil(8),
    }
}

/// x̂ of a LayerNorm whose γ is frozen: top-k values (fp32) and i16 column indices (paper),
/// or int8 codes with one fp32 scale per row (scaled).
fn frozen_norm(d: &Dims, storage: ActivationStorage, keep: f64) -> u64 {
    match storage {
        ActivationStorage::Exact => 0,
        ActivationStorage::Paper => {
            let n = d.hidden;
            let k = ((keep * n as f64).ceil() as u64).clamp(1, n.saturating_sub(1).max(1));
            let index = if n <= i16::MAX as u64 { 2 } else { 4 };
            d.tokens * k * (4 + index)
        }
        ActivationStorage::Scaled => d.tokens * d.hidden + 4 * d.tokens,
    }
}

/// Charges `bytes` to the first trainable unit among `group`, if any trains.
fn charge(per_unit: &mut [u64], trainable: &[bool], group: &[usize], bytes: u64) {
    if let Some(&i) = group.iter().find(|&&i| trainable[i]) {
        per_unit[i] += bytes;
    }
}

/// Saved bytes for `units` (from `shape.units()`) with `trainable[i]` per unit.
pub(crate) fn saved(
    shape: &EncoderShape,
    units: &[UnitSpec],
    d: &Dims,
    storage: ActivationStorage,
    layer_norm_keep: f64,
    trainable: &[bool],
) -> Saved {
    use ActivationStorage::*;
    let (nh4, nf4) = (d.nh4(), d.nf4());
    let mut per_unit = vec![0u64; units.len()];
    let find = |role: UnitRole, layer: Option<usize>| -> Vec<usize> {
        units
            .iter()
            .enumerate()
            .filter(|(_, u)| u.role == role && u.layer == layer)
            .map(|(i, _)| i)
            .collect()
    };

    let hidden_mask = if shape.hidden_dropout {
        mask(d.tokens, d.hidden, storage)
    } else {
        0
    };
    let embeddings = match shape.family {
        Family::Bert { .. } => {
            bert_embeddings(&mut per_unit, units, trainable, d, storage, layer_norm_keep)
        }
        Family::Vit {
            patch_size,
            channels,
            ..
        } => {
            // The patch projection keeps its flattened-patch input while it trains; the class
            // token and positions are added (nothing kept).
            let patches = d.tokens - d.batch;
            let projection = find(UnitRole::PatchProjection, None);
            charge(
                &mut per_unit,
                trainable,
                &projection,
                4 * patches * (channels * patch_size * patch_size) as u64,
            );
            0
        }
    } + hidden_mask;
    let mut layers = Vec::with_capacity(shape.layers);
    for l in 0..shape.layers {
        let at = |role| find(role, Some(l));
        let qkv: Vec<usize> = [UnitRole::Query, UnitRole::Key, UnitRole::Value]
            .into_iter()
            .flat_map(at)
            .collect();
        let norms = [at(UnitRole::AttentionNorm), at(UnitRole::OutputNorm)];
        let mut layer = 0;
        match storage {
            Exact => {
                // Q, K, V outputs (kept by Q·Kᵀ and P·V); softmax's shifted scores,
                // exponentials and row sums; the attention-dropout draws and the dropped
                // probabilities (kept by P·V). The hidden dropout draws after attention and
                // after the FFN; each residual LayerNorm keeps x − mean twice (square,
                // divide) and its per-row statistics; GELU keeps its input.
                let score_buffers = if shape.attention_dropout { 4 } else { 3 };
                layer += 3 * nh4 + score_buffers * d.a4() + 4 * d.score_rows;
                layer += 2 * hidden_mask;
                layer += 2 * (2 * nh4 + 8 * d.tokens);
                layer += nf4;
                charge(&mut per_unit, trainable, &qkv, nh4);
                charge(
                    &mut per_unit,
                    trainable,
                    &at(UnitRole::AttentionOutput),
                    nh4,
                );
                for norm in &norms {
                    charge(&mut per_unit, trainable, norm, nh4);
                }
                charge(&mut per_unit, trainable, &at(UnitRole::Ffn1), nh4);
                charge(&mut per_unit, trainable, &at(UnitRole::Ffn2), nf4);
            }
            Paper | Scaled => {
                // Q, K, V and P in 8 bits (scaled adds one fp32 scale per row).
                let row_scale = if storage == Scaled {
                    4 * d.score_rows
                } else {
                    0
                };
                layer += 3 * (d.tokens * d.hidden + row_scale) + d.scores + row_scale;
                // Dropout masks: attention's on V (paper, as the reference) or on P (scaled,
                // as BERT), after attention, after the FFN.
                if shape.attention_dropout {
                    layer += match storage {
                        Scaled => mask(d.score_rows, d.scores / d.score_rows, storage),
                        _ => mask(d.score_rows, d.head_dim, storage),
                    };
                }
                layer += 2 * hidden_mask;
                // GELU: the input in 4 bits (paper), GELU′ in 8 bits (scaled).
                layer += if storage == Scaled {
                    d.tokens * d.ffn
                } else {
                    d.tokens * d.ffn.div_ceil(2)
                };
                // LayerNorms: 1/σ per row, x̂ compressed while γ is frozen, fp32 while it
                // trains.
                let frozen = frozen_norm(d, storage, layer_norm_keep);
                for norm in &norms {
                    layer += 4 * d.tokens + frozen;
                    charge(&mut per_unit, trainable, norm, nh4 - frozen);
                }
                charge(&mut per_unit, trainable, &qkv, nh4);
                charge(
                    &mut per_unit,
                    trainable,
                    &at(UnitRole::AttentionOutput),
                    nh4,
                );
                charge(&mut per_unit, trainable, &at(UnitRole::Ffn1), nh4);
                let ffn2 = d.tokens * d.ffn + if storage == Scaled { 4 * d.tokens } else { 0 };
                charge(&mut per_unit, trainable, &at(UnitRole::Ffn2), ffn2);
            }
        }
        // DINOv2's layer scales (plain burn multiplies) keep their fp32 input while λ trains.
        charge(&mut per_unit, trainable, &at(UnitRole::AttentionScale), nh4);
        charge(&mut per_unit, trainable, &at(UnitRole::OutputScale), nh4);
        layers.push(layer);
    }

    let head = match shape.family {
        Family::Bert { .. } => {
            // Pooler and head run plain burn ops: tanh keeps its output, the head's dropout
            // its draws; a trainable pooler keeps its [CLS] input.
            charge(
                &mut per_unit,
                trainable,
                &find(UnitRole::Pooler, None),
                4 * d.batch * d.hidden,
            );
            8 * d.batch * d.hidden
        }
        Family::Vit { dinov2, .. } => {
            // Final LayerNorm, then the classifier keeps its features while it trains.
            let final_norm = find(UnitRole::FinalNorm, None);
            let features = if dinov2 { 2 } else { 1 } * d.hidden;
            charge(
                &mut per_unit,
                trainable,
                &find(UnitRole::Classifier, None),
                4 * d.batch * features,
            );
            match storage {
                Exact => {
                    charge(&mut per_unit, trainable, &final_norm, nh4);
                    2 * nh4 + 8 * d.tokens
                }
                Paper | Scaled => {
                    let frozen = frozen_norm(d, storage, layer_norm_keep);
                    charge(&mut per_unit, trainable, &final_norm, nh4 - frozen);
                    4 * d.tokens + frozen
                }
            }
        }
    };
    Saved {
        embeddings,
        layers,
        head,
        per_unit,
    }
}

/// BERT's embedding block: gathers (+ the i64 ids each trainable table keeps) and LayerNorm;
/// returns its static bytes (the dropout mask is added by the caller).
fn bert_embeddings(
    per_unit: &mut [u64],
    units: &[UnitSpec],
    trainable: &[bool],
    d: &Dims,
    storage: ActivationStorage,
    layer_norm_keep: f64,
) -> u64 {
    use ActivationStorage::*;
    let nh4 = d.nh4();
    let find = |role: UnitRole| -> Vec<usize> {
        units
            .iter()
            .enumerate()
            .filter(|(_, u)| u.role == role && u.layer.is_none())
            .map(|(i, _)| i)
            .collect()
    };
    let tables = find(UnitRole::EmbeddingTable);
    let norm = find(UnitRole::EmbeddingNorm);
    let tables_train = tables.iter().any(|&i| trainable[i]);
    let norm_trains = norm.iter().any(|&i| trainable[i]);
    for &i in &tables {
        if trainable[i] {
            per_unit[i] += 8 * d.tokens;
        }
    }
    match storage {
        Exact => {
            // burn's LayerNorm ops keep x − mean twice (square, divide) once the input is
            // on the gradient path, and x̂ for a trainable γ.
            if tables_train {
                charge(per_unit, trainable, &tables, 2 * nh4 + 8 * d.tokens);
            }
            charge(per_unit, trainable, &norm, nh4);
        }
        Paper | Scaled => {
            if tables_train {
                charge(per_unit, trainable, &tables, 4 * d.tokens);
            }
            if norm_trains {
                charge(per_unit, trainable, &norm, nh4);
            } else if tables_train {
                charge(
                    per_unit,
                    trainable,
                    &tables,
                    frozen_norm(d, storage, layer_norm_keep),
                );
            }
        }
    }
    0
}
