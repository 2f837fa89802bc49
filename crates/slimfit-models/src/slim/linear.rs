//! `y = x·Wᵀ + b` whose backward keeps the input only for the weight gradient.

use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, Tensor, TensorMetadata, backend::Backend};

use super::quant::Quant8;
use super::{Compression, prim, rows_cols, tensor};

/// Gradients `(input(s)…)`, each present only when asked for.
pub(super) type LinearGrads<B> = (
    Option<Tensor<B, 2>>,
    Option<Tensor<B, 2>>,
    Option<Tensor<B, 1>>,
);

/// Plain forward on any backend.
pub(super) fn forward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    let shape = x.shape();
    let (rows, cols) = rows_cols(&shape.to_vec());
    let x: Tensor<B, 2> = tensor::<B, 2>(B::float_reshape(x, Shape::new([rows, cols])));
    let w: Tensor<B, 2> = tensor(weight);
    let out_dim = w.dims()[0];
    let y = x.matmul(w.transpose()) + tensor::<B, 1>(bias).unsqueeze();
    let mut out_shape = shape.to_vec();
    *out_shape.last_mut().expect("rank ≥ 1") = out_dim;
    B::float_reshape(prim(y), Shape::from(out_shape))
}

/// The input as kept for `dW`.
#[derive(Debug, Clone)]
pub(super) enum SavedInput<B: Backend> {
    /// fp32, `[rows, in]`.
    Full(Tensor<B, 2>),
    /// 8-bit, `[rows, in]`.
    Quantized(Quant8<B>),
}

impl<B: Backend> SavedInput<B> {
    pub(super) fn new(x: Tensor<B, 2>, save: Compression) -> Self {
        match save {
            Compression::Exact => Self::Full(x),
            mode => Self::Quantized(Quant8::signed(x, mode)),
        }
    }

    pub(super) fn restore(self) -> Tensor<B, 2> {
        match self {
            Self::Full(x) => x,
            Self::Quantized(q) => q.dequantize(),
        }
    }
}

/// Gradients of `y = x·Wᵀ + b` from `g = dL/dy`, each only if asked for.
///
/// # Shapes
/// - grad: `[rows, out]`; input `[rows, in]`; weight `[out, in]`
pub(super) fn backward<B: Backend>(
    grad: Tensor<B, 2>,
    input: Option<Tensor<B, 2>>,
    weight: Option<Tensor<B, 2>>,
    want_bias: bool,
) -> LinearGrads<B> {
    let dx = weight.map(|w| grad.clone().matmul(w));
    let dw = input.map(|x| grad.clone().transpose().matmul(x));
    let db = want_bias.then(|| {
        let out = grad.dims()[1];
        grad.sum_dim(0).reshape([out])
    });
    (dx, dw, db)
}
