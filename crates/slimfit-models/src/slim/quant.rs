//! Quantizers for saved activations, written with backend tensor ops so that they run on the
//! device that holds the activation (no host round trip on CUDA).
//!
//! Every quantizer works on a 2-D view `[rows, n]` (all leading dimensions flattened): "per
//! row" means per token (and per head for attention tensors).

use burn::tensor::{
    DType, ElementConversion, FloatDType, Int, IntDType, Shape, Tensor, TensorData,
    backend::Backend,
};

use super::SlimOps;
use super::compression::Compression;

/// A fixed-point format `Q(ib).(fb)`: `q = clamp(round_half_even(x · 2^fb), −2^(ib+fb),
/// 2^(ib+fb) − 1)`, `x̂ = q / 2^fb` (SLIMFIT.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedPoint {
    /// Integer bits (sign excluded).
    pub int_bits: u32,
    /// Fraction bits.
    pub frac_bits: u32,
}

impl FixedPoint {
    /// Q3.4: range [−8, 7.9375], step 1/16 — int8.
    pub const Q3_4: Self = Self::new(3, 4);
    /// Q0.8: step 1/256 — used unsigned (uint8) for probabilities.
    pub const Q0_8: Self = Self::new(0, 8);
    /// Q2.1: {−4, −3.5, …, 3.5} — 4 bits.
    pub const Q2_1: Self = Self::new(2, 1);

    /// `Q(int_bits).(frac_bits)`.
    pub const fn new(int_bits: u32, frac_bits: u32) -> Self {
        Self {
            int_bits,
            frac_bits,
        }
    }

    /// `2^fb`.
    pub fn step_inverse(self) -> f64 {
        f64::from(1u32 << self.frac_bits)
    }

    /// Smallest and largest integer code.
    pub fn code_range(self) -> (i64, i64) {
        let half = 1i64 << (self.int_bits + self.frac_bits);
        (-half, half - 1)
    }

    /// Quantize-dequantize round trip, for tests and error bounds.
    pub fn round_trip<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        let (lo, hi) = self.code_range();
        let s = self.step_inverse();
        x.mul_scalar(s)
            .round()
            .clamp(lo as f64, hi as f64)
            .div_scalar(s)
    }
}

fn rows<B: Backend, const D: usize>(x: Tensor<B, D>) -> (Tensor<B, 2>, Shape) {
    let shape = x.shape();
    let n = shape[D - 1];
    let r = shape.num_elements() / n.max(1);
    (x.reshape([r, n]), shape)
}

fn row_absmax<B: Backend>(x: &Tensor<B, 2>) -> Tensor<B, 2> {
    // A zero row gets a tiny scale instead of a division by zero.
    x.clone().abs().max_dim(1).clamp_min(1e-30)
}

/// An activation stored with 8 bits per value: fixed point, per-row absmax, or evenly
/// spaced over a known range.
#[derive(Debug, Clone)]
pub struct Quant8<B: Backend> {
    codes: Tensor<B, 2, Int>,
    scale: Scale8<B>,
    shape: Shape,
}

#[derive(Debug, Clone)]
enum Scale8<B: Backend> {
    /// `x̂ = q / 2^fb`.
    Fixed(f64),
    /// `x̂ = q · scale[row]`.
    PerRow(Tensor<B, 2>),
    /// `x̂ = low + q · step` (codes already offset to be non-negative).
    Affine {
        /// Value of code 0.
        low: f64,
        /// Distance between codes.
        step: f64,
    },
}

impl<B: Backend> Scale8<B> {
    fn apply(&self, codes: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            Self::Fixed(s) => codes.div_scalar(*s),
            Self::PerRow(scale) => codes.mul(scale.clone()),
            Self::Affine { low, step } => codes.mul_scalar(*step).add_scalar(*low),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Self::PerRow(s) => s.shape().num_elements() * 4,
            _ => 0,
        }
    }
}

