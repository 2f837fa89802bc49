//! BERT, as Hugging Face `BertModel` computes it.
//!
//! Devlin, Chang, Lee, Toutanova — "BERT: Pre-training of Deep Bidirectional Transformers for
//! Language Understanding", NAACL 2019 (arXiv 1810.04805).
//!
//! Post-LN encoder, erf GELU, tanh pooler. Every field mirrors a Hugging Face module so that a
//! checkpoint tensor name (`encoder.layer.3.attention.self.query.weight`) is also the path to
//! the parameter here; each weight tensor is a separate field because SlimFit freezes them
//! one by one.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::module::embedding;
use burn::tensor::{Int, Tensor, backend::Backend};

use crate::config::BertConfig;
use crate::dense::Dense;
use crate::layer_norm::LayerNorm;
use crate::loader::{Init, LoadError, ParamSource};
use crate::slim::{self, Compression, CompressionConfig, SlimOps};
use crate::units::{HasUnits, Unit, UnitKind, UnitList};

/// Added to attention scores of padding positions: small enough that `exp` underflows to 0,
/// far from overflowing f32.
const MASK_BIAS: f32 = -1.0e9;

/// Hidden-state dropout: burn's (fp32 mask) on the exact path, SlimFit's one-byte mask
/// otherwise. Identity outside autodiff, as burn's.
pub(crate) fn hidden_dropout<B: SlimOps, const D: usize>(
    dropout: &Dropout,
    x: Tensor<B, D>,
    config: &CompressionConfig,
) -> Tensor<B, D> {
    if config.is_exact() || !B::ad_enabled(&x.device()) {
        dropout.forward(x)
    } else {
        slim::dropout(x, dropout.prob, config.dropout_mask)
    }
}

/// `Some(mode)` (SlimFit's linear op) unless the whole configuration is exact.
pub(crate) fn linear_save(config: &CompressionConfig, mode: Compression) -> Option<Compression> {
    (!config.is_exact()).then_some(mode)
}

/// A batch of token sequences.
///
/// # Shapes
/// all three tensors are `[batch, seq_len]`.
#[derive(Debug, Clone)]
pub struct BertInput<B: Backend> {
    /// WordPiece ids.
    pub input_ids: Tensor<B, 2, Int>,
    /// Segment ids (0 for the first sentence, 1 for the second).
    pub token_type_ids: Tensor<B, 2, Int>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor<B, 2, Int>,
}

/// What the encoder returns.
#[derive(Debug, Clone)]
pub struct BertOutput<B: Backend> {
    /// Hidden states of the last layer, `[batch, seq_len, hidden]`.
    pub last_hidden_state: Tensor<B, 3>,
    /// `tanh(W h_[CLS] + b)`, `[batch, hidden]`; `None` for a model built without pooler.
    pub pooled: Option<Tensor<B, 2>>,
}

/// Word, position and token-type embeddings, summed and normalised.
#[derive(Module, Debug)]
pub struct BertEmbeddings<B: SlimOps> {
    /// `[vocab_size, hidden]`.
    pub word_embeddings: Param<Tensor<B, 2>>,
    /// `[max_position_embeddings, hidden]`.
    pub position_embeddings: Param<Tensor<B, 2>>,
    /// `[type_vocab_size, hidden]`.
    pub token_type_embeddings: Param<Tensor<B, 2>>,
    /// Normalises the summed embeddings.
    pub layer_norm: LayerNorm<B>,
    /// Hidden dropout.
    pub dropout: Dropout,
}

impl<B: SlimOps> BertEmbeddings<B> {
    fn load<S: ParamSource<B>>(source: &mut S, c: &BertConfig) -> Result<Self, LoadError> {
        let init = Init::Normal(c.initializer_range);
        let h = c.hidden_size;
        Ok(Self {
            word_embeddings: source.required(
                "embeddings.word_embeddings.weight",
                [c.vocab_size, h],
                init,
            )?,
            position_embeddings: source.required(
                "embeddings.position_embeddings.weight",
                [c.max_position_embeddings, h],
                init,
            )?,
            token_type_embeddings: source.required(
                "embeddings.token_type_embeddings.weight",
                [c.type_vocab_size, h],
                init,
            )?,
            layer_norm: LayerNorm::load(source, "embeddings.LayerNorm", h, c.layer_norm_eps)?,
            dropout: DropoutConfig::new(c.hidden_dropout_prob).init(),
        })
    }

