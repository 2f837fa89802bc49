//! What the accountant knows about a model: its shape and its freezable units, nothing more.
//!
//! The unit list mirrors, name for name and in the same order, the units the models crate
//! builds for a sequence-classification BERT (embedding tables, embedding LayerNorm γ, eight
//! weight tensors per layer, pooler, classifier) and for an image-classification ViT/DINOv2
//! (patch projection, class token, position table, per block two LayerNorm γ, Q/K/V/out,
//! FFN1/FFN2 and DINOv2's layer scales, final LayerNorm γ, classifier), so that a frozen set
//! chosen by the scheduler over the model's units can be handed to the accountant unchanged.

use serde::Serialize;

/// The role of a unit in the encoder: it decides which saved activation the unit's training
/// costs (SLIMFIT.md §4) and which gradient it produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitRole {
    /// A word, position or token-type embedding table.
    EmbeddingTable,
    /// The embedding LayerNorm γ.
    EmbeddingNorm,
    /// Attention query projection.
    Query,
    /// Attention key projection.
    Key,
    /// Attention value projection.
    Value,
    /// Attention output projection.
    AttentionOutput,
    /// LayerNorm γ after attention.
    AttentionNorm,
    /// First feed-forward projection (H → F).
    Ffn1,
    /// Second feed-forward projection (F → H).
    Ffn2,
    /// LayerNorm γ after the feed-forward block.
    OutputNorm,
    /// The pooler projection.
    Pooler,
    /// The task head.
    Classifier,
    /// ViT: the patch projection (a linear map of flattened patches).
    PatchProjection,
    /// ViT: the class token.
    ClassToken,
    /// ViT: the position table.
    PositionTable,
    /// ViT: the layer scale after attention (DINOv2).
    AttentionScale,
    /// ViT: the layer scale after the FFN (DINOv2).
    OutputScale,
    /// ViT: the LayerNorm γ after the last block.
    FinalNorm,
}

/// What kind of encoder: post-LN BERT over tokens or pre-LN ViT over image patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "family")]
pub enum Family {
    /// BERT with word, position and token-type tables, a pooler and a classifier.
    Bert {
        /// Word-piece vocabulary.
        vocab: usize,
        /// Rows of the position table.
        max_positions: usize,
        /// Rows of the token-type table.
        token_types: usize,
    },
    /// ViT (Dosovitskiy et al.) or DINOv2 (layer scale; its classifier reads the class token
    /// and the mean patch token).
    Vit {
        /// Image side the position table was trained at (pixels).
        image_size: usize,
        /// Patch side (pixels).
        patch_size: usize,
        /// Input channels.
        channels: usize,
        /// DINOv2: layer scale λ after each branch, classifier on `[CLS ; mean patch]`.
        dinov2: bool,
    },
}

/// One freezable weight tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitSpec {
    /// Hugging Face name, e.g. `encoder.layer.3.attention.self.query.weight`.
    pub name: String,
    /// Role in the encoder.
    pub role: UnitRole,
    /// Encoder layer, when the unit belongs to one.
    pub layer: Option<usize>,
    /// Number of scalars.
    pub numel: usize,
}

/// The largest size of any one dimension of a shape the accountant plans (2²⁴).
pub const MAX_DIM: usize = 1 << 24;

/// A post-LN BERT encoder with a pooler and a classification head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncoderShape {
    /// Hidden width H.
    pub hidden: usize,
    /// Attention heads h.
    pub heads: usize,
    /// Feed-forward width F.
    pub intermediate: usize,
    /// Encoder layers L.
    pub layers: usize,
    /// Outputs of the classification head.
    pub num_labels: usize,
    /// Dropout after attention and after the FFN (p > 0): its masks are saved.
    pub hidden_dropout: bool,
    /// Dropout on attention probabilities (p > 0).
    pub attention_dropout: bool,
    /// BERT or ViT, with the family's embedding sizes.
    pub family: Family,
}

impl EncoderShape {
    /// bert-base-uncased with a 2-way classifier.
    pub fn bert_base() -> Self {
        Self {
            hidden: 768,
            heads: 12,
            intermediate: 3072,
            layers: 12,
            num_labels: 2,
            hidden_dropout: true,
            attention_dropout: true,
            family: Family::Bert {
                vocab: 30522,
                max_positions: 512,
                token_types: 2,
            },
        }
    }