impl<B: Backend> Quant8<B> {
    /// Signed int8: Q3.4 for `Paper`, per-row absmax/127 for `Scaled`.
    ///
    /// # Panics
    /// For `Compression::Exact`, which stores no codes.
    pub fn signed<const D: usize>(x: Tensor<B, D>, mode: Compression) -> Self {
        let (x, shape) = rows(x);
        match mode {
            Compression::Paper => {
                let fp = FixedPoint::Q3_4;
                let (lo, hi) = fp.code_range();
                let codes = x
                    .mul_scalar(fp.step_inverse())
                    .round()
                    .clamp(lo as f64, hi as f64)
                    .cast(IntDType::I8);
                Self {
                    codes,
                    scale: Scale8::Fixed(fp.step_inverse()),
                    shape,
                }
            }
            Compression::Scaled => {
                let scale = row_absmax(&x).div_scalar(127.0);
                let codes = x
                    .div(scale.clone())
                    .round()
                    .clamp(-127.0, 127.0)
                    .cast(IntDType::I8);
                Self {
                    codes,
                    scale: Scale8::PerRow(scale),
                    shape,
                }
            }
            Compression::Exact => panic!("Quant8 is not used for exact storage"),
        }
    }

    /// Unsigned uint8 for values in [0, 1] (softmax probabilities): Q0.8 for `Paper`
    /// (1.0 clips to 255/256), per-row max/255 for `Scaled`.
    ///
    /// # Panics
    /// For `Compression::Exact`.
    pub fn unsigned<const D: usize>(x: Tensor<B, D>, mode: Compression) -> Self {
        let (x, shape) = rows(x);
        let (codes, scale) = match mode {
            Compression::Paper => {
                let s = FixedPoint::Q0_8.step_inverse();
                (x.mul_scalar(s), Scale8::Fixed(s))
            }
            Compression::Scaled => {
                let scale = x.clone().max_dim(1).clamp_min(1e-30).div_scalar(255.0);
                (x.div(scale.clone()), Scale8::PerRow(scale))
            }
            Compression::Exact => panic!("Quant8 is not used for exact storage"),
        };
        Self {
            codes: codes.round().clamp(0.0, 255.0).cast(IntDType::U8),
            scale,
            shape,
        }
    }

    /// Values known to lie in `[low, high]` (e.g. a bounded derivative), 256 evenly spaced
    /// levels over that range; values outside clip.
    pub fn affine<const D: usize>(x: Tensor<B, D>, low: f64, high: f64) -> Self {
        let (x, shape) = rows(x);
        let step = (high - low) / 255.0;
        let codes = x
            .sub_scalar(low)
            .div_scalar(step)
            .round()
            .clamp(0.0, 255.0)
            .cast(IntDType::U8);
        Self {
            codes,
            scale: Scale8::Affine { low, step },
            shape,
        }
    }

    /// The reconstructed activation, original shape.
    pub fn dequantize<const D: usize>(&self) -> Tensor<B, D> {
        let x: Tensor<B, 2> = self.codes.clone().cast(FloatDType::F32);
        self.scale.apply(x).reshape(self.shape.clone())
    }

    /// Bytes held (codes and scales).
    pub fn bytes(&self) -> usize {
        self.codes.shape().num_elements() + self.scale.bytes()
    }
}

/// An activation stored with 4 bits per value, two values per byte.
#[derive(Debug, Clone)]
pub struct Quant4<B: Backend> {
    /// `[rows, n/2]` bytes: high nibble = even column, low nibble = odd column.
    packed: Tensor<B, 2, Int>,
    scale: Scale8<B>,
    shape: Shape,
}

