//! Inverted dropout that keeps its mask as one byte per value instead of fp32.

use burn::tensor::{Distribution, FloatDType, Int, IntDType, Tensor, backend::Backend};

/// `(y, mask)` with `y = x ⊙ mask / (1 − p)` and `mask ∈ {0, 1}` stored as uint8.
pub(super) fn forward<B: Backend>(x: Tensor<B, 2>, prob: f64) -> (Tensor<B, 2>, Tensor<B, 2, Int>) {
    let keep = x.random_like(Distribution::Bernoulli(1.0 - prob));
    let y = (x * keep.clone()).div_scalar(1.0 - prob);
    (y, keep.cast(IntDType::U8))
}

/// `dx = g ⊙ mask / (1 − p)`.
pub(super) fn backward<B: Backend>(
    grad: Tensor<B, 2>,
    mask: Tensor<B, 2, Int>,
    prob: f64,
) -> Tensor<B, 2> {
    let mask: Tensor<B, 2> = mask.cast(FloatDType::F32);
    (grad * mask).div_scalar(1.0 - prob)
}
