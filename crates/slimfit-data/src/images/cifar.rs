//! CIFAR-10 and CIFAR-100, binary versions.
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` … `data_batch_5.bin` (train, in
//! that order), `test_batch.bin`, `batches.meta.txt` (the 10 class names, one a line). Each
//! record is 1 label byte then 3072 pixel bytes.
//!
//! CIFAR-100 (`cifar-100-binary/`): `train.bin`, `test.bin`, `fine_label_names.txt` (100
//! names), `coarse_label_names.txt` (20 names). Each record is a coarse label byte, a fine
//! label byte, then 3072 pixel bytes.
//!
//! Pixels are planar — 1024 red, then 1024 green, then 1024 blue bytes, each plane row-major
//! 32 × 32 — and are converted to interleaved RGB [`Image`]s. A file whose length is not a
//! whole number of records is an error naming the file and the partial record; so is a label
//! beyond the class list. A loader given the directory that *holds* `cifar-10-batches-bin/`
//! (or `cifar-100-binary/`) looks inside it.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Image, ImageError, ImageSet, ImageSplit, malformed, read_class_names, read_err};
use crate::assets::AssetError;

/// Bytes of pixels in one record: 3 planes of 32 × 32.
pub const RECORD_PIXELS: usize = 3 * 32 * 32;
/// The directory the CIFAR-10 binary archive unpacks to.
pub const CIFAR10_DIR: &str = "cifar-10-batches-bin";
/// The directory the CIFAR-100 binary archive unpacks to.
pub const CIFAR100_DIR: &str = "cifar-100-binary";

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;

/// Which CIFAR-100 label becomes [`ImageSet::labels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CifarLabels {
    /// The 100 fine classes (`fine_label_names.txt`).
    Fine,
    /// The 20 superclasses (`coarse_label_names.txt`).
    Coarse,
}

/// `dir` if it holds `marker`, else `dir/<nested>` if that does, else an error.
fn locate(
    dir: &Path,
    nested: &str,
    marker: &str,
    layout: &'static str,
) -> Result<PathBuf, ImageError> {
    if dir.join(marker).is_file() {
        return Ok(dir.to_path_buf());
    }
    let inner = dir.join(nested);
    if inner.join(marker).is_file() {
        return Ok(inner);
    }
    Err(ImageError::Asset(AssetError::IncompleteDataset {
        dir: dir.to_path_buf(),
        missing: marker.to_string(),
        expected: layout,
    }))
}

/// Loads one split of CIFAR-10 (binary version) from `dir` (or `dir/cifar-10-batches-bin`).
pub fn load_cifar10(dir: &Path, split: ImageSplit) -> Result<ImageSet, ImageError> {
    const LAYOUT: &str = "expected the CIFAR-10 binary layout: data_batch_{1..5}.bin, \
                          test_batch.bin, batches.meta.txt";
    let dir = locate(dir, CIFAR10_DIR, "batches.meta.txt", LAYOUT)?;
    let classes = read_class_names(&dir.join("batches.meta.txt"), 10)?;
    let files: Vec<String> = match split {
        ImageSplit::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        ImageSplit::Test => vec!["test_batch.bin".into()],
    };
    let mut set = ImageSet {
        images: Vec::new(),
        labels: Vec::new(),
        classes,
    };
    for name in files {
        let path = dir.join(&name);
        if !path.is_file() {
            return Err(ImageError::Asset(AssetError::IncompleteDataset {
                dir: dir.clone(),
                missing: name,
                expected: LAYOUT,
            }));
        }
        read_records(&path, 1, 0, set.classes.len(), &mut set)?;
    }
    Ok(set)
}

/// Loads one split of CIFAR-100 (binary version) from `dir` (or `dir/cifar-100-binary`),
/// labelled with its fine or coarse classes.
pub fn load_cifar100(
    dir: &Path,
    split: ImageSplit,
    labels: CifarLabels,
) -> Result<ImageSet, ImageError> {
    const LAYOUT: &str = "expected the CIFAR-100 binary layout: train.bin, test.bin, \
                          fine_label_names.txt, coarse_label_names.txt";
    let (names, count, offset) = match labels {
        CifarLabels::Fine => ("fine_label_names.txt", 100, 1),
        CifarLabels::Coarse => ("coarse_label_names.txt", 20, 0),
    };
    let dir = locate(dir, CIFAR100_DIR, names, LAYOUT)?;
    let classes = read_class_names(&dir.join(names), count)?;
    let name = match split {
        ImageSplit::Train => "train.bin",
        ImageSplit::Test => "test.bin",
    };
    let path = dir.join(name);
    if !path.is_file() {
        return Err(ImageError::Asset(AssetError::IncompleteDataset {
            dir,
            missing: name.into(),
            expected: LAYOUT,
        }));
    }
    let mut set = ImageSet {
        images: Vec::new(),
        labels: Vec::new(),
        classes,
    };
    read_records(&path, 2, offset, count, &mut set)?;
    Ok(set)
}

/// Appends the records of one binary file to `set`: `label_bytes` label bytes (the one at
/// `label_at` is used, and must be `< n_classes`) then [`RECORD_PIXELS`] planar bytes.
fn read_records(
    path: &Path,
    label_bytes: usize,
    label_at: usize,
    n_classes: usize,
    set: &mut ImageSet,
) -> Result<(), ImageError> {
    let bytes = fs::read(path).map_err(read_err(path))?;
    let record = label_bytes + RECORD_PIXELS;
    if bytes.is_empty() {
        return Err(malformed(path, "empty file: no records"));
    }
    let whole = bytes.len() / record;
    let partial = bytes.len() % record;
    if partial != 0 {
        return Err(malformed(
            path,
            format!(
                "partial record {whole} at byte offset {}: {partial} of {record} bytes \
                 ({whole} whole records before it)",
                whole * record
            ),
        ));
    }
    set.images.reserve(whole);
    set.labels.reserve(whole);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let label = usize::from(rec[label_at]);
        if label >= n_classes {
            return Err(malformed(
                path,
                format!(
                    "record {i} (byte offset {}): label {label} is out of range ({n_classes} \
                     classes)",
                    i * record + label_at
                ),
            ));
        }
        let planes = &rec[label_bytes..];
        let mut pixels = Vec::with_capacity(RECORD_PIXELS);
        for p in 0..PLANE {
            pixels.extend_from_slice(&[planes[p], planes[PLANE + p], planes[2 * PLANE + p]]);
        }
        set.images.push(Image::new(SIDE, SIDE, 3, pixels)?);
        set.labels.push(label);
    }
    Ok(())
}