impl<B: Backend> Quant4<B> {
    /// Q2.1 for `Paper`, per-row absmax/7 for `Scaled`. Rows of odd length get one padding
    /// value.
    ///
    /// # Panics
    /// For `Compression::Exact`.
    pub fn signed<const D: usize>(x: Tensor<B, D>, mode: Compression) -> Self {
        let (x, shape) = rows(x);
        let (codes, scale) = match mode {
            Compression::Paper => {
                let fp = FixedPoint::Q2_1;
                let (lo, hi) = fp.code_range();
                let s = fp.step_inverse();
                (
                    x.mul_scalar(s).round().clamp(lo as f64, hi as f64),
                    Scale8::Fixed(s),
                )
            }
            Compression::Scaled => {
                let scale = row_absmax(&x).div_scalar(7.0);
                (
                    x.div(scale.clone()).round().clamp(-8.0, 7.0),
                    Scale8::PerRow(scale),
                )
            }
            Compression::Exact => panic!("Quant4 is not used for exact storage"),
        };
        Self::pack(codes.add_scalar(8.0), scale, shape)
    }

    /// Values known to lie in `[low, high]` (e.g. a bounded derivative), 16 evenly spaced
    /// levels over that range; values outside clip.
    pub fn affine<const D: usize>(x: Tensor<B, D>, low: f64, high: f64) -> Self {
        let (x, shape) = rows(x);
        let step = (high - low) / 15.0;
        let codes = x.sub_scalar(low).div_scalar(step).round().clamp(0.0, 15.0);
        Self::pack(codes, Scale8::Affine { low, step }, shape)
    }

    /// Packs codes in [0, 15] two per byte.
    fn pack(codes: Tensor<B, 2>, scale: Scale8<B>, shape: Shape) -> Self {
        let [r, n] = codes.dims();
        let codes = if n % 2 == 1 {
            let device = codes.device();
            Tensor::cat(vec![codes, Tensor::zeros([r, 1], &device)], 1)
        } else {
            codes
        };
        let half = codes.dims()[1] / 2;
        // Pair columns: byte = 16·even + odd (exact in f32).
        let pairs = codes.reshape([r, half, 2]);
        let even = pairs.clone().slice([0..r, 0..half, 0..1]);
        let odd = pairs.slice([0..r, 0..half, 1..2]);
        let packed = even
            .mul_scalar(16.0)
            .add(odd)
            .reshape([r, half])
            .cast(IntDType::U8);
        Self {
            packed,
            scale,
            shape,
        }
    }

    /// The reconstructed activation, original shape.
    pub fn dequantize<const D: usize>(&self) -> Tensor<B, D> {
        let [r, half] = self.packed.dims();
        let bytes: Tensor<B, 2> = self.packed.clone().cast(FloatDType::F32);
        let even = bytes.clone().div_scalar(16.0).floor();
        let odd = bytes - even.clone().mul_scalar(16.0);
        let codes = Tensor::stack::<3>(vec![even, odd], 2).reshape([r, half * 2]);
        let codes = match self.scale {
            Scale8::Affine { .. } => codes,
            _ => codes.sub_scalar(8.0),
        };
        let n = self.shape[self.shape.num_dims() - 1];
        let codes = if n < half * 2 {
            codes.slice([0..r, 0..n])
        } else {
            codes
        };
        self.scale.apply(codes).reshape(self.shape.clone())
    }

    /// Bytes held (packed codes and scales).
    pub fn bytes(&self) -> usize {
        self.packed.shape().num_elements() + self.scale.bytes()
    }
}

/// A 0/1 tensor (a dropout keep mask) stored with one bit per value, eight per byte.
#[derive(Debug, Clone)]
pub struct BitMask<B: Backend> {
    /// `[rows · ceil(n/8), 1]` bytes, the first value of each group of eight in the most
    /// significant bit.
    packed: Tensor<B, 2, Int>,
    rows: usize,
    n: usize,
}

/// Place value of each of a byte's eight bits, most significant first.
const BIT_WEIGHTS: [f32; 8] = [128.0, 64.0, 32.0, 16.0, 8.0, 4.0, 2.0, 1.0];
/// Right shifts that bring each of [`BIT_WEIGHTS`]' bits to the lowest place.
const BIT_SHIFTS: [u8; 8] = [7, 6, 5, 4, 3, 2, 1, 0];

