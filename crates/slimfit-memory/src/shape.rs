//! What the accountant knows about a model: its shape and its freezable units, nothing more.
//!
//! The unit list mirrors, name for name and in the same order, the units the models crate
//! builds for a sequence-classification BERT (embedding tables, embedding LayerNorm γ, eight
//! weight tensors per layer, pooler, classifier), so that a frozen set chosen by the
//! scheduler over the model's units can be handed to the accountant unchanged.

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
    /// Word-piece vocabulary.
    pub vocab: usize,
    /// Rows of the position table.
    pub max_positions: usize,
    /// Rows of the token-type table.
    pub token_types: usize,
    /// Outputs of the classification head.
    pub num_labels: usize,
}

impl EncoderShape {
    /// Checks that the shape describes a real encoder.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("hidden", self.hidden),
            ("heads", self.heads),
            ("intermediate", self.intermediate),
            ("layers", self.layers),
            ("vocab", self.vocab),
            ("max_positions", self.max_positions),
            ("token_types", self.token_types),
            ("num_labels", self.num_labels),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
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
        let mut units = Vec::with_capacity(6 + 8 * self.layers);
        let mut push = |name: String, role, layer, numel| {
            units.push(UnitSpec {
                name,
                role,
                layer,
                numel,
            })
        };
        use UnitRole::*;
        for (table, rows) in [
            ("word_embeddings", self.vocab),
            ("position_embeddings", self.max_positions),
            ("token_type_embeddings", self.token_types),
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
            push(
                format!("{p}.attention.self.query.weight"),
                Query,
                layer,
                h * h,
            );
            push(format!("{p}.attention.self.key.weight"), Key, layer, h * h);
            push(
                format!("{p}.attention.self.value.weight"),
                Value,
                layer,
                h * h,
            );
            push(
                format!("{p}.attention.output.dense.weight"),
                AttentionOutput,
                layer,
                h * h,
            );
            push(
                format!("{p}.attention.output.LayerNorm.weight"),
                AttentionNorm,
                layer,
                h,
            );
            push(format!("{p}.intermediate.dense.weight"), Ffn1, layer, h * f);
            push(format!("{p}.output.dense.weight"), Ffn2, layer, f * h);
            push(format!("{p}.output.LayerNorm.weight"), OutputNorm, layer, h);
        }
        push("pooler.dense.weight".into(), Pooler, None, h * h);
        push(
            "classifier.weight".into(),
            Classifier,
            None,
            self.num_labels * h,
        );
        units
    }

    /// Scalars of the parameters that are not units (biases and LayerNorm β): they always
    /// train.
    pub fn always_trained_numel(&self) -> usize {
        let (h, f) = (self.hidden, self.intermediate);
        // Embedding LN β; per layer Q/K/V/O biases, FFN biases and two LN β; pooler bias;
        // classifier bias.
        h + self.layers * (4 * h + f + h + 2 * h) + h + self.num_labels
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
        EncoderShape {
            hidden: 768,
            heads: 12,
            intermediate: 3072,
            layers: 12,
            vocab: 30522,
            max_positions: 512,
            token_types: 2,
            num_labels: 2,
        }
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