    /// # Shapes
    /// - ids: `[batch, seq_len]` each
    /// - output: `[batch, seq_len, hidden]`
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Tensor<B, 2, Int>,
        config: &CompressionConfig,
    ) -> Tensor<B, 3> {
        let [batch, seq_len] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<B, 1, Int>::arange(0..seq_len as i64, &device)
            .unsqueeze::<2>()
            .expand([batch, seq_len]);
        let summed = embedding(self.word_embeddings.val(), input_ids)
            + embedding(self.position_embeddings.val(), positions)
            + embedding(self.token_type_embeddings.val(), token_type_ids);
        let normalised = self.layer_norm.forward_with(summed, config);
        hidden_dropout(&self.dropout, normalised, config)
    }
}

/// Multi-head scaled dot-product self-attention with separate Q, K and V projections.
#[derive(Module, Debug)]
pub struct BertSelfAttention<B: SlimOps> {
    /// Query projection.
    pub query: Dense<B>,
    /// Key projection.
    pub key: Dense<B>,
    /// Value projection.
    pub value: Dense<B>,
    /// Dropout on attention probabilities.
    pub dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
}

impl<B: SlimOps> BertSelfAttention<B> {
    fn load<S: ParamSource<B>>(
        source: &mut S,
        prefix: &str,
        c: &BertConfig,
    ) -> Result<Self, LoadError> {
        let (h, std) = (c.hidden_size, c.initializer_range);
        Ok(Self {
            query: Dense::load(source, &format!("{prefix}.query"), h, h, std, true)?,
            key: Dense::load(source, &format!("{prefix}.key"), h, h, std, true)?,
            value: Dense::load(source, &format!("{prefix}.value"), h, h, std, true)?,
            dropout: DropoutConfig::new(c.attention_probs_dropout_prob).init(),
            num_heads: c.num_attention_heads,
        })
    }

    /// # Shapes
    /// - hidden: `[batch, seq_len, hidden]`
    /// - mask_bias: `[batch, heads, seq_len, seq_len]` (0 for tokens, a large negative for
    ///   padded keys)
    /// - output: `[batch, seq_len, hidden]` (the context, before the output projection)
    ///
    /// With `paper` dropout masks attention dropout is applied to V instead of P (as the
    /// SlimFit reference does, to avoid keeping a `seq × seq` byte mask per head); otherwise
    /// to P, as BERT does, inside the fused op (a bit per value with `scaled` masks).
    pub fn forward(
        &self,
        hidden: Tensor<B, 3>,
        mask_bias: Tensor<B, 4>,
        config: &CompressionConfig,
    ) -> Tensor<B, 3> {
        let [batch, seq_len, width] = hidden.dims();
        let head_dim = width / self.num_heads;
        let split = |x: Tensor<B, 3>| {
            x.reshape([batch, seq_len, self.num_heads, head_dim])
                .swap_dims(1, 2)
        };
        let save = linear_save(config, Compression::Exact);
        let q = split(self.query.forward_saving(hidden.clone(), save));
        let k = split(self.key.forward_saving(hidden.clone(), save));
        let v = split(self.value.forward_saving(hidden, save));
        let scale = 1.0 / (head_dim as f64).sqrt();
        let context = if config.is_exact() {
            let scores = q.matmul(k.transpose()).mul_scalar(scale) + mask_bias;
            self.dropout.forward(softmax(scores, 3)).matmul(v)
        } else if config.dropout_mask == Compression::Paper {
            let v = hidden_dropout(&self.dropout, v, config);
            slim::attention(q, k, v, mask_bias, scale, 0.0, config)
        } else {
            let training = B::ad_enabled(&v.device());
            let dropout = if training { self.dropout.prob } else { 0.0 };
            slim::attention(q, k, v, mask_bias, scale, dropout, config)
        };
        context.swap_dims(1, 2).reshape([batch, seq_len, width])
    }
}

