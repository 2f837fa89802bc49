//! Exact (erf) GELU whose backward uses a compressed copy of the input.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

use burn::tensor::activation;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, backend::Backend};

use super::quant::{Quant4, Quant8};
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

/// GELU′ is bounded: its extremes sit at x = ∓√2, GELU′(∓√2) = Φ(∓√2) ∓ √2·φ(√2).
fn derivative_range() -> (f64, f64) {
    let phi = (-1.0f64).exp() / (2.0 * PI).sqrt();
    let cdf_low = 0.078_649_603_525_142_6; // Φ(−√2)
    let low = cdf_low - std::f64::consts::SQRT_2 * phi;
    let high = (1.0 - cdf_low) + std::f64::consts::SQRT_2 * phi;
    (low, high)
}

/// What GELU keeps for backward.
#[derive(Debug, Clone)]
pub(super) enum SavedGelu<B: Backend> {
    /// The fp32 input (exact).
    Input(Tensor<B, 2>),
    /// The input in 4 bits (paper: Q2.1); the derivative is evaluated at the rounded input.
    PackedInput(Quant4<B>),
    /// The derivative itself in 8 bits over its bounded range (scaled): the error lands on
    /// GELU′ directly (≤ 0.0025) instead of on x (≤ 0.25, times |GELU″| ≤ 0.8). Four bits
    /// (≤ 0.042) were the one op whose gradient cosine fell below 0.999 on MiniLM (0.988,
    /// docs/COMPRESSION.md) and cost CoLA MCC; the extra half byte per value is small
    /// beside the fp32 inputs trainable Linears keep.
    Derivative(Quant8<B>),
}

impl<B: Backend> SavedGelu<B> {
    pub(super) fn new(x: Tensor<B, 2>, save: Compression) -> Self {
        match save {
            Compression::Exact => Self::Input(x),
            Compression::Paper => Self::PackedInput(Quant4::signed(x, Compression::Paper)),
            Compression::Scaled => {
                let (low, high) = derivative_range();
                Self::Derivative(Quant8::affine(derivative(x), low, high))
            }
        }
    }

    /// GELU′ at the (possibly reconstructed) input.
    pub(super) fn derivative(self) -> Tensor<B, 2> {
        match self {
            Self::Input(x) => derivative(x),
            Self::PackedInput(q) => derivative(q.dequantize()),
            Self::Derivative(d) => d.dequantize(),
        }
    }
}
