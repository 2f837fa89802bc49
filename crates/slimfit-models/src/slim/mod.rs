//! SlimFit's autodiff ops: exact fp32 forward, compressed saved state for backward
//! (SLIMFIT.md §4).
//!
//! Each op is a method of the [`SlimOps`] backend extension. Inference backends use the
//! default methods (plain forward, nothing saved). `Autodiff<B>` overrides them with custom
//! backward steps whose saved state is exactly what the table of §4 says:
//!
//! | op | saved when its weight trains | saved when frozen |
//! |---|---|---|
//! | [`linear`] | input (fp32, or int8 for FFN2) | nothing |
//! | [`attention`] (`dropout(softmax(QKᵀ·s + mask))·V`) | Q, K (int8); P (uint8); V (int8); P's dropout mask (bits, scaled) | same |
//! | [`gelu`] | input 4-bit (paper) / derivative 8-bit (scaled) | same |
//! | [`layer_norm`] | normalised input (fp32) + per-row 1/σ | top-k (paper) / int8 (scaled) of it + 1/σ |
//! | [`dropout`] | the keep mask, one byte (paper) or bit (scaled) per value | same |
//!
//! Whether a weight trains is read from the autodiff graph (`require_grad` of its tensor), so
//! freezing a unit between steps changes what the next forward pass saves.

mod attention;
mod autodiff;
mod compression;
mod dropout;
mod gelu;
mod layer_norm;
mod linear;
pub mod quant;

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Tensor, TensorPrimitive, backend::Backend};

pub use attention::AttentionOptions;
pub use compression::{Compression, CompressionConfig};

/// Backend extension with SlimFit's memory-saving autodiff ops. The default methods compute
/// the forward pass only (inference backends); `Autodiff<B>` records custom backward steps.
pub trait SlimOps: Backend {
    /// `y = x·Wᵀ + b` with `W: [out, in]`; for backward keeps `x` (as `save` says) only when
    /// `W` requires a gradient. `x: [rows.., in]`.
    fn slim_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        save: Compression,
    ) -> FloatTensor<Self> {
        let _ = save;
        linear::forward::<Self>(x, weight, bias)
    }

    /// `dropout(softmax(Q·Kᵀ·scale + mask_bias))·V`, `Q, K, V: [batch, heads, seq,
    /// head_dim]`, `mask_bias` (constant) broadcastable to `[batch, heads, seq, seq]` — pass
    /// it full-size: flex broadcasts higher-rank tensors slowly. Dropout is the identity on
    /// inference backends.
    fn slim_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask_bias: FloatTensor<Self>,
        options: AttentionOptions,
    ) -> FloatTensor<Self> {
        prim(attention::forward::<Self>(q, k, v, mask_bias, options.scale, 0.0).out)
    }

    /// Exact (erf) GELU; keeps its input as `save` says.
    fn slim_gelu(x: FloatTensor<Self>, save: Compression) -> FloatTensor<Self> {
        let _ = save;
        gelu::forward::<Self>(x)
    }

    /// LayerNorm over the last dimension; when γ is frozen and `frozen_save` compresses, keeps
    /// only the top `keep` fraction of the normalised input.
    fn slim_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        frozen_save: Compression,
        keep: f32,
    ) -> FloatTensor<Self> {
        let _ = (frozen_save, keep);
        layer_norm::forward::<Self>(x, gamma, beta, epsilon).0
    }

    /// Column indices of the `k` largest entries of each row of `x: [rows, n]` (any order),
    /// `k < n`. The default sorts each row; backends with a native top-k override it (on
    /// CUDA a sort runs on the host).
    fn slim_row_topk_indices(x: FloatTensor<Self>, k: usize) -> IntTensor<Self> {
        let x: Tensor<Self, 2> = tensor(x);
        x.topk_with_indices(k, 1).1.into_primitive()
    }

    /// Inverted dropout with probability `prob`, its mask stored as `mask` says (a byte per
    /// value, or a bit for `Scaled`); identity on inference backends.
    fn slim_dropout(x: FloatTensor<Self>, prob: f64, mask: Compression) -> FloatTensor<Self> {
        let _ = (prob, mask);
        x
    }
}

#[cfg(feature = "flex")]
impl SlimOps for burn::backend::Flex {}
#[cfg(feature = "cuda")]
impl SlimOps for burn::backend::Cuda {
    fn slim_row_topk_indices(x: FloatTensor<Self>, k: usize) -> IntTensor<Self> {
        let x: Tensor<Self, 2> = tensor(x);
        x.argtopk(k, 1).into_primitive()
    }
}
#[cfg(feature = "tch")]
impl SlimOps for burn::backend::LibTorch {}

fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

fn tensor<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// `y = x·Wᵀ + b` ([`SlimOps::slim_linear`]).
///
/// # Shapes
/// - x: `[..., in]`, weight: `[out, in]`, bias: `[out]`
/// - output: `[..., out]`
pub fn linear<B: SlimOps, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
    save: Compression,
) -> Tensor<B, D> {
    tensor(B::slim_linear(prim(x), prim(weight), prim(bias), save))
}

/// Attention core ([`SlimOps::slim_attention`]): `dropout(softmax(Q·Kᵀ·scale + mask))·V`
/// with dropout probability `dropout` on the probabilities (pass 0 outside training), the
/// storage of each saved operand as `config` says.
///
/// # Shapes
/// - q, k, v: `[batch, heads, seq, head_dim]`, mask_bias: `[batch, heads, seq, seq]`
/// - output: `[batch, heads, seq, head_dim]`
pub fn attention<B: SlimOps>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask_bias: Tensor<B, 4>,
    scale: f64,
    dropout: f64,
    config: &CompressionConfig,
) -> Tensor<B, 4> {
    let options = AttentionOptions {
        scale,
        scores: config.attention_scores,
        context: config.attention_context,
        dropout,
        dropout_mask: config.dropout_mask,
    };
    tensor(B::slim_attention(
        prim(q),
        prim(k),
        prim(v),
        prim(mask_bias),
        options,
    ))
}

/// Exact GELU ([`SlimOps::slim_gelu`]).
pub fn gelu<B: SlimOps, const D: usize>(x: Tensor<B, D>, save: Compression) -> Tensor<B, D> {
    tensor(B::slim_gelu(prim(x), save))
}

/// LayerNorm over the last dimension ([`SlimOps::slim_layer_norm`]).
pub fn layer_norm<B: SlimOps, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
    config: &CompressionConfig,
) -> Tensor<B, D> {
    tensor(B::slim_layer_norm(
        prim(x),
        prim(gamma),
        prim(beta),
        epsilon,
        config.layer_norm,
        config.layer_norm_keep,
    ))
}

/// Inverted dropout keeping a byte or bit mask ([`SlimOps::slim_dropout`]).
pub fn dropout<B: SlimOps, const D: usize>(
    x: Tensor<B, D>,
    prob: f64,
    mask: Compression,
) -> Tensor<B, D> {
    if prob == 0.0 {
        return x;
    }
    tensor(B::slim_dropout(prim(x), prob, mask))
}

/// `[d0, .., dn]` → `(d0·…·d(n−1), dn)`.
fn rows_cols(dims: &[usize]) -> (usize, usize) {
    let cols = *dims.last().expect("rank ≥ 1");
    let rows = dims[..dims.len() - 1].iter().product();
    (rows, cols)
}