/// A projection followed by dropout, a residual connection and LayerNorm
/// (Hugging Face's `BertSelfOutput` and `BertOutput`).
#[derive(Module, Debug)]
pub struct BertResidualOutput<B: SlimOps> {
    /// The projection (attention output, or FFN2).
    pub dense: Dense<B>,
    /// Post-residual normalisation.
    pub layer_norm: LayerNorm<B>,
    /// Hidden dropout.
    pub dropout: Dropout,
}

impl<B: SlimOps> BertResidualOutput<B> {
    fn load<S: ParamSource<B>>(
        source: &mut S,
        prefix: &str,
        d_input: usize,
        c: &BertConfig,
    ) -> Result<Self, LoadError> {
        let h = c.hidden_size;
        Ok(Self {
            dense: Dense::load(
                source,
                &format!("{prefix}.dense"),
                d_input,
                h,
                c.initializer_range,
                true,
            )?,
            layer_norm: LayerNorm::load(
                source,
                &format!("{prefix}.LayerNorm"),
                h,
                c.layer_norm_eps,
            )?,
            dropout: DropoutConfig::new(c.hidden_dropout_prob).init(),
        })
    }

    /// `LayerNorm(dropout(dense(input)) + residual)`; `save` is how the projection keeps its
    /// input for its weight gradient (SlimFit ops only).
    pub fn forward(
        &self,
        input: Tensor<B, 3>,
        residual: Tensor<B, 3>,
        save: Compression,
        config: &CompressionConfig,
    ) -> Tensor<B, 3> {
        let projected = self.dense.forward_saving(input, linear_save(config, save));
        let projected = hidden_dropout(&self.dropout, projected, config);
        self.layer_norm.forward_with(projected + residual, config)
    }
}

/// One transformer layer: attention block then feed-forward block, each post-LN.
#[derive(Module, Debug)]
pub struct BertLayer<B: SlimOps> {
    /// Q, K, V and the attention itself (`attention.self`).
    pub attention: BertSelfAttention<B>,
    /// Attention output projection + LayerNorm (`attention.output`).
    pub attention_output: BertResidualOutput<B>,
    /// FFN1 (`intermediate.dense`), followed by GELU.
    pub intermediate: Dense<B>,
    /// FFN2 + LayerNorm (`output`).
    pub output: BertResidualOutput<B>,
}

impl<B: SlimOps> BertLayer<B> {
    fn load<S: ParamSource<B>>(
        source: &mut S,
        prefix: &str,
        c: &BertConfig,
    ) -> Result<Self, LoadError> {
        let (h, f) = (c.hidden_size, c.intermediate_size);
        Ok(Self {
            attention: BertSelfAttention::load(source, &format!("{prefix}.attention.self"), c)?,
            attention_output: BertResidualOutput::load(
                source,
                &format!("{prefix}.attention.output"),
                h,
                c,
            )?,
            intermediate: Dense::load(
                source,
                &format!("{prefix}.intermediate.dense"),
                h,
                f,
                c.initializer_range,
                true,
            )?,
            output: BertResidualOutput::load(source, &format!("{prefix}.output"), f, c)?,
        })
    }

    /// # Shapes
    /// - hidden: `[batch, seq_len, hidden]`, mask_bias: `[batch, heads, seq_len, seq_len]`
    /// - output: `[batch, seq_len, hidden]`
    pub fn forward(
        &self,
        hidden: Tensor<B, 3>,
        mask_bias: Tensor<B, 4>,
        config: &CompressionConfig,
    ) -> Tensor<B, 3> {
        let context = self.attention.forward(hidden.clone(), mask_bias, config);
        let attended = self
            .attention_output
            .forward(context, hidden, Compression::Exact, config);
        let inner = self
            .intermediate
            .forward_saving(attended.clone(), linear_save(config, Compression::Exact));
        let inner = if config.is_exact() {
            gelu(inner)
        } else {
            slim::gelu(inner, config.gelu)
        };
        self.output
            .forward(inner, attended, config.ffn2_input, config)
    }

