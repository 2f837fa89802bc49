//! Image-classification data sets, free of any tensor library.
//!
//! Every reader returns an [`ImageSet`]: decoded [`Image`]s (8-bit, **interleaved HWC**:
//! row-major rows of `width × channels` bytes, channels `1` = grey or `3` = RGB), one class
//! index per image, and the class names.
//!
//! - [`load_mnist`] / [`read_idx_images`] / [`read_idx_labels`]: MNIST and Fashion-MNIST IDX
//!   files, gzipped or not (detected by content, not by name);
//! - [`load_cifar10`], [`load_cifar100`]: the CIFAR binary versions (planar records are
//!   converted to interleaved RGB);
//! - [`ImageFolder`]: an ImageNet-style tree `root/<class>/**/*.{jpg,jpeg,png}`, decoded to
//!   RGB with the `image` crate (JPEG and PNG only);
//! - [`fashion_mnist`]: the Fashion-MNIST asset (explicit directory → cache → `apt-get
//!   download` of Debian's `dataset-fashion-mnist`);
//! - [`VitTransform`] and the functions beside it: bilinear resizing, grey → RGB, random crop
//!   with padding and horizontal flips from a seeded [`Rng`], normalisation, and CHW `f32`
//!   batches ([`ImageBatch`], `[batch, 3, S, S]`);
//! - [`balanced_subsample`]: a deterministic, nested, `n`-per-class subsample.
//!
//! Malformed input is never a panic: every reader's error names the file and what is wrong
//! (the record or byte offset where it applies).
//!
//! The formats and the transforms are described in the sub-modules ([`idx`], [`cifar`],
//! [`folder`], [`transform`]), whose items are all re-exported here.
//!
//! ```no_run
//! use slimfit_data::images::{Augment, ImageSplit, Rng, VitTransform, fashion_mnist};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let train = fashion_mnist::open(None, ImageSplit::Train)?; // apt-get download on first use
//! let sub = train.balanced_subsample(100, 0); // 100 per class, deterministic, nested
//! let transform = VitTransform::train(224, Augment::default()); // ImageNet mean/std
//! let batch = transform.batch(&sub, &[0, 1, 2, 3], &mut Rng::new(42))?;
//! assert_eq!(batch.shape(), [4, 3, 224, 224]); // CHW f32, ready for a tensor
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::assets::AssetError;

pub mod cifar;
mod deb;
pub mod fashion_mnist;
pub mod folder;
pub mod idx;
pub mod transform;

pub use cifar::{
    CIFAR10_DIR, CIFAR100_DIR, CifarLabels, RECORD_PIXELS, load_cifar10, load_cifar100,
};
pub use folder::{EXTENSIONS, ImageFolder, decode_image};
pub use idx::{MNIST_CLASSES, idx_file, load_idx, load_mnist, read_idx_images, read_idx_labels};
pub use transform::{
    Augment, IMAGENET_MEAN, IMAGENET_STD, ImageBatch, Rng, VitTransform, grey_to_rgb, hflip,
    normalize_chw, pad_crop, resize_bilinear,
};

/// Which half of a data set with a fixed train/test split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageSplit {
    /// The training set.
    Train,
    /// The test set.
    Test,
}

