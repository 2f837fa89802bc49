//! Inverted dropout whose saved mask costs one byte per value (`Paper`, as PyTorch's bool
//! mask) or one bit (`Scaled`) instead of fp32.

use burn::tensor::{Distribution, FloatDType, Int, IntDType, Tensor, TensorData, backend::Backend};

use super::Compression;

/// Bit weights of one packed byte, most significant first.
const BIT_WEIGHTS: [f32; 8] = [128.0, 64.0, 32.0, 16.0, 8.0, 4.0, 2.0, 1.0];

/// The keep mask as stored for backward.
#[derive(Debug, Clone)]
pub(super) enum SavedMask<B: Backend> {
    /// One uint8 per value, `[rows, n]`.
    Bytes(Tensor<B, 2, Int>),
    /// Eight values per uint8, `[rows · ceil(n/8), 1]`; `n` remembers the row length.
    Bits {
        packed: Tensor<B, 2, Int>,
        rows: usize,
        n: usize,
    },
}

impl<B: Backend> SavedMask<B> {
    pub(super) fn new(keep: Tensor<B, 2>, storage: Compression) -> Self {
        match storage {
            Compression::Scaled => {
                let [rows, n] = keep.dims();
                let padded = n.div_ceil(8) * 8;
                let keep = if padded > n {
                    let device = keep.device();
                    Tensor::cat(vec![keep, Tensor::zeros([rows, padded - n], &device)], 1)
                } else {
                    keep
                };
                let weights = Tensor::<B, 2>::from_data(
                    TensorData::new(BIT_WEIGHTS.to_vec(), [8, 1]),
                    &keep.device(),
                );
                // [groups, 8] · [8, 1]: each group of eight 0/1 values becomes one byte.
                let packed = keep.reshape([rows * padded / 8, 8]).matmul(weights);
                Self::Bits {
                    packed: packed.cast(IntDType::U8),
                    rows,
                    n,
                }
            }
            _ => Self::Bytes(keep.cast(IntDType::U8)),
        }
    }

    pub(super) fn restore(self) -> Tensor<B, 2> {
        match self {
            Self::Bytes(mask) => mask.cast(FloatDType::F32),
            Self::Bits { packed, rows, n } => {
                let [groups, _] = packed.dims();
                let bytes: Tensor<B, 2> = packed.cast(FloatDType::F32);
                let weights = Tensor::<B, 2>::from_data(
                    TensorData::new(BIT_WEIGHTS.to_vec(), [1, 8]),
                    &bytes.device(),
                );
                // bit k = floor(byte / w_k) mod 2
                let shifted = bytes.repeat_dim(1, 8).div(weights).floor();
                let bits = shifted.clone() - shifted.div_scalar(2.0).floor().mul_scalar(2.0);
                let bits = bits.reshape([rows, groups * 8 / rows]);
                if groups * 8 / rows > n {
                    bits.slice([0..rows, 0..n])
                } else {
                    bits
                }
            }
        }
    }

    /// Bytes held.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        match self {
            Self::Bytes(m) => m.shape().num_elements(),
            Self::Bits { packed, .. } => packed.shape().num_elements(),
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
