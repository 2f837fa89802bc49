//! Vision Transformers: ViT as Hugging Face `ViTModel` computes it, and DINOv2 as
//! `Dinov2Model` does.
//!
//! Dosovitskiy, Beyer, Kolesnikov, Weissenborn, Zhai, Unterthiner, Dehghani, Minderer,
//! Heigold, Gelly, Uszkoreit, Houlsby — "An Image is Worth 16x16 Words: Transformers for Image
//! Recognition at Scale", ICLR 2021 (arXiv 2010.11929).
//! Oquab, Darcet, Moutakanni, Vo, Szafraniec, Khalidov, Fernandez, Haziza, Massa,
//! El-Nouby, … Bojanowski — "DINOv2: Learning Robust Visual Features without Supervision",
//! TMLR 2024 (arXiv 2304.07193).
//!
//! Both are pre-LN encoders over non-overlapping image patches with a learned class token and
//! learned absolute position embeddings; DINOv2 adds a per-channel *layer scale* λ on each
//! residual branch. Everything a layer computes goes through the same SlimFit ops as BERT
//! ([`Dense::forward_saving`] → `slim::linear`, [`BertSelfAttention`] → `slim::attention`,
//! `slim::gelu`, [`LayerNorm::forward_with`], `slim::dropout`), so freezing and activation
//! compression behave identically.
//!
//! - **Patch embedding.** A convolution with stride = kernel = patch is a Linear layer over
//!   flattened patches: the image is unfolded to `[batch · patches, channels · patch²]`
//!   (channel-major inside a patch, as PyTorch flattens a conv weight) and multiplied by the
//!   conv weight viewed as `[hidden, channels · patch²]`. The projection is therefore a
//!   [`Dense`] — one freezable unit that keeps its input (the unfolded pixels) only while it
//!   trains. Rows and columns that do not fill a whole patch are dropped, as the strided
//!   convolution drops them.
//! - **Position embeddings at other sizes.** The learned `g × g` grid is resized to the
//!   image's patch grid with **bicubic** interpolation (Keys kernel, a = −0.75, half-pixel
//!   centres, edge-clamped taps, no antialiasing) — `torch.nn.functional.interpolate(...,
//!   size=(h, w), mode="bicubic", align_corners=False)`, what transformers' ViT and DINOv2
//!   `interpolate_pos_encoding` call. The resize is separable and linear, so it is two small
//!   matmuls with constant matrices and the table's gradient flows through it. At the trained
//!   grid the table is used as is.
//! - **Heads.** [`ViTForImageClassification`] puts `classifier` on the final-LayerNorm CLS
//!   state (ViT) or on `[CLS ; mean of patch tokens]` (DINOv2, as `Dinov2ForImageClassification`).
//!
//! Not implemented: masked-image-modelling (`mask_token`, `bool_masked_pos`), stochastic depth
//! (`drop_path_rate` > 0), DINOv2's SwiGLU FFN (giant), `qkv_bias = false`, ViT's pooler
//! (unused by image classification) and register tokens.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::bert::{BertSelfAttention, hidden_dropout, linear_save};
use crate::dense::Dense;
use crate::layer_norm::LayerNorm;
use crate::loader::{Init, InitSource, LoadError, ParamSource};
use crate::slim::{self, Compression, CompressionConfig, SlimOps};
use crate::units::{HasUnits, Unit, UnitKind, UnitList};

/// Which architecture a [`ViTConfig`] describes (its Hugging Face `model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ViTVariant {
    /// `ViTModel` (`model_type: "vit"`): `layernorm_before/after`, `intermediate`/`output`.
    #[serde(rename = "vit")]
    ViT,
    /// `Dinov2Model` (`model_type: "dinov2"`): `norm1/2`, `mlp.fc1/fc2`, layer scale.
    #[serde(rename = "dinov2")]
    Dinov2,
}

impl ViTVariant {
    /// The `model_type` string of Hugging Face configs.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::ViT => "vit",
            Self::Dinov2 => "dinov2",
        }
    }

    /// The prefix task checkpoints put in front of backbone tensors.
    pub fn backbone_prefix(self) -> &'static str {
        match self {
            Self::ViT => "vit.",
            Self::Dinov2 => "dinov2.",
        }
    }

    fn names(self) -> LayerNames {
        match self {
            Self::ViT => LayerNames {
                norm1: "layernorm_before",
                norm2: "layernorm_after",
                fc1: "intermediate.dense",
                fc2: "output.dense",
            },
            Self::Dinov2 => LayerNames {
                norm1: "norm1",
                norm2: "norm2",
                fc1: "mlp.fc1",
                fc2: "mlp.fc2",
            },
        }
    }
}

/// Hugging Face names of the parts of an encoder layer that differ between ViT and DINOv2.
#[derive(Debug, Clone, Copy)]
struct LayerNames {
    norm1: &'static str,
    norm2: &'static str,
    fc1: &'static str,
    fc2: &'static str,
}