    /// Appends this layer's units (Q, K, V, attention output, its LayerNorm γ, FFN1, FFN2,
    /// output LayerNorm γ), named `{prefix}.…`.
    pub fn push_units(&self, units: &mut UnitList, prefix: &str, layer: usize) {
        let l = Some(layer);
        let a = &self.attention;
        units.push_with_bias(
            format!("{prefix}.attention.self.query.weight"),
            &a.query.weight,
            &a.query.bias,
            UnitKind::Query,
            l,
        );
        units.push_with_bias(
            format!("{prefix}.attention.self.key.weight"),
            &a.key.weight,
            &a.key.bias,
            UnitKind::Key,
            l,
        );
        units.push_with_bias(
            format!("{prefix}.attention.self.value.weight"),
            &a.value.weight,
            &a.value.bias,
            UnitKind::Value,
            l,
        );
        let o = &self.attention_output;
        units.push_with_bias(
            format!("{prefix}.attention.output.dense.weight"),
            &o.dense.weight,
            &o.dense.bias,
            UnitKind::AttentionOutput,
            l,
        );
        units.push_with_bias(
            format!("{prefix}.attention.output.LayerNorm.weight"),
            &o.layer_norm.weight,
            &o.layer_norm.bias,
            UnitKind::LayerNorm,
            l,
        );
        units.push_with_bias(
            format!("{prefix}.intermediate.dense.weight"),
            &self.intermediate.weight,
            &self.intermediate.bias,
            UnitKind::Ffn1,
            l,
        );
        units.push_with_bias(
            format!("{prefix}.output.dense.weight"),
            &self.output.dense.weight,
            &self.output.dense.bias,
            UnitKind::Ffn2,
            l,
        );
        units.push_with_bias(
            format!("{prefix}.output.LayerNorm.weight"),
            &self.output.layer_norm.weight,
            &self.output.layer_norm.bias,
            UnitKind::LayerNorm,
            l,
        );
    }
}

/// The BERT encoder with its embeddings and (optional) pooler.
#[derive(Module, Debug)]
pub struct BertModel<B: SlimOps> {
    /// Input embeddings.
    pub embeddings: BertEmbeddings<B>,
    /// `encoder.layer.N`.
    pub layers: Vec<BertLayer<B>>,
    /// `pooler.dense`, applied to the `[CLS]` state with tanh.
    pub pooler: Option<Dense<B>>,
    /// How the SlimFit ops store saved activations (exact: plain burn ops).
    #[module(skip)]
    pub compression: CompressionConfig,
}

impl<B: SlimOps> HasUnits<B> for BertModel<B> {
    fn units(&self) -> Vec<Unit> {
        let mut units = UnitList::default();
        self.push_units(&mut units);
        units.into_vec()
    }
}

