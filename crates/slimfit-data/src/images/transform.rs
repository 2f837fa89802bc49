//! Turning [`Image`]s into ViT input: pure Rust, on `u8` and `f32` buffers.
//!
//! [`VitTransform::apply`] does, in order:
//! 1. for training ([`Augment`]), a **random crop with zero padding** at the source
//!    resolution — the image is padded by `pad` black pixels on every side and a window of
//!    its original size is cut at a uniform offset `(dx, dy) ∈ [0, 2·pad]²` — then a
//!    **horizontal flip** with probability ½ (random draws, per image: `dx`, `dy`, then the
//!    flip coin, from the seeded [`Rng`], so a seed fixes every crop and flip);
//! 2. a **bilinear resize** to `S × S` ([`resize_bilinear`]'s filter, kept in `f32`);
//! 3. grey → RGB by repeating the channel;
//! 4. scaling to `[0, 1]` and **normalisation** `(v − mean[c]) / std[c]`;
//! 5. output **CHW** `f32`, `3 × S × S` per image; [`VitTransform::batch`] concatenates
//!    images into `[batch, 3, S, S]`.
//!
//! **Resizing** is PIL's `BILINEAR` (triangle filter over pixel centres, half-pixel aligned;
//! on downscaling the filter widens by the scale factor, i.e. it antialiases). Upscaling is
//! therefore exactly PyTorch's `interpolate(mode="bilinear", align_corners=False)` with edge
//! clamping; downscaling matches PIL and torchvision's `antialias=True`. Arithmetic is `f64`
//! for the weights and `f32` for the pixels; [`resize_bilinear`] rounds to `u8` at the end
//! (PIL's 8-bit fixed-point weights can differ by one grey level).

use super::{Image, ImageError, ImageSet};

/// ImageNet per-channel means (RGB, on `[0, 1]` values).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet per-channel standard deviations (RGB, on `[0, 1]` values).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Largest output side accepted by the transforms.
const MAX_SIDE: usize = 1 << 14;

/// A small seedable generator (SplitMix64): every seed, 0 included, gives a full-period,
/// well-mixed stream; the same seed always gives the same stream on every platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The generator's state: `Rng::new(rng.state())` continues where `rng` is.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (unbiased, by rejection); 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }
}

// ------------------------------------------------------------------------------------------
// Resizing.

/// One output sample's filter: weights over `start..start + weights.len()`.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// PIL's bilinear coefficients for resampling `in_size` samples to `out_size`.
fn taps(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale;
    (0..out_size)
        .map(|x| {
            let center = (x as f64 + 0.5) * scale;
            let lo = (center - support + 0.5).floor().max(0.0) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(in_size);
            let raw: Vec<f64> = (lo..hi)
                .map(|i| triangle((i as f64 - center + 0.5) / filter_scale))
                .collect();
            let sum: f64 = raw.iter().sum();
            Taps {
                start: lo,
                weights: raw.iter().map(|w| (w / sum) as f32).collect(),
            }
        })
        .collect()
}

/// Resizes an interleaved HWC `f32` buffer (`w × h × c`) to `out_w × out_h`.
fn resize_hwc(
    src: &[f32],
    (w, h, c): (usize, usize, usize),
    out_w: usize,
    out_h: usize,
) -> Vec<f32> {
    let horizontal = if out_w == w {
        src.to_vec()
    } else {
        let taps = taps(w, out_w);
        let mut out = vec![0f32; out_w * h * c];
        for y in 0..h {
            let row = &src[y * w * c..(y + 1) * w * c];
            for (x, t) in taps.iter().enumerate() {
                let o = (y * out_w + x) * c;
                for (k, &wt) in t.weights.iter().enumerate() {
                    let s = (t.start + k) * c;
                    for ch in 0..c {
                        out[o + ch] += wt * row[s + ch];
                    }
                }
            }
        }
        out
    };
    if out_h == h {
        return horizontal;
    }
    let taps = taps(h, out_h);
    let stride = out_w * c;
    let mut out = vec![0f32; stride * out_h];
    for (y, t) in taps.iter().enumerate() {
        let o = &mut out[y * stride..(y + 1) * stride];
        for (k, &wt) in t.weights.iter().enumerate() {
            let s = &horizontal[(t.start + k) * stride..(t.start + k + 1) * stride];
            for (a, &b) in o.iter_mut().zip(s) {
                *a += wt * b;
            }
        }
    }
    out
}

fn check_side(what: &str, side: usize) -> Result<(), ImageError> {
    if side == 0 || side > MAX_SIDE {
        return Err(ImageError::Invalid(format!(
            "{what} {side} is out of range 1..={MAX_SIDE}"
        )));
    }
    Ok(())
}

fn to_f32(img: &Image) -> Vec<f32> {
    img.pixels().iter().map(|&v| f32::from(v)).collect()
}