    /// ViT-B/16 (google/vit-base-patch16-*) at `image_size` pixels, no dropout.
    pub fn vit_base_16(image_size: usize, num_labels: usize) -> Self {
        Self {
            hidden: 768,
            heads: 12,
            intermediate: 3072,
            layers: 12,
            num_labels,
            hidden_dropout: false,
            attention_dropout: false,
            family: Family::Vit {
                image_size,
                patch_size: 16,
                channels: 3,
                dinov2: false,
            },
        }
    }

    /// Checks that the shape describes a real encoder.
    pub fn validate(&self) -> Result<(), String> {
        let mut positive = vec![
            ("hidden", self.hidden),
            ("heads", self.heads),
            ("intermediate", self.intermediate),
            ("layers", self.layers),
            ("num_labels", self.num_labels),
        ];
        match self.family {
            Family::Bert {
                vocab,
                max_positions,
                token_types,
            } => positive.extend([
                ("vocab", vocab),
                ("max_positions", max_positions),
                ("token_types", token_types),
            ]),
            Family::Vit {
                image_size,
                patch_size,
                channels,
                ..
            } => positive.extend([
                ("image_size", image_size),
                ("patch_size", patch_size),
                ("channels", channels),
            ]),
        }
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        // Far beyond any model, and small enough that no count or byte total of a plan
        // can overflow 64 bits (see `PlanRequest`'s bound on batch × seq).
        if let Some((name, v)) = positive.iter().find(|(_, v)| *v > MAX_DIM) {
            return Err(format!(
                "{name} {v} is beyond the accountant's range (≤ {MAX_DIM})"
            ));
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(format!(
                "hidden ({}) is not divisible by heads ({})",
                self.hidden, self.heads
            ));
        }
        Ok(())
    }

    /// The freezable units, in the models crate's order.
    pub fn units(&self) -> Vec<UnitSpec> {
        let (h, f) = (self.hidden, self.intermediate);
        let mut units = Vec::with_capacity(8 + 10 * self.layers);
        let mut push = |name: String, role, layer, numel| {
            units.push(UnitSpec {
                name,
                role,
                layer,
                numel,
            })
        };
        use UnitRole::*;
        match self.family {
            Family::Bert {
                vocab,
                max_positions,
                token_types,
            } => {
                for (table, rows) in [
                    ("word_embeddings", vocab),
                    ("position_embeddings", max_positions),
                    ("token_type_embeddings", token_types),
                ] {
                    push(
                        format!("embeddings.{table}.weight"),
                        EmbeddingTable,
                        None,
                        rows * h,
                    );
                }
                push("embeddings.LayerNorm.weight".into(), EmbeddingNorm, None, h);
                for l in 0..self.layers {
                    let p = format!("encoder.layer.{l}");
                    let layer = Some(l);
                    let a = format!("{p}.attention.self");
                    push(format!("{a}.query.weight"), Query, layer, h * h);
                    push(format!("{a}.key.weight"), Key, layer, h * h);
                    push(format!("{a}.value.weight"), Value, layer, h * h);
                    let o = format!("{p}.attention.output");
                    push(format!("{o}.dense.weight"), AttentionOutput, layer, h * h);
                    push(format!("{o}.LayerNorm.weight"), AttentionNorm, layer, h);
                    push(format!("{p}.intermediate.dense.weight"), Ffn1, layer, h * f);
                    push(format!("{p}.output.dense.weight"), Ffn2, layer, f * h);
                    push(format!("{p}.output.LayerNorm.weight"), OutputNorm, layer, h);
                }
                push("pooler.dense.weight".into(), Pooler, None, h * h);
            }
            Family::Vit {
                image_size,
                patch_size,
                channels,
                dinov2,
            } => {
                let grid = image_size / patch_size;
                push(
                    "embeddings.patch_embeddings.projection.weight".into(),
                    PatchProjection,
                    None,
                    h * channels * patch_size * patch_size,
                );
                push("embeddings.cls_token".into(), ClassToken, None, h);
                push(
                    "embeddings.position_embeddings".into(),
                    PositionTable,
                    None,
                    (1 + grid * grid) * h,
                );
                let (norm1, norm2, fc1, fc2) = if dinov2 {
                    ("norm1", "norm2", "mlp.fc1", "mlp.fc2")
                } else {
                    (
                        "layernorm_before",
                        "layernorm_after",
                        "intermediate.dense",
                        "output.dense",
                    )
                };
                for l in 0..self.layers {
                    let p = format!("encoder.layer.{l}");
                    let layer = Some(l);
                    push(format!("{p}.{norm1}.weight"), AttentionNorm, layer, h);
                    let a = format!("{p}.attention.attention");
                    push(format!("{a}.query.weight"), Query, layer, h * h);
                    push(format!("{a}.key.weight"), Key, layer, h * h);
                    push(format!("{a}.value.weight"), Value, layer, h * h);
                    push(
                        format!("{p}.attention.output.dense.weight"),
                        AttentionOutput,
                        layer,
                        h * h,
                    );
                    if dinov2 {
                        push(
                            format!("{p}.layer_scale1.lambda1"),
                            AttentionScale,
                            layer,
                            h,
                        );
                    }
                    push(format!("{p}.{norm2}.weight"), OutputNorm, layer, h);
                    push(format!("{p}.{fc1}.weight"), Ffn1, layer, h * f);
                    push(format!("{p}.{fc2}.weight"), Ffn2, layer, f * h);
                    if dinov2 {
                        push(format!("{p}.layer_scale2.lambda1"), OutputScale, layer, h);
                    }
                }
                push("layernorm.weight".into(), FinalNorm, None, h);
            }
        }
        let features = match self.family {
            Family::Vit { dinov2: true, .. } => 2 * h,
            _ => h,
        };
        push(
            "classifier.weight".into(),
            Classifier,
            None,
            self.num_labels * features,
        );
        units
    }