/// Hyper-parameters of a ViT or DINOv2 encoder, named as in Hugging Face's `config.json`
/// (`ViTConfig` and `Dinov2Config`), so both kinds of checkpoint config deserialise without
/// translation. Defaults of absent fields follow the config class of `model_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawViTConfig")]
pub struct ViTConfig {
    /// `"vit"` or `"dinov2"`.
    pub model_type: ViTVariant,
    /// Width `H` of every hidden state.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward inner layer. DINOv2 configs give `mlp_ratio` instead; it is
    /// filled in as `⌊hidden_size · mlp_ratio⌋` (as `Dinov2MLP` computes it).
    pub intermediate_size: usize,
    /// DINOv2's FFN width ratio (`None` for ViT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlp_ratio: Option<f64>,
    /// Activation of the feed-forward layer; only `"gelu"` (the erf form) is supported.
    pub hidden_act: String,
    /// Dropout on hidden states during training.
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities during training.
    pub attention_probs_dropout_prob: f64,
    /// Standard deviation of the normal initialiser for freshly created weights.
    pub initializer_range: f64,
    /// Epsilon of every LayerNorm (ViT 1e-12, DINOv2 1e-6).
    pub layer_norm_eps: f64,
    /// Side of the square training images; with `patch_size` it fixes the position grid.
    pub image_size: usize,
    /// Side of a square patch.
    pub patch_size: usize,
    /// Input channels (3 for RGB).
    pub num_channels: usize,
    /// Whether Q, K and V have biases; only `true` is supported.
    pub qkv_bias: bool,
    /// Initial layer-scale λ (DINOv2: 1.0); `None` for ViT, which has no layer scale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layerscale_value: Option<f64>,
    /// Stochastic-depth rate (DINOv2 only); only 0 is supported.
    pub drop_path_rate: f64,
    /// DINOv2-giant's SwiGLU FFN; not supported.
    pub use_swiglu_ffn: bool,
}

/// `config.json` as written, before the model type's defaults are applied.
#[derive(Deserialize)]
struct RawViTConfig {
    #[serde(default = "default_model_type")]
    model_type: String,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: Option<usize>,
    mlp_ratio: Option<f64>,
    #[serde(default = "default_hidden_act")]
    hidden_act: String,
    #[serde(default)]
    hidden_dropout_prob: f64,
    #[serde(default)]
    attention_probs_dropout_prob: f64,
    #[serde(default = "default_init_range")]
    initializer_range: f64,
    layer_norm_eps: Option<f64>,
    image_size: Option<usize>,
    patch_size: Option<usize>,
    #[serde(default = "default_channels")]
    num_channels: usize,
    #[serde(default = "default_true")]
    qkv_bias: bool,
    layerscale_value: Option<f64>,
    #[serde(default)]
    drop_path_rate: f64,
    #[serde(default)]
    use_swiglu_ffn: bool,
}

fn default_model_type() -> String {
    "vit".into()
}
fn default_hidden_act() -> String {
    "gelu".into()
}
fn default_init_range() -> f64 {
    0.02
}
fn default_channels() -> usize {
    3
}
fn default_true() -> bool {
    true
}

impl TryFrom<RawViTConfig> for ViTConfig {
    type Error = String;

    fn try_from(r: RawViTConfig) -> Result<Self, String> {
        let variant = match r.model_type.as_str() {
            "vit" => ViTVariant::ViT,
            "dinov2" => ViTVariant::Dinov2,
            other => {
                return Err(format!(
                    "field `model_type` is {other:?}; only \"vit\" and \"dinov2\" are supported"
                ));
            }
        };
        let dinov2 = variant == ViTVariant::Dinov2;
        let mlp_ratio = if dinov2 {
            Some(r.mlp_ratio.unwrap_or(4.0))
        } else {
            r.mlp_ratio
        };
        let intermediate_size = match (dinov2, r.intermediate_size, mlp_ratio) {
            (true, _, Some(ratio)) => (r.hidden_size as f64 * ratio) as usize,
            (_, Some(size), _) => size,
            _ => 4 * r.hidden_size,
        };
        Ok(Self {
            model_type: variant,
            hidden_size: r.hidden_size,
            num_hidden_layers: r.num_hidden_layers,
            num_attention_heads: r.num_attention_heads,
            intermediate_size,
            mlp_ratio,
            hidden_act: r.hidden_act,
            hidden_dropout_prob: r.hidden_dropout_prob,
            attention_probs_dropout_prob: r.attention_probs_dropout_prob,
            initializer_range: r.initializer_range,
            layer_norm_eps: r
                .layer_norm_eps
                .unwrap_or(if dinov2 { 1e-6 } else { 1e-12 }),
            image_size: r.image_size.unwrap_or(if dinov2 { 518 } else { 224 }),
            patch_size: r.patch_size.unwrap_or(if dinov2 { 14 } else { 16 }),
            num_channels: r.num_channels,
            qkv_bias: r.qkv_bias,
            layerscale_value: if dinov2 {
                Some(r.layerscale_value.unwrap_or(1.0))
            } else {
                r.layerscale_value
            },
            drop_path_rate: r.drop_path_rate,
            use_swiglu_ffn: r.use_swiglu_ffn,
        })
    }
}

