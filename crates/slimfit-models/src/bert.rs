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

/// Added to attention scores of padding positions: small enough that `exp` underflows to 0,
/// far from overflowing f32.
const MASK_BIAS: f32 = -1.0e9;

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
pub struct BertEmbeddings<B: Backend> {
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

impl<B: Backend> BertEmbeddings<B> {
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
    ) -> Tensor<B, 3> {
        let [batch, seq_len] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<B, 1, Int>::arange(0..seq_len as i64, &device)
            .unsqueeze::<2>()
            .expand([batch, seq_len]);
        let summed = embedding(self.word_embeddings.val(), input_ids)
            + embedding(self.position_embeddings.val(), positions)
            + embedding(self.token_type_embeddings.val(), token_type_ids);
        self.dropout.forward(self.layer_norm.forward(summed))
    }
}

/// Multi-head scaled dot-product self-attention with separate Q, K and V projections.
#[derive(Module, Debug)]
pub struct BertSelfAttention<B: Backend> {
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

impl<B: Backend> BertSelfAttention<B> {
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
    /// - mask_bias: `[batch, 1, 1, seq_len]` (0 for tokens, a large negative for padding)
    /// - output: `[batch, seq_len, hidden]` (the context, before the output projection)
    pub fn forward(&self, hidden: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let [batch, seq_len, width] = hidden.dims();
        let head_dim = width / self.num_heads;
        let split = |x: Tensor<B, 3>| {
            x.reshape([batch, seq_len, self.num_heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = split(self.query.forward(hidden.clone()));
        let k = split(self.key.forward(hidden.clone()));
        let v = split(self.value.forward(hidden));
        let scores = q.matmul(k.transpose()).div_scalar((head_dim as f64).sqrt()) + mask_bias;
        let probs = self.dropout.forward(softmax(scores, 3));
        probs
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, seq_len, width])
    }
}

/// A projection followed by dropout, a residual connection and LayerNorm
/// (Hugging Face's `BertSelfOutput` and `BertOutput`).
#[derive(Module, Debug)]
pub struct BertResidualOutput<B: Backend> {
    /// The projection (attention output, or FFN2).
    pub dense: Dense<B>,
    /// Post-residual normalisation.
    pub layer_norm: LayerNorm<B>,
    /// Hidden dropout.
    pub dropout: Dropout,
}

impl<B: Backend> BertResidualOutput<B> {
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

    /// `LayerNorm(dropout(dense(input)) + residual)`.
    pub fn forward(&self, input: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        let projected = self.dropout.forward(self.dense.forward(input));
        self.layer_norm.forward(projected + residual)
    }
}

/// One transformer layer: attention block then feed-forward block, each post-LN.
#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    /// Q, K, V and the attention itself (`attention.self`).
    pub attention: BertSelfAttention<B>,
    /// Attention output projection + LayerNorm (`attention.output`).
    pub attention_output: BertResidualOutput<B>,
    /// FFN1 (`intermediate.dense`), followed by GELU.
    pub intermediate: Dense<B>,
    /// FFN2 + LayerNorm (`output`).
    pub output: BertResidualOutput<B>,
}

impl<B: Backend> BertLayer<B> {
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
    /// - hidden: `[batch, seq_len, hidden]`, mask_bias: `[batch, 1, 1, seq_len]`
    /// - output: `[batch, seq_len, hidden]`
    pub fn forward(&self, hidden: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let context = self.attention.forward(hidden.clone(), mask_bias);
        let attended = self.attention_output.forward(context, hidden);
        let inner = gelu(self.intermediate.forward(attended.clone()));
        self.output.forward(inner, attended)
    }
}

/// The BERT encoder with its embeddings and (optional) pooler.
#[derive(Module, Debug)]
pub struct BertModel<B: Backend> {
    /// Input embeddings.
    pub embeddings: BertEmbeddings<B>,
    /// `encoder.layer.N`.
    pub layers: Vec<BertLayer<B>>,
    /// `pooler.dense`, applied to the `[CLS]` state with tanh.
    pub pooler: Option<Dense<B>>,
}

impl<B: Backend> BertModel<B> {
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
        })
    }

    /// Runs the encoder.
    ///
    /// # Panics
    /// When `seq_len` exceeds `max_position_embeddings` or an id is outside its table; the
    /// tokenizer caps lengths so that this cannot happen with its output.
    pub fn forward(&self, input: BertInput<B>) -> BertOutput<B> {
        let mask_bias = input
            .attention_mask
            .float()
            .neg()
            .add_scalar(1.0)
            .mul_scalar(MASK_BIAS)
            .unsqueeze_dims::<4>(&[1, 2]);
        let mut hidden = self
            .embeddings
            .forward(input.input_ids, input.token_type_ids);
        for layer in &self.layers {
            hidden = layer.forward(hidden, mask_bias.clone());
        }
        let pooled = self.pooler.as_ref().map(|dense| {
            let [batch, _, width] = hidden.dims();
            let cls = hidden
                .clone()
                .slice([0..batch, 0..1])
                .reshape([batch, width]);
            dense.forward(cls).tanh()
        });
        BertOutput {
            last_hidden_state: hidden,
            pooled,
        }
    }
}