    /// Tokens per sequence for ViT at `image_size` pixels (class token + patches); `None` for
    /// BERT, whose sequence length is an input.
    pub fn image_tokens(&self, image_size: usize) -> Option<usize> {
        match self.family {
            Family::Vit { patch_size, .. } => {
                let grid = image_size / patch_size;
                Some(1 + grid * grid)
            }
            Family::Bert { .. } => None,
        }
    }

    /// Scalars of the parameters that are not units (biases and LayerNorm β): they always
    /// train.
    pub fn always_trained_numel(&self) -> usize {
        let (h, f) = (self.hidden, self.intermediate);
        // Per layer Q/K/V/O biases, FFN biases and two LN β; classifier bias; BERT: embedding
        // LN β and pooler bias; ViT: patch-projection bias and final LN β.
        self.layers * (4 * h + f + h + 2 * h) + 2 * h + self.num_labels
    }

    /// Whether this is a ViT.
    pub fn is_vit(&self) -> bool {
        matches!(self.family, Family::Vit { .. })
    }

    /// The largest always-trained parameter tensor (a bias or β), in scalars.
    pub fn largest_always_trained(&self) -> usize {
        self.intermediate.max(self.hidden)
    }

    /// Scalars of the whole model.
    pub fn parameters(&self) -> usize {
        self.units().iter().map(|u| u.numel).sum::<usize>() + self.always_trained_numel()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn bert_base() -> EncoderShape {
        EncoderShape::bert_base()
    }

    #[test]
    fn vit_base_has_the_published_size() {
        // google/vit-base-patch16-224: 85 798 656 parameters without a head (86.6 M with the
        // 1000-way head of 769 000).
        let vit = EncoderShape::vit_base_16(224, 1000);
        assert_eq!(vit.parameters(), 85_798_656 + 769_000);
        assert_eq!(vit.units().len(), 3 + 12 * 8 + 2);
        assert_eq!(vit.image_tokens(384), Some(577));
    }

    #[test]
    fn bert_base_has_the_published_size() {
        // bert-base-uncased: 109 482 240 parameters without a head; the 2-label head adds
        // 768·2 + 2.
        assert_eq!(bert_base().parameters(), 109_482_240 + 1_538);
        assert_eq!(bert_base().units().len(), 102);
    }

    #[test]
    fn rejects_indivisible_heads() {
        let mut s = bert_base();
        s.heads = 5;
        assert!(s.validate().unwrap_err().contains("divisible"));
        s.heads = 0;
        assert!(s.validate().unwrap_err().contains("heads"));
    }
}