impl ViTConfig {
    /// google/vit-base-patch16-224(-in21k): 12 layers, H 768, 12 heads, FFN 3072, 224 px,
    /// 16 px patches (14 × 14 grid), LayerNorm eps 1e-12, no dropout.
    pub fn vit_base_16_224() -> Self {
        Self {
            model_type: ViTVariant::ViT,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            mlp_ratio: None,
            hidden_act: default_hidden_act(),
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            qkv_bias: true,
            layerscale_value: None,
            drop_path_rate: 0.0,
            use_swiglu_ffn: false,
        }
    }

    /// google/vit-base-patch16-384: ViT-B/16 at 384 px (24 × 24 grid), the SlimFit paper's
    /// ImageNet setting.
    pub fn vit_base_16_384() -> Self {
        Self {
            image_size: 384,
            ..Self::vit_base_16_224()
        }
    }

    /// facebook/dinov2-small: 12 layers, H 384, 6 heads, `mlp_ratio` 4, 14 px patches, a
    /// 37 × 37 position grid (518 px), LayerNorm eps 1e-6, layer scale.
    pub fn dinov2_small_14() -> Self {
        Self {
            model_type: ViTVariant::Dinov2,
            hidden_size: 384,
            num_hidden_layers: 12,
            num_attention_heads: 6,
            intermediate_size: 1536,
            mlp_ratio: Some(4.0),
            hidden_act: default_hidden_act(),
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            initializer_range: 0.02,
            layer_norm_eps: 1e-6,
            image_size: 518,
            patch_size: 14,
            num_channels: 3,
            qkv_bias: true,
            layerscale_value: Some(1.0),
            drop_path_rate: 0.0,
            use_swiglu_ffn: false,
        }
    }

    /// Reads and validates a Hugging Face `config.json` (`ViTConfig` or `Dinov2Config`).
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let config_err = |reason: String| LoadError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Self = serde_json::from_str(&text).map_err(|e| config_err(e.to_string()))?;
        config.validate().map_err(config_err)?;
        Ok(config)
    }

    /// Checks the invariants the model relies on; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("num_channels", self.num_channels),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("field `{field}` must be positive"));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "field `hidden_size` ({}) must be divisible by `num_attention_heads` ({})",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.image_size < self.patch_size {
            return Err(format!(
                "field `image_size` ({}) is smaller than `patch_size` ({})",
                self.image_size, self.patch_size
            ));
        }
        if self.hidden_act != "gelu" {
            return Err(format!(
                "field `hidden_act` is {:?}; only \"gelu\" (erf form) is supported",
                self.hidden_act
            ));
        }
        for (field, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("field `{field}` must lie in [0, 1), got {p}"));
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err("field `layer_norm_eps` must be positive".into());
        }
        if !self.qkv_bias {
            return Err("field `qkv_bias` is false; only Q/K/V with biases are supported".into());
        }
        if self.drop_path_rate != 0.0 {
            return Err(format!(
                "field `drop_path_rate` is {}; stochastic depth is not implemented (use 0)",
                self.drop_path_rate
            ));
        }
        if self.use_swiglu_ffn {
            return Err("field `use_swiglu_ffn` is true; the SwiGLU FFN is not supported".into());
        }
        match self.model_type {
            ViTVariant::Dinov2 => {
                if self.layerscale_value.is_none() {
                    return Err("field `layerscale_value` is required for dinov2".into());
                }
                if let Some(ratio) = self.mlp_ratio {
                    let implied = (self.hidden_size as f64 * ratio) as usize;
                    if implied != self.intermediate_size {
                        return Err(format!(
                            "field `intermediate_size` ({}) disagrees with `mlp_ratio` ({ratio}): \
                             hidden_size · mlp_ratio = {implied}",
                            self.intermediate_size
                        ));
                    }
                }
            }
            ViTVariant::ViT => {
                if self.layerscale_value.is_some() {
                    return Err(
                        "field `layerscale_value` is set, but ViT has no layer scale \
                                (use model_type \"dinov2\")"
                            .into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Side of the trained position grid: `image_size / patch_size` (rounded down, as HF).
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Rows of the position-embedding table: one per trained patch, plus the class token.
    pub fn num_positions(&self) -> usize {
        self.grid_size() * self.grid_size() + 1
    }
}

/// Backbone tensors looked up as named and, failing that, with the task models' prefix
/// (`vit.` / `dinov2.`). A missing tensor is reported under the name asked for.
struct BackboneSource<'s, S> {
    inner: &'s mut S,
    prefix: &'static str,
}

impl<B: Backend, S: ParamSource<B>> ParamSource<B> for BackboneSource<'_, S> {
    fn required<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        init: Init,
    ) -> Result<Param<Tensor<B, D>>, LoadError> {
        match self.inner.required(name, shape, init) {
            Err(missing @ LoadError::MissingTensor { .. }) => {
                match self
                    .inner
                    .required(&format!("{}{name}", self.prefix), shape, init)
                {
                    Err(LoadError::MissingTensor { .. }) => Err(missing),
                    other => other,
                }
            }
            other => other,
        }
    }

    fn optional<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        init: Init,
    ) -> Result<Param<Tensor<B, D>>, LoadError> {
        self.inner.optional(name, shape, init)
    }
}