impl<B: Backend> BitMask<B> {
    /// Packs `keep` (`[rows, n]`, values 0 or 1); rows are padded to a multiple of 8.
    pub fn pack(keep: Tensor<B, 2>) -> Self {
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
        // [groups, 8] · [8, 1]: each group of eight 0/1 values becomes one byte (a gemm,
        // which runs on every core).
        let packed = keep.reshape([rows * padded / 8, 8]).matmul(weights);
        Self {
            packed: packed.cast(IntDType::U8),
            rows,
            n,
        }
    }

    /// The mask as fp32 0/1 values, `[rows, n]`.
    pub fn unpack(self) -> Tensor<B, 2> {
        let Self { packed, rows, n } = self;
        let [groups, _] = packed.dims();
        let shifts = Tensor::<B, 2, Int>::from_data(
            TensorData::new(BIT_SHIFTS.to_vec(), [1, 8]),
            &packed.device(),
        )
        .cast(IntDType::U8);
        // Bit k of each byte, unpacked in uint8 (a byte per value) before the one conversion
        // to fp32: (byte >> (7 − k)) & 1.
        let bits = packed
            .repeat_dim(1, 8)
            .bitwise_right_shift(shifts)
            .bitwise_and_scalar(1u8.elem())
            .cast(FloatDType::F32)
            .reshape([rows, groups * 8 / rows]);
        if groups * 8 / rows > n {
            bits.slice([0..rows, 0..n])
        } else {
            bits
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.packed.shape().num_elements()
    }

    /// The packed bytes, `[rows · ceil(n/8), 1]` uint8, first value in the most significant
    /// bit (for benchmarks comparing unpacking methods on the same bytes).
    pub fn packed(&self) -> &Tensor<B, 2, Int> {
        &self.packed
    }
}

/// The largest `keep` fraction (by magnitude) of each row, as values and column indices.
#[derive(Debug, Clone)]
pub struct TopK<B: Backend> {
    values: Tensor<B, 2>,
    indices: Tensor<B, 2, Int>,
    shape: Shape,
}

impl<B: SlimOps> TopK<B> {
    /// Keeps `ceil(keep · n)` entries of each row (at least one, fewer than `n`).
    ///
    /// # Panics
    /// When rows have fewer than two columns.
    pub fn new<const D: usize>(x: Tensor<B, D>, keep: f32) -> Self {
        let (x, shape) = rows(x);
        let n = x.dims()[1];
        assert!(n >= 2, "top-k needs at least two columns");
        // burn's topk requires k < n.
        let k = ((keep as f64 * n as f64).ceil() as usize).clamp(1, n - 1);
        let indices: Tensor<B, 2, Int> = Tensor::from_primitive(B::slim_row_topk_indices(
            x.clone().abs().into_primitive().tensor(),
            k,
        ));
        let values = x.gather(1, indices.clone());
        let index_dtype = if n <= i16::MAX as usize {
            IntDType::I16
        } else {
            IntDType::I32
        };
        Self {
            values,
            indices: indices.cast(index_dtype),
            shape,
        }
    }
}

impl<B: Backend> TopK<B> {
    /// The dense reconstruction: kept entries in place, zeros elsewhere.
    pub fn densify<const D: usize>(&self) -> Tensor<B, D> {
        let [r, _] = self.values.dims();
        let n = self.shape[self.shape.num_dims() - 1];
        let device = self.values.device();
        let indices = self.indices.clone().cast(DType::I64);
        Tensor::<B, 2>::zeros([r, n], &device)
            .scatter(
                1,
                indices,
                self.values.clone(),
                burn::tensor::IndexingUpdateOp::Add,
            )
            .reshape(self.shape.clone())
    }
}