/// Resizes to `width × height` with the bilinear filter described in the
/// [module docs](self), rounding to the nearest `u8`. Channels are kept.
pub fn resize_bilinear(img: &Image, width: usize, height: usize) -> Result<Image, ImageError> {
    check_side("width", width)?;
    check_side("height", height)?;
    let c = img.channels();
    let out = resize_hwc(&to_f32(img), (img.width(), img.height(), c), width, height);
    let pixels = out
        .into_iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    Image::new(width, height, c, pixels)
}

// ------------------------------------------------------------------------------------------
// Channels, flips, crops, normalisation.

/// A grey image repeated into 3 identical channels; an RGB image is returned unchanged.
pub fn grey_to_rgb(img: &Image) -> Image {
    if img.channels() == 3 {
        return img.clone();
    }
    let pixels = img.pixels().iter().flat_map(|&v| [v, v, v]).collect();
    Image {
        width: img.width(),
        height: img.height(),
        channels: 3,
        pixels,
    }
}

/// The image mirrored left–right.
pub fn hflip(img: &Image) -> Image {
    let (w, c) = (img.width(), img.channels());
    let mut pixels = Vec::with_capacity(img.pixels().len());
    for row in img.pixels().chunks_exact(w * c) {
        for px in row.chunks_exact(c).rev() {
            pixels.extend_from_slice(px);
        }
    }
    Image {
        pixels,
        ..img.clone_shape()
    }
}

impl Image {
    fn clone_shape(&self) -> Image {
        Image {
            width: self.width,
            height: self.height,
            channels: self.channels,
            pixels: Vec::new(),
        }
    }
}

/// The window of the image's own size at offset `(dx, dy)` of the image padded with `pad`
/// black pixels on every side: output pixel `(x, y)` is input pixel
/// `(x + dx − pad, y + dy − pad)`, or 0 outside the image. `dx` and `dy` must be `≤ 2·pad`.
pub fn pad_crop(img: &Image, pad: usize, dx: usize, dy: usize) -> Result<Image, ImageError> {
    let limit = pad.checked_mul(2);
    if limit.is_none_or(|l| dx > l || dy > l) {
        return Err(ImageError::Invalid(format!(
            "crop offset ({dx}, {dy}) is outside 0..=2·{pad}"
        )));
    }
    let (w, h, c) = (img.width(), img.height(), img.channels());
    let mut pixels = vec![0u8; img.pixels().len()];
    for y in 0..h {
        let Some(sy) = source(y, dy, pad, h) else {
            continue;
        };
        for x in 0..w {
            let Some(sx) = source(x, dx, pad, w) else {
                continue;
            };
            let (o, s) = ((y * w + x) * c, (sy * w + sx) * c);
            pixels[o..o + c].copy_from_slice(&img.pixels()[s..s + c]);
        }
    }
    Ok(Image {
        pixels,
        ..img.clone_shape()
    })
}

/// The source coordinate `i + offset − pad` if it lies in `0..len`.
fn source(i: usize, offset: usize, pad: usize, len: usize) -> Option<usize> {
    i.checked_add(offset)?.checked_sub(pad).filter(|&s| s < len)
}

fn check_stats(mean: &[f32; 3], std: &[f32; 3]) -> Result<(), ImageError> {
    if mean.iter().any(|m| !m.is_finite()) || std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err(ImageError::Invalid(format!(
            "normalisation needs finite means and positive finite stds, got mean {mean:?}, \
             std {std:?}"
        )));
    }
    Ok(())
}

/// HWC floats on `[0, 255]` (1 or 3 channels) → normalised CHW with 3 channels, appended.
fn push_chw(src: &[f32], channels: usize, mean: &[f32; 3], std: &[f32; 3], out: &mut Vec<f32>) {
    for c in 0..3 {
        let from = if channels == 1 { 0 } else { c };
        let (m, s) = (mean[c], std[c]);
        out.extend(
            src.iter()
                .skip(from)
                .step_by(channels)
                .map(|&v| (v / 255.0 - m) / s),
        );
    }
}

/// The image as normalised CHW `f32` with 3 channels (grey repeated):
/// `out[c·H·W + y·W + x] = (pixel / 255 − mean[c]) / std[c]`. No resizing.
pub fn normalize_chw(img: &Image, mean: [f32; 3], std: [f32; 3]) -> Result<Vec<f32>, ImageError> {
    check_stats(&mean, &std)?;
    let mut out = Vec::with_capacity(3 * img.width() * img.height());
    push_chw(&to_f32(img), img.channels(), &mean, &std, &mut out);
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// The pipeline.

/// Training-time augmentation: random crop with zero padding, then an optional random
/// horizontal flip (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augment {
    /// Padding on each side before the crop; 0 disables cropping.
    pub pad: usize,
    /// Whether to flip left–right with probability ½.
    pub hflip: bool,
}

impl Default for Augment {
    /// `pad = 4`, flips on — the usual CIFAR recipe (for 28–32 pixel sources).
    fn default() -> Self {
        Augment {
            pad: 4,
            hflip: true,
        }
    }
}