/// Cubic-convolution weights of the four taps around a sample at fraction `t` ∈ [0, 1)
/// (Keys 1981 with a = −0.75, PyTorch's and onnxruntime's choice).
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// `[n_out, n_in]` matrix of 1-D bicubic resizing as `interpolate(mode="bicubic",
/// align_corners=False)` does it: output `o` samples input coordinate `(o + ½)·n_in/n_out − ½`;
/// taps beyond the edges repeat the edge value.
pub fn bicubic_resize_matrix(n_in: usize, n_out: usize) -> Vec<f32> {
    let mut m = vec![0.0f64; n_out * n_in];
    let scale = n_in as f64 / n_out as f64;
    let last = n_in as i64 - 1;
    for o in 0..n_out {
        let real = (o as f64 + 0.5) * scale - 0.5;
        let floor = real.floor();
        for (k, w) in cubic_weights(real - floor).into_iter().enumerate() {
            let i = (floor as i64 - 1 + k as i64).clamp(0, last) as usize;
            m[o * n_in + i] += w;
        }
    }
    m.into_iter().map(|w| w as f32).collect()
}

/// `x · λ` over the last dimension, on a 2-D view (fast broadcasting on flex). Autodiff keeps
/// `x` for `dλ` only while λ trains.
fn layer_scale<B: SlimOps>(x: Tensor<B, 3>, lambda: &Param<Tensor<B, 1>>) -> Tensor<B, 3> {
    let dims = x.dims();
    x.reshape([dims[0] * dims[1], dims[2]])
        .mul(lambda.val().unsqueeze())
        .reshape(dims)
}

/// Patch projection, class token and position embeddings.
#[derive(Module, Debug)]
pub struct ViTEmbeddings<B: SlimOps> {
    /// `embeddings.cls_token`, `[1, 1, hidden]`.
    pub cls_token: Param<Tensor<B, 3>>,
    /// `embeddings.position_embeddings`, `[1, 1 + grid², hidden]` (row 0: the class token).
    pub position_embeddings: Param<Tensor<B, 3>>,
    /// `embeddings.patch_embeddings.projection`: the `[hidden, channels, patch, patch]`
    /// convolution weight held as `[hidden, channels · patch²]`.
    pub projection: Dense<B>,
    /// Side of a patch.
    pub patch_size: usize,
    /// Hidden dropout after the position embeddings are added.
    pub dropout: Dropout,
}

/// Hugging Face name of the patch projection's weight.
const PROJECTION: &str = "embeddings.patch_embeddings.projection";

impl<B: SlimOps> ViTEmbeddings<B> {
    fn load<S: ParamSource<B>>(source: &mut S, c: &ViTConfig) -> Result<Self, LoadError> {
        let init = Init::Normal(c.initializer_range);
        let (h, p, ch) = (c.hidden_size, c.patch_size, c.num_channels);
        let conv: Param<Tensor<B, 4>> =
            source.required(&format!("{PROJECTION}.weight"), [h, ch, p, p], init)?;
        // Row-major [h, c, p, p] → [h, c·p·p] is PyTorch's flattening of a conv weight.
        // A fresh leaf: the view must not stay a node hanging off the 4-D tensor. It keeps
        // the checkpoint parameter's id, by which the saver knows its name.
        let (id, conv, _) = conv.consume();
        let flat = conv.set_require_grad(false).reshape([h, ch * p * p]);
        let weight = Param::initialized(id, flat.require_grad());
        let bias = source.required(&format!("{PROJECTION}.bias"), [h], Init::Zeros)?;
        Ok(Self {
            cls_token: source.required("embeddings.cls_token", [1, 1, h], init)?,
            position_embeddings: source.required(
                "embeddings.position_embeddings",
                [1, c.num_positions(), h],
                init,
            )?,
            projection: Dense {
                weight,
                bias,
                lora: None,
            },
            patch_size: p,
            dropout: DropoutConfig::new(c.hidden_dropout_prob).init(),
        })
    }

