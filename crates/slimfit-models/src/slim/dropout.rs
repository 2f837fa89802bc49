//! Inverted dropout whose saved mask costs one byte per value (`Paper`, as PyTorch's bool
//! mask) or one bit (`Scaled`) instead of fp32.

use burn::tensor::{Distribution, FloatDType, Int, IntDType, Tensor, backend::Backend};

use super::Compression;
use super::quant::BitMask;

/// The keep mask as stored for backward.
#[derive(Debug, Clone)]
pub(super) enum SavedMask<B: Backend> {
    /// One uint8 per value, `[rows, n]`.
    Bytes(Tensor<B, 2, Int>),
    /// Eight values per uint8.
    Bits(BitMask<B>),
}

impl<B: Backend> SavedMask<B> {
    pub(super) fn new(keep: Tensor<B, 2>, storage: Compression) -> Self {
        match storage {
            Compression::Scaled => Self::Bits(BitMask::pack(keep)),
            _ => Self::Bytes(keep.cast(IntDType::U8)),
        }
    }

    pub(super) fn restore(self) -> Tensor<B, 2> {
        match self {
            Self::Bytes(mask) => mask.cast(FloatDType::F32),
            Self::Bits(bits) => bits.unpack(),
        }
    }

    /// Bytes held.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        match self {
            Self::Bytes(m) => m.shape().num_elements(),
            Self::Bits(bits) => bits.bytes(),
        }
    }
}

/// `(y, mask)` with `y = x ⊙ keep / (1 − p)`, `keep ∈ {0, 1}`.
pub(super) fn forward<B: Backend>(
    x: Tensor<B, 2>,
    prob: f64,
    storage: Compression,
) -> (Tensor<B, 2>, SavedMask<B>) {
    let keep = x.random_like(Distribution::Bernoulli(1.0 - prob));
    let y = (x * keep.clone()).div_scalar(1.0 - prob);
    (y, SavedMask::new(keep, storage))
}

/// `dx = g ⊙ keep / (1 − p)`.
pub(super) fn backward<B: Backend>(
    grad: Tensor<B, 2>,
    mask: SavedMask<B>,
    prob: f64,
) -> Tensor<B, 2> {
    (grad * mask.restore()).div_scalar(1.0 - prob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    #[test]
    fn bit_packing_round_trips_and_is_eight_times_smaller() {
        let device = Default::default();
        let values: Vec<f32> = (0..3 * 13)
            .map(|i| ((i * 7 + 3) % 5 < 2) as u8 as f32)
            .collect();
        let keep = Tensor::<Flex, 2>::from_data(TensorData::new(values.clone(), [3, 13]), &device);
        let saved = SavedMask::new(keep, Compression::Scaled);
        assert_eq!(saved.bytes(), 3 * 2);
        let back: Vec<f32> = saved.restore().into_data().into_vec().unwrap();
        assert_eq!(back, values);
        let keep = Tensor::<Flex, 2>::from_data(TensorData::new(values.clone(), [3, 13]), &device);
        let saved = SavedMask::new(keep, Compression::Paper);
        assert_eq!(saved.bytes(), 3 * 13);
        assert_eq!(
            saved.restore().into_data().into_vec::<f32>().unwrap(),
            values
        );
    }
}