impl Augment {
    /// Crops and flips `img` with draws from `rng` (`dx`, `dy`, then the coin — always all
    /// three, so the stream does not depend on the settings).
    pub fn apply(&self, img: &Image, rng: &mut Rng) -> Result<Image, ImageError> {
        let span = self
            .pad
            .checked_mul(2)
            .and_then(|s| s.checked_add(1))
            .ok_or_else(|| ImageError::Invalid(format!("padding {} is too large", self.pad)))?;
        let dx = rng.below(span as u64) as usize;
        let dy = rng.below(span as u64) as usize;
        let flip = rng.coin();
        let cropped = if self.pad == 0 {
            img.clone()
        } else {
            pad_crop(img, self.pad, dx, dy)?
        };
        Ok(if self.hflip && flip {
            hflip(&cropped)
        } else {
            cropped
        })
    }
}

/// Images → ViT input: optional augmentation, bilinear resize to `size × size`, grey → RGB,
/// normalisation, CHW `f32` (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VitTransform {
    /// Output side `S`.
    pub size: usize,
    /// Per-channel mean subtracted (on `[0, 1]` values).
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
    /// Training augmentation; `None` for evaluation (then no random draws are made).
    pub augment: Option<Augment>,
}

/// A batch of transformed images, `pixels` row-major `[batch_size, 3, size, size]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBatch {
    /// Number of images.
    pub batch_size: usize,
    /// Side `S` of each image.
    pub size: usize,
    /// The normalised pixels, `batch_size × 3 × size × size`.
    pub pixels: Vec<f32>,
    /// The class of each image.
    pub labels: Vec<usize>,
}

impl ImageBatch {
    /// `[batch_size, 3, size, size]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.batch_size, 3, self.size, self.size]
    }
}

impl VitTransform {
    /// Evaluation transform: resize to `size`, ImageNet normalisation, no augmentation.
    pub fn eval(size: usize) -> VitTransform {
        VitTransform {
            size,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            augment: None,
        }
    }

    /// Training transform: [`eval`](Self::eval) preceded by `augment`.
    pub fn train(size: usize, augment: Augment) -> VitTransform {
        VitTransform {
            augment: Some(augment),
            ..Self::eval(size)
        }
    }

    fn check(&self) -> Result<(), ImageError> {
        check_side("output size", self.size)?;
        check_stats(&self.mean, &self.std)
    }

    fn push(&self, img: &Image, rng: &mut Rng, out: &mut Vec<f32>) -> Result<(), ImageError> {
        let augmented;
        let img = match &self.augment {
            Some(augment) => {
                augmented = augment.apply(img, rng)?;
                &augmented
            }
            None => img,
        };
        let (w, h, c) = (img.width(), img.height(), img.channels());
        let resized = resize_hwc(&to_f32(img), (w, h, c), self.size, self.size);
        push_chw(&resized, c, &self.mean, &self.std, out);
        Ok(())
    }

    /// One image as `3 × size × size` CHW floats.
    pub fn apply(&self, img: &Image, rng: &mut Rng) -> Result<Vec<f32>, ImageError> {
        self.check()?;
        let mut out = Vec::with_capacity(3 * self.size * self.size);
        self.push(img, rng, &mut out)?;
        Ok(out)
    }

    /// The images of `set` at `indices`, in that order, as one batch (random draws are taken
    /// image after image from `rng`). An index out of range is an error.
    pub fn batch(
        &self,
        set: &ImageSet,
        indices: &[usize],
        rng: &mut Rng,
    ) -> Result<ImageBatch, ImageError> {
        self.check()?;
        let n = set.images.len().min(set.labels.len());
        let mut pixels = Vec::with_capacity(indices.len() * 3 * self.size * self.size);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= n {
                return Err(ImageError::Invalid(format!(
                    "index {i} is out of range ({n} images)"
                )));
            }
            self.push(&set.images[i], rng, &mut pixels)?;
            labels.push(set.labels[i]);
        }
        Ok(ImageBatch {
            batch_size: indices.len(),
            size: self.size,
            pixels,
            labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_bounded() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<u64> = (0..100).map(|_| a.below(9)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.below(9)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x < 9));
        assert!((0..9).all(|v| xs.contains(&v)));
        assert_eq!(Rng::new(0).below(0), 0);
        // SplitMix64's published first output for seed 0.
        assert_eq!(Rng::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn taps_are_normalised_and_identity_for_same_size() {
        for (i, o) in [(28, 224), (224, 28), (5, 3), (3, 5), (7, 7), (1, 4), (4, 1)] {
            for t in taps(i, o) {
                let sum: f32 = t.weights.iter().sum();
                assert!((sum - 1.0).abs() < 1e-6, "{i}→{o}");
                assert!(t.start + t.weights.len() <= i);
            }
        }
        for (x, t) in taps(5, 5).iter().enumerate() {
            assert_eq!(t.start, x);
            assert_eq!(t.weights[0], 1.0);
            assert!(t.weights[1..].iter().all(|&w| w == 0.0));
        }
    }
}