    /// Side of the trained position grid.
    pub fn grid_size(&self) -> usize {
        let rows = self.position_embeddings.shape().dims::<3>()[1] - 1;
        rows.isqrt()
    }

    /// The patch grid an image of `height × width` pixels gives: `(⌊height/patch⌋,
    /// ⌊width/patch⌋)`.
    pub fn patch_grid(&self, height: usize, width: usize) -> (usize, usize) {
        (height / self.patch_size, width / self.patch_size)
    }

    /// Position embeddings for a `rows × cols` patch grid, `[1 + rows·cols, hidden]`: the
    /// class row unchanged, the grid bicubically resized (as is at the trained size).
    pub fn position_embeddings_for(&self, rows: usize, cols: usize) -> Tensor<B, 2> {
        let [_, positions, hidden] = self.position_embeddings.shape().dims::<3>();
        let table = self.position_embeddings.val().reshape([positions, hidden]);
        let grid = self.grid_size();
        if (rows, cols) == (grid, grid) {
            return table;
        }
        let device = table.device();
        let resize = |n_out: usize| {
            let m = bicubic_resize_matrix(grid, n_out);
            Tensor::<B, 2>::from_data(TensorData::new(m, [n_out, grid]), &device)
        };
        let class = table.clone().narrow(0, 0, 1);
        let patches = table.narrow(0, 1, positions - 1);
        // Along the grid's rows: [rows, grid·H]; then along its columns: [cols, rows·H].
        let along_rows = resize(rows)
            .matmul(patches.reshape([grid, grid * hidden]))
            .reshape([rows, grid, hidden])
            .swap_dims(0, 1)
            .reshape([grid, rows * hidden]);
        let resized = resize(cols)
            .matmul(along_rows)
            .reshape([cols, rows, hidden])
            .swap_dims(0, 1)
            .reshape([rows * cols, hidden]);
        Tensor::cat(vec![class, resized], 0)
    }