/// Errors of reading or transforming images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Resolving (or fetching) a data set directory failed.
    #[error(transparent)]
    Asset(#[from] AssetError),
    /// A file or directory is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file does not hold what its format says.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// An image file could not be decoded.
    #[error("{path}: cannot decode image: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// An argument is out of range (an image's shape, a transform's parameters, an index).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

pub(crate) fn read_err(path: &std::path::Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn malformed(path: &std::path::Path, reason: impl Into<String>) -> ImageError {
    ImageError::Malformed {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// One 8-bit image, interleaved HWC: pixel `(x, y)` channel `c` is
/// `pixels[(y * width + x) * channels + c]`.
///
/// Fields are private so that the shape always matches the buffer: `width, height ≥ 1`,
/// `channels` is 1 (grey) or 3 (RGB), `pixels.len() == width * height * channels`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Image {
    width: usize,
    height: usize,
    channels: usize,
    pixels: Vec<u8>,
}

impl Image {
    /// An image of the given shape over `pixels` (interleaved HWC); an error if the shape is
    /// empty, `channels` is not 1 or 3, or the buffer's length does not match.
    pub fn new(
        width: usize,
        height: usize,
        channels: usize,
        pixels: Vec<u8>,
    ) -> Result<Image, ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError::Invalid(format!(
                "empty image shape {width}×{height}"
            )));
        }
        if channels != 1 && channels != 3 {
            return Err(ImageError::Invalid(format!(
                "{channels} channels (expected 1 or 3)"
            )));
        }
        let expected = width
            .checked_mul(height)
            .and_then(|n| n.checked_mul(channels));
        if expected != Some(pixels.len()) {
            return Err(ImageError::Invalid(format!(
                "{} bytes of pixels for a {width}×{height}×{channels} image",
                pixels.len()
            )));
        }
        Ok(Image {
            width,
            height,
            channels,
            pixels,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// 1 (grey) or 3 (RGB).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The interleaved HWC bytes.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The interleaved HWC bytes, by value.
    pub fn into_pixels(self) -> Vec<u8> {
        self.pixels
    }

    /// Channel `c` of pixel `(x, y)`, or `None` outside the image.
    pub fn get(&self, x: usize, y: usize, c: usize) -> Option<u8> {
        if x >= self.width || y >= self.height || c >= self.channels {
            return None;
        }
        Some(self.pixels[(y * self.width + x) * self.channels + c])
    }
}

/// A labelled image data set: `images[i]` has class `labels[i]`, named `classes[labels[i]]`.
///
/// The readers of this module guarantee `images.len() == labels.len()` and
/// `labels[i] < classes.len()`; [`ImageSet::new`] checks the same for sets built by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// The images, in file order.
    pub images: Vec<Image>,
    /// Class index of each image.
    pub labels: Vec<usize>,
    /// Class names; the index is the label.
    pub classes: Vec<String>,
}

impl ImageSet {
    /// A set from its parts, checking that lengths agree and every label names a class.
    pub fn new(
        images: Vec<Image>,
        labels: Vec<usize>,
        classes: Vec<String>,
    ) -> Result<ImageSet, ImageError> {
        if images.len() != labels.len() {
            return Err(ImageError::Invalid(format!(
                "{} images but {} labels",
                images.len(),
                labels.len()
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l >= classes.len())
        {
            return Err(ImageError::Invalid(format!(
                "label {l} of image {i} is out of range ({} classes)",
                classes.len()
            )));
        }
        Ok(ImageSet {
            images,
            labels,
            classes,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Number of images of each class, indexed by label (as long as `classes`).
    pub fn class_counts(&self) -> Vec<usize> {
        class_counts(&self.labels, self.classes.len())
    }

    /// The images at `indices`, in that order (repeats allowed); an error if an index is out
    /// of range.
    pub fn subset(&self, indices: &[usize]) -> Result<ImageSet, ImageError> {
        let n = self.images.len().min(self.labels.len());
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(ImageError::Invalid(format!(
                "index {bad} is out of range ({n} images)"
            )));
        }
        Ok(ImageSet {
            images: indices.iter().map(|&i| self.images[i].clone()).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
        })
    }

    /// The [`balanced_subsample`] of `per_class` images of each class for `seed`.
    pub fn balanced_subsample(&self, per_class: usize, seed: u64) -> ImageSet {
        let indices = balanced_subsample(&self.labels, per_class, seed);
        ImageSet {
            images: indices.iter().map(|&i| self.images[i].clone()).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
        }
    }
}

/// Number of items of each class `0..n_classes`; labels `≥ n_classes` are not counted (the
/// readers and [`ImageSet::new`] never produce them).
pub fn class_counts(labels: &[usize], n_classes: usize) -> Vec<usize> {
    let mut counts = vec![0; n_classes];
    for &l in labels {
        if let Some(c) = counts.get_mut(l) {
            *c += 1;
        }
    }
    counts
}

/// Indices of up to `per_class` items of each class, deterministic for a `seed`.
///
/// Items are ranked by the first 8 bytes (big-endian) of SHA-256 of `seed` and the item's
/// index (both as little-endian `u64`); the first `per_class` of each class in rank order
/// are kept (all of a class that has fewer), and the result is returned in rank order — so
/// classes are interleaved, and the subsample for `n` is a subset of that for `m > n`.
pub fn balanced_subsample(labels: &[usize], per_class: usize, seed: u64) -> Vec<usize> {
    let mut ranked: Vec<(u64, usize)> = (0..labels.len())
        .map(|i| (rank(seed, i as u64), i))
        .collect();
    ranked.sort_unstable();
    let mut taken: HashMap<usize, usize> = HashMap::new();
    let mut out = Vec::new();
    for (_, i) in ranked {
        let count = taken.entry(labels[i]).or_insert(0);
        if *count < per_class {
            *count += 1;
            out.push(i);
        }
    }
    out
}

fn rank(seed: u64, index: u64) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(index.to_le_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Class names from a text file with one name per line (blank lines ignored, surrounding
/// whitespace trimmed); an error unless there are exactly `expected` names.
pub(crate) fn read_class_names(
    path: &std::path::Path,
    expected: usize,
) -> Result<Vec<String>, ImageError> {
    let bytes = std::fs::read(path).map_err(read_err(path))?;
    let text =
        String::from_utf8(bytes).map_err(|e| malformed(path, format!("not UTF-8 text: {e}")))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if names.len() != expected {
        return Err(malformed(
            path,
            format!(
                "{} class names, expected {expected} (one per line)",
                names.len()
            ),
        ));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_shape_is_checked() {
        assert!(Image::new(2, 2, 1, vec![0; 4]).is_ok());
        assert!(Image::new(2, 2, 3, vec![0; 4]).is_err());
        assert!(Image::new(0, 2, 1, vec![]).is_err());
        assert!(Image::new(1, 1, 2, vec![0; 2]).is_err());
        assert!(Image::new(usize::MAX, 3, 3, vec![]).is_err());
        let img = Image::new(2, 1, 3, vec![1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(img.get(1, 0, 2), Some(6));
        assert_eq!(img.get(2, 0, 0), None);
    }

    #[test]
    fn sets_check_labels_and_subsets_check_indices() {
        let img = Image::new(1, 1, 1, vec![7]).unwrap();
        let classes = vec!["a".to_string(), "b".to_string()];
        assert!(ImageSet::new(vec![img.clone()], vec![2], classes.clone()).is_err());
        assert!(ImageSet::new(vec![img.clone()], vec![], classes.clone()).is_err());
        let set = ImageSet::new(vec![img.clone(), img], vec![1, 0], classes).unwrap();
        assert_eq!(set.class_counts(), [1, 1]);
        assert_eq!(set.subset(&[1, 1]).unwrap().labels, [0, 0]);
        assert!(set.subset(&[2]).is_err());
    }

    #[test]
    fn subsample_is_balanced_nested_and_seeded() {
        let labels: Vec<usize> = (0..100).map(|i| if i < 70 { 0 } else { i % 3 }).collect();
        let counts = class_counts(&labels, 3);
        let small = balanced_subsample(&labels, 5, 1);
        let large = balanced_subsample(&labels, 9, 1);
        let picked =
            |ix: &[usize]| class_counts(&ix.iter().map(|&i| labels[i]).collect::<Vec<_>>(), 3);
        assert_eq!(picked(&small), [5, 5, 5]);
        assert_eq!(picked(&large), [9, 9, 9.min(counts[2])]);
        assert!(small.iter().all(|i| large.contains(i)));
        assert_eq!(balanced_subsample(&labels, 5, 1), small);
        assert_ne!(balanced_subsample(&labels, 5, 2), small);
        assert_eq!(balanced_subsample(&labels, 1000, 0).len(), 100);
        // Any label value is fine; counts ignore labels beyond the class list.
        assert_eq!(
            balanced_subsample(&[usize::MAX, 0, usize::MAX], 1, 0).len(),
            2
        );
        assert_eq!(class_counts(&[usize::MAX, 1, 1], 2), [0, 2]);
        assert!(balanced_subsample(&labels, 0, 0).is_empty());
    }
}