impl<B: SlimOps> BertModel<B> {
    /// Builds the encoder from `source`. With `with_pooler`, the pooler is required in a
    /// checkpoint (Hugging Face's `add_pooling_layer`).
    pub fn load<S: ParamSource<B>>(
        source: &mut S,
        config: &BertConfig,
        with_pooler: bool,
    ) -> Result<Self, LoadError> {
        let embeddings = BertEmbeddings::load(source, config)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| BertLayer::load(source, &format!("encoder.layer.{i}"), config))
            .collect::<Result<Vec<_>, _>>()?;
        let pooler = if with_pooler {
            let h = config.hidden_size;
            Some(Dense::load(
                source,
                "pooler.dense",
                h,
                h,
                config.initializer_range,
                true,
            )?)
        } else {
            None
        };
        Ok(Self {
            embeddings,
            layers,
            pooler,
            compression: CompressionConfig::exact(),
        })
    }

    /// The same model with another activation compression.
    pub fn with_compression(mut self, compression: CompressionConfig) -> Self {
        self.compression = compression;
        self
    }

    /// Appends the encoder's units: embedding tables, embedding LayerNorm γ, each layer's
    /// eight units, the pooler, then the LoRA adapters' `A` and `B` when attached.
    pub fn push_units(&self, units: &mut UnitList) {
        let e = &self.embeddings;
        units.push(
            "embeddings.word_embeddings.weight",
            &e.word_embeddings,
            UnitKind::Embedding,
            None,
        );
        units.push(
            "embeddings.position_embeddings.weight",
            &e.position_embeddings,
            UnitKind::Embedding,
            None,
        );
        units.push(
            "embeddings.token_type_embeddings.weight",
            &e.token_type_embeddings,
            UnitKind::Embedding,
            None,
        );
        units.push_with_bias(
            "embeddings.LayerNorm.weight",
            &e.layer_norm.weight,
            &e.layer_norm.bias,
            UnitKind::LayerNorm,
            None,
        );
        for (i, layer) in self.layers.iter().enumerate() {
            layer.push_units(units, &format!("encoder.layer.{i}"), i);
        }
        if let Some(pooler) = &self.pooler {
            units.push_with_bias(
                "pooler.dense.weight",
                &pooler.weight,
                &pooler.bias,
                UnitKind::Pooler,
                None,
            );
        }
        // LoRA adapters, when attached, after the encoder's own units, which keep their
        // indices.
        for (i, layer) in self.layers.iter().enumerate() {
            layer.push_adapter_units(units, &format!("encoder.layer.{i}"), i);
        }
    }

    /// Runs the encoder.
    ///
    /// # Panics
    /// When `seq_len` exceeds `max_position_embeddings` or an id is outside its table; the
    /// tokenizer caps lengths so that this cannot happen with its output.
    pub fn forward(&self, input: BertInput<B>) -> BertOutput<B> {
        self.forward_with(input, &mut |_| {})
    }

    /// [`BertModel::forward`], calling `before(segment)` before each segment runs: 0 the
    /// embeddings, `1 + l` layer `l` (a trainer reseeds its dropout there, so that a layer
    /// recomputed in backward draws the same masks).
    pub fn forward_with(
        &self,
        input: BertInput<B>,
        before: &mut dyn FnMut(usize),
    ) -> BertOutput<B> {
        let hidden = self.encode_with(input, before);
        let pooled = self.pool(hidden.clone());
        BertOutput {
            last_hidden_state: hidden,
            pooled,
        }
    }

    /// The last layer's output (no pooler), calling `before` as [`BertModel::forward_with`].
    ///
    /// # Shapes
    /// - output: `[batch, seq_len, hidden]`
    pub fn encode_with(&self, input: BertInput<B>, before: &mut dyn FnMut(usize)) -> Tensor<B, 3> {
        let mask_bias = self.mask_bias(input.attention_mask);
        before(0);
        let mut hidden = self.embed(input.input_ids, input.token_type_ids);
        for (l, layer) in self.layers.iter().enumerate() {
            before(1 + l);
            hidden = layer.forward(hidden, mask_bias.clone(), &self.compression);
        }
        hidden
    }

    /// The additive attention bias of `attention_mask` (0 for tokens, a large negative for
    /// padding), materialised once per forward at the scores' full shape: adding a broadcast
    /// `[batch, 1, 1, seq]` bias in every layer is far slower on flex than one copy.
    ///
    /// # Shapes
    /// - attention_mask: `[batch, seq_len]`
    /// - output: `[batch, heads, seq_len, seq_len]`
    pub fn mask_bias(&self, attention_mask: Tensor<B, 2, Int>) -> Tensor<B, 4> {
        let [batch, seq_len] = attention_mask.dims();
        let heads = self.layers.first().map_or(1, |l| l.attention.num_heads);
        attention_mask
            .float()
            .neg()
            .add_scalar(1.0)
            .mul_scalar(MASK_BIAS)
            .reshape([batch, 1, 1, seq_len])
            .repeat_dim(1, heads)
            .repeat_dim(2, seq_len)
    }

    /// The embeddings' output, the first layer's input.
    ///
    /// # Shapes
    /// - input_ids, token_type_ids: `[batch, seq_len]`
    /// - output: `[batch, seq_len, hidden]`
    pub fn embed(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        self.embeddings
            .forward(input_ids, token_type_ids, &self.compression)
    }

    /// The pooler (tanh of a projection of the `[CLS]` state), when the model has one.
    ///
    /// # Shapes
    /// - hidden: `[batch, seq_len, hidden]`
    /// - output: `[batch, hidden]`
    pub fn pool(&self, hidden: Tensor<B, 3>) -> Option<Tensor<B, 2>> {
        self.pooler.as_ref().map(|dense| {
            let [batch, _, width] = hidden.dims();
            let cls = hidden.slice([0..batch, 0..1]).reshape([batch, width]);
            dense.forward(cls).tanh()
        })
    }
}