    /// # Shapes
    /// - pixels: `[batch, channels, height, width]`
    /// - output: `[batch, 1 + patches, hidden]`
    ///
    /// # Panics
    /// When the image is smaller than one patch.
    pub fn forward(&self, pixels: Tensor<B, 4>, config: &CompressionConfig) -> Tensor<B, 3> {
        let [batch, channels, height, width] = pixels.dims();
        let p = self.patch_size;
        let (rows, cols) = self.patch_grid(height, width);
        assert!(
            rows > 0 && cols > 0,
            "a {height}×{width} image holds no {p}×{p} patch"
        );
        let pixels = if (rows * p, cols * p) == (height, width) {
            pixels
        } else {
            pixels.slice([0..batch, 0..channels, 0..rows * p, 0..cols * p])
        };
        let patches = pixels
            .reshape([batch, channels, rows, p, cols, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([batch * rows * cols, channels * p * p]);
        let projected = self
            .projection
            .forward_saving(patches, linear_save(config, Compression::Exact));
        let hidden = projected.dims()[1];
        let tokens = 1 + rows * cols;
        let class = self
            .cls_token
            .val()
            .reshape([1, hidden])
            .repeat_dim(0, batch)
            .reshape([batch, 1, hidden]);
        let embedded = Tensor::cat(
            vec![class, projected.reshape([batch, rows * cols, hidden])],
            1,
        );
        let positions = self
            .position_embeddings_for(rows, cols)
            .reshape([1, tokens * hidden]);
        let summed = (embedded.reshape([batch, tokens * hidden]) + positions)
            .reshape([batch, tokens, hidden]);
        hidden_dropout(&self.dropout, summed, config)
    }
}

/// One pre-LN encoder layer: `x + λ₁·attn(LN₁ x)`, then `x + λ₂·FFN(LN₂ x)` (λ = 1 for ViT).
#[derive(Module, Debug)]
pub struct ViTLayer<B: SlimOps> {
    /// `layernorm_before` (ViT) / `norm1` (DINOv2).
    pub norm1: LayerNorm<B>,
    /// Q, K, V and the attention itself (`attention.attention`): the same module as BERT's
    /// self-attention, so the same SlimFit attention op.
    pub attention: BertSelfAttention<B>,
    /// `attention.output.dense`.
    pub attention_output: Dense<B>,
    /// `layer_scale1.lambda1` (DINOv2), `[hidden]`.
    pub layer_scale1: Option<Param<Tensor<B, 1>>>,
    /// `layernorm_after` (ViT) / `norm2` (DINOv2).
    pub norm2: LayerNorm<B>,
    /// FFN1: `intermediate.dense` (ViT) / `mlp.fc1` (DINOv2), followed by GELU.
    pub fc1: Dense<B>,
    /// FFN2: `output.dense` (ViT) / `mlp.fc2` (DINOv2).
    pub fc2: Dense<B>,
    /// `layer_scale2.lambda1` (DINOv2), `[hidden]`.
    pub layer_scale2: Option<Param<Tensor<B, 1>>>,
    /// Hidden dropout after the attention output (both) and after FFN2 (ViT only: DINOv2's
    /// MLP has none).
    pub dropout: Dropout,
    /// Whether FFN2's output goes through dropout (ViT).
    pub ffn_dropout: bool,
}

impl<B: SlimOps> ViTLayer<B> {
    fn load<S: ParamSource<B>>(
        source: &mut S,
        prefix: &str,
        c: &ViTConfig,
    ) -> Result<Self, LoadError> {
        let (h, f, std, eps) = (
            c.hidden_size,
            c.intermediate_size,
            c.initializer_range,
            c.layer_norm_eps,
        );
        let names = c.model_type.names();
        let dense = |source: &mut S, name: &str, d_in: usize, d_out: usize| {
            Dense::load(source, &format!("{prefix}.{name}"), d_in, d_out, std, true)
        };
        let qkv = "attention.attention";
        let attention = BertSelfAttention {
            query: dense(source, &format!("{qkv}.query"), h, h)?,
            key: dense(source, &format!("{qkv}.key"), h, h)?,
            value: dense(source, &format!("{qkv}.value"), h, h)?,
            dropout: DropoutConfig::new(c.attention_probs_dropout_prob).init(),
            num_heads: c.num_attention_heads,
        };
        let scale = |source: &mut S, k: usize| match c.layerscale_value {
            Some(value) => source
                .required(
                    &format!("{prefix}.layer_scale{k}.lambda1"),
                    [h],
                    Init::Constant(value),
                )
                .map(Some),
            None => Ok(None),
        };
        Ok(Self {
            norm1: LayerNorm::load(source, &format!("{prefix}.{}", names.norm1), h, eps)?,
            attention,
            attention_output: dense(source, "attention.output.dense", h, h)?,
            layer_scale1: scale(source, 1)?,
            norm2: LayerNorm::load(source, &format!("{prefix}.{}", names.norm2), h, eps)?,
            fc1: dense(source, names.fc1, h, f)?,
            fc2: dense(source, names.fc2, f, h)?,
            layer_scale2: scale(source, 2)?,
            dropout: DropoutConfig::new(c.hidden_dropout_prob).init(),
            ffn_dropout: c.model_type == ViTVariant::ViT,
        })
    }

    /// # Shapes
    /// - hidden: `[batch, tokens, hidden]`, mask_bias: broadcastable to
    ///   `[batch, heads, tokens, tokens]` (zeros: every token sees every token)
    /// - output: `[batch, tokens, hidden]`
    pub fn forward(
        &self,
        hidden: Tensor<B, 3>,
        mask_bias: Tensor<B, 4>,
        config: &CompressionConfig,
    ) -> Tensor<B, 3> {
        let exact_save = linear_save(config, Compression::Exact);
        let normed = self.norm1.forward_with(hidden.clone(), config);
        let context = self.attention.forward(normed, mask_bias, config);
        let attended = self.attention_output.forward_saving(context, exact_save);
        let mut attended = hidden_dropout(&self.dropout, attended, config);
        if let Some(lambda) = &self.layer_scale1 {
            attended = layer_scale(attended, lambda);
        }
        let hidden = attended + hidden;
        let normed = self.norm2.forward_with(hidden.clone(), config);
        let inner = self.fc1.forward_saving(normed, exact_save);
        let inner = if config.is_exact() {
            gelu(inner)
        } else {
            slim::gelu(inner, config.gelu)
        };
        let mut out = self
            .fc2
            .forward_saving(inner, linear_save(config, config.ffn2_input));
        if self.ffn_dropout {
            out = hidden_dropout(&self.dropout, out, config);
        }
        if let Some(lambda) = &self.layer_scale2 {
            out = layer_scale(out, lambda);
        }
        out + hidden
    }

    fn push_units(&self, units: &mut UnitList, prefix: &str, layer: usize, variant: ViTVariant) {
        let names = variant.names();
        let l = Some(layer);
        let a = &self.attention;
        let qkv = format!("{prefix}.attention.attention");
        units.push_with_bias(
            format!("{prefix}.{}.weight", names.norm1),
            &self.norm1.weight,
            &self.norm1.bias,
            UnitKind::LayerNorm,
            l,
        );
        units.push_with_bias(
            format!("{qkv}.query.weight"),
            &a.query.weight,
            &a.query.bias,
            UnitKind::Query,
            l,
        );
        units.push_with_bias(
            format!("{qkv}.key.weight"),
            &a.key.weight,
            &a.key.bias,
            UnitKind::Key,
            l,
        );
        units.push_with_bias(
            format!("{qkv}.value.weight"),
            &a.value.weight,
            &a.value.bias,
            UnitKind::Value,
            l,
        );
        units.push_with_bias(
            format!("{prefix}.attention.output.dense.weight"),
            &self.attention_output.weight,
            &self.attention_output.bias,
            UnitKind::AttentionOutput,
            l,
        );
        if let Some(lambda) = &self.layer_scale1 {
            units.push(
                format!("{prefix}.layer_scale1.lambda1"),
                lambda,
                UnitKind::LayerScale,
                l,
            );
        }
        units.push_with_bias(
            format!("{prefix}.{}.weight", names.norm2),
            &self.norm2.weight,
            &self.norm2.bias,
            UnitKind::LayerNorm,
            l,
        );
        units.push_with_bias(
            format!("{prefix}.{}.weight", names.fc1),
            &self.fc1.weight,
            &self.fc1.bias,
            UnitKind::Ffn1,
            l,
        );
        units.push_with_bias(
            format!("{prefix}.{}.weight", names.fc2),
            &self.fc2.weight,
            &self.fc2.bias,
            UnitKind::Ffn2,
            l,
        );
        if let Some(lambda) = &self.layer_scale2 {
            units.push(
                format!("{prefix}.layer_scale2.lambda1"),
                lambda,
                UnitKind::LayerScale,
                l,
            );
        }
    }
}

/// What the encoder returns.
#[derive(Debug, Clone)]
pub struct ViTOutput<B: Backend> {
    /// Hidden states after the final LayerNorm, `[batch, 1 + patches, hidden]` (token 0 is
    /// the class token).
    pub last_hidden_state: Tensor<B, 3>,
}

impl<B: Backend> ViTOutput<B> {
    /// The class token's state, `[batch, hidden]`.
    pub fn cls(&self) -> Tensor<B, 2> {
        let [batch, _, hidden] = self.last_hidden_state.dims();
        self.last_hidden_state
            .clone()
            .slice([0..batch, 0..1])
            .reshape([batch, hidden])
    }

    /// Mean of the patch tokens' states (every token but the first), `[batch, hidden]`.
    pub fn patch_mean(&self) -> Tensor<B, 2> {
        let [batch, tokens, hidden] = self.last_hidden_state.dims();
        self.last_hidden_state
            .clone()
            .slice([0..batch, 1..tokens])
            .mean_dim(1)
            .reshape([batch, hidden])
    }
}

/// The ViT / DINOv2 encoder: embeddings, pre-LN layers, final LayerNorm.
#[derive(Module, Debug)]
pub struct ViTModel<B: SlimOps> {
    /// Patch, class and position embeddings.
    pub embeddings: ViTEmbeddings<B>,
    /// `encoder.layer.N`.
    pub layers: Vec<ViTLayer<B>>,
    /// `layernorm`, applied to every token after the last layer.
    pub layernorm: LayerNorm<B>,
    /// ViT or DINOv2 (tensor names and the classification head's input).
    #[module(skip)]
    pub variant: ViTVariant,
    /// How the SlimFit ops store saved activations (exact: plain burn ops).
    #[module(skip)]
    pub compression: CompressionConfig,
}

impl<B: SlimOps> HasUnits<B> for ViTModel<B> {
    fn units(&self) -> Vec<Unit> {
        let mut units = UnitList::default();
        self.push_units(&mut units);
        units.into_vec()
    }
}

impl<B: SlimOps> ViTModel<B> {
    /// Builds the encoder from `source` by Hugging Face names, with or without the task
    /// models' `vit.` / `dinov2.` prefix. The configuration must be valid
    /// ([`ViTConfig::validate`]; [`ViTConfig::from_json_file`] checks it).
    pub fn load<S: ParamSource<B>>(source: &mut S, config: &ViTConfig) -> Result<Self, LoadError> {
        let mut source = BackboneSource {
            inner: source,
            prefix: config.model_type.backbone_prefix(),
        };
        let embeddings = ViTEmbeddings::load(&mut source, config)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| ViTLayer::load(&mut source, &format!("encoder.layer.{i}"), config))
            .collect::<Result<Vec<_>, _>>()?;
        let layernorm = LayerNorm::load(
            &mut source,
            "layernorm",
            config.hidden_size,
            config.layer_norm_eps,
        )?;
        Ok(Self {
            embeddings,
            layers,
            layernorm,
            variant: config.model_type,
            compression: CompressionConfig::exact(),
        })
    }

    /// The same model with another activation compression.
    pub fn with_compression(mut self, compression: CompressionConfig) -> Self {
        self.compression = compression;
        self
    }

    /// Appends the encoder's units: patch projection, class token, position embeddings;
    /// per layer (in forward order) LN₁ γ, Q, K, V, attention output, (λ₁), LN₂ γ, FFN1,
    /// FFN2, (λ₂); the final LayerNorm γ.
    pub fn push_units(&self, units: &mut UnitList) {
        let e = &self.embeddings;
        units.push_with_bias(
            format!("{PROJECTION}.weight"),
            &e.projection.weight,
            &e.projection.bias,
            UnitKind::PatchEmbedding,
            None,
        );
        units.push(
            "embeddings.cls_token",
            &e.cls_token,
            UnitKind::Embedding,
            None,
        );
        units.push(
            "embeddings.position_embeddings",
            &e.position_embeddings,
            UnitKind::Embedding,
            None,
        );
        for (i, layer) in self.layers.iter().enumerate() {
            layer.push_units(units, &format!("encoder.layer.{i}"), i, self.variant);
        }
        units.push_with_bias(
            "layernorm.weight",
            &self.layernorm.weight,
            &self.layernorm.bias,
            UnitKind::LayerNorm,
            None,
        );
    }

    /// Runs the encoder on a batch of normalised images.
    ///
    /// # Shapes
    /// - pixels: `[batch, channels, height, width]`, any size of at least one patch (the
    ///   position grid is interpolated to it)
    /// - output: `[batch, 1 + ⌊height/patch⌋·⌊width/patch⌋, hidden]`
    pub fn forward(&self, pixels: Tensor<B, 4>) -> ViTOutput<B> {
        let config = &self.compression;
        let device = pixels.device();
        let mut hidden = self.embeddings.forward(pixels, config);
        // No padding in images: the bias is zero. It is passed as one broadcast element
        // rather than `[batch, heads, tokens, tokens]` zeros, which would cost as much
        // memory as the attention probabilities of a layer.
        let mask_bias = Tensor::<B, 4>::zeros([1, 1, 1, 1], &device);
        for layer in &self.layers {
            hidden = layer.forward(hidden, mask_bias.clone(), config);
        }
        ViTOutput {
            last_hidden_state: self.layernorm.forward_with(hidden, config),
        }
    }
}

/// `ViTForImageClassification` / `Dinov2ForImageClassification`: `classifier` on the CLS
/// state (ViT, `[labels, hidden]`) or on `[CLS ; mean of patch tokens]` (DINOv2,
/// `[labels, 2·hidden]`).
#[derive(Module, Debug)]
pub struct ViTForImageClassification<B: SlimOps> {
    /// The encoder (`vit.*` / `dinov2.*` in task checkpoints).
    pub vit: ViTModel<B>,
    /// `classifier`; freshly initialised when the checkpoint lacks it or has another label
    /// count.
    pub classifier: Dense<B>,
}

impl<B: SlimOps> HasUnits<B> for ViTForImageClassification<B> {
    fn units(&self) -> Vec<Unit> {
        let mut units = UnitList::default();
        self.vit.push_units(&mut units);
        units.push_with_bias(
            "classifier.weight",
            &self.classifier.weight,
            &self.classifier.bias,
            UnitKind::Head,
            None,
        );
        units.into_vec()
    }
}

impl<B: SlimOps> ViTForImageClassification<B> {
    /// Builds the model; the backbone must be in `source`. The head is read from
    /// `classifier.*` when present with `num_labels` outputs and freshly initialised
    /// otherwise (a backbone-only checkpoint, or another label count — Hugging Face's
    /// `ignore_mismatched_sizes`).
    pub fn load<S: ParamSource<B>>(
        source: &mut S,
        config: &ViTConfig,
        num_labels: usize,
    ) -> Result<Self, LoadError> {
        let vit = ViTModel::load(source, config)?;
        let d_input = match config.model_type {
            ViTVariant::ViT => config.hidden_size,
            ViTVariant::Dinov2 => 2 * config.hidden_size,
        };
        let std = config.initializer_range;
        let classifier = match Dense::load(source, "classifier", d_input, num_labels, std, false) {
            Err(LoadError::ShapeMismatch { name, found, .. }) if name.contains("classifier") => {
                tracing::info!(
                    "re-initialising the classifier: `{name}` has shape {found:?}, \
                     {num_labels} labels asked for"
                );
                let device = vit.layernorm.weight.val().device();
                Dense::load(
                    &mut InitSource::new(&device),
                    "classifier",
                    d_input,
                    num_labels,
                    std,
                    true,
                )?
            }
            other => other?,
        };
        Ok(Self { vit, classifier })
    }

    /// # Shapes
    /// - pixels: `[batch, channels, height, width]`
    /// - output: `[batch, num_labels]` logits
    pub fn forward(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2> {
        let out = self.vit.forward(pixels);
        let features = match self.vit.variant {
            ViTVariant::ViT => out.cls(),
            ViTVariant::Dinov2 => Tensor::cat(vec![out.cls(), out.patch_mean()], 1),
        };
        self.classifier.forward(features)
    }
}
