//! Exact (erf) GELU whose backward uses a compressed copy of the input.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

use burn::tensor::activation;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, backend::Backend};

use super::quant::Quant4;
use super::{Compression, prim, tensor};

/// Forward on any backend: `x·Φ(x)`.
pub(super) fn forward<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    prim(activation::gelu(tensor::<B, 1>(x)))
}

/// `d GELU / dx = Φ(x) + x·φ(x)`, the exact derivative (burn's built-in backward uses the
/// tanh approximation's).
pub(super) fn derivative<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let cdf = x
        .clone()
        .mul_scalar(FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul_scalar(0.5);
    let pdf = x
        .clone()
        .powi_scalar(2)
        .mul_scalar(-0.5)
        .exp()
        .mul_scalar(1.0 / (2.0 * PI).sqrt());
    cdf + x * pdf
}

/// The GELU input as kept for backward.
#[derive(Debug, Clone)]
pub(super) enum SavedGeluInput<B: Backend> {
    Full(Tensor<B, 2>),
    Packed(Quant4<B>),
}

impl<B: Backend> SavedGeluInput<B> {
    pub(super) fn new(x: Tensor<B, 2>, save: Compression) -> Self {
        match save {
            Compression::Exact => Self::Full(x),
            mode => Self::Packed(Quant4::signed(x, mode)),
        }
    }

    pub(super) fn restore(self) -> Tensor<B, 2> {
        match self {
            Self::Full(x) => x,
            Self::Packed(q) => q.dequantize(),
        }
    }
}
