//! IDX files, the format of MNIST and Fashion-MNIST.
//!
//! An IDX file is a 4-byte magic number `00 00 <type> <ndim>` (type `0x08` = unsigned
//! bytes), `ndim` big-endian `u32` dimensions, then the data in row-major order. Images are
//! `0x00000803` (count, rows, columns), labels `0x00000801` (count). A file is read gzipped or
//! not, whatever its name: a gzip stream is recognised by its first two bytes (`1f 8b`).
//!
//! Checked: the magic number, the header's length, non-zero image sizes, the data's length
//! against the header (a short file or stream is an error naming the item where it stops;
//! trailing bytes are an error too), the gzip stream's integrity (its CRC is read), equal
//! image and label counts, and labels within the class list.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::{Image, ImageError, ImageSet, ImageSplit, malformed, read_err};
use crate::assets::AssetError;

/// MNIST's class names: the digits.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const IMAGES_NDIM: u8 = 3;
const LABELS_NDIM: u8 = 1;
const LAYOUT: &str = "expected the MNIST file names: {train,t10k}-{images-idx3,labels-idx1}-ubyte, \
                      with or without .gz";

/// The IDX file names (without `.gz`) of a split: `(images, labels)`.
pub(crate) fn split_files(split: ImageSplit) -> (&'static str, &'static str) {
    match split {
        ImageSplit::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ImageSplit::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
}

/// `dir/<stem>.gz` if it exists, else `dir/<stem>` if it exists.
pub fn idx_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

fn require_idx_file(dir: &Path, stem: &str) -> Result<PathBuf, ImageError> {
    idx_file(dir, stem).ok_or_else(|| {
        ImageError::Asset(AssetError::IncompleteDataset {
            dir: dir.to_path_buf(),
            missing: format!("{stem}.gz"),
            expected: LAYOUT,
        })
    })
}

/// Loads one split of an MNIST-layout directory (`train-images-idx3-ubyte[.gz]` and
/// `train-labels-idx1-ubyte[.gz]`, or the `t10k-` pair) with the given class names
/// ([`MNIST_CLASSES`], [`super::fashion_mnist::CLASSES`]).
pub fn load_mnist(dir: &Path, split: ImageSplit, classes: &[&str]) -> Result<ImageSet, ImageError> {
    let (images, labels) = split_files(split);
    let images = require_idx_file(dir, images)?;
    let labels = require_idx_file(dir, labels)?;
    load_idx(&images, &labels, classes)
}

/// Loads an IDX image file and its IDX label file: the counts must agree and every label
/// must be `< classes.len()`.
pub fn load_idx(images: &Path, labels: &Path, classes: &[&str]) -> Result<ImageSet, ImageError> {
    let image_list = read_idx_images(images)?;
    let label_list = read_idx_labels(labels)?;
    if image_list.len() != label_list.len() {
        return Err(malformed(
            labels,
            format!(
                "{} labels for the {} images of {}",
                label_list.len(),
                image_list.len(),
                images.display()
            ),
        ));
    }
    if let Some((i, &l)) = label_list
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= classes.len())
    {
        return Err(malformed(
            labels,
            format!(
                "label {l} of item {i} is out of range ({} classes)",
                classes.len()
            ),
        ));
    }
    Ok(ImageSet {
        images: image_list,
        labels: label_list.into_iter().map(usize::from).collect(),
        classes: classes.iter().map(|c| c.to_string()).collect(),
    })
}

/// Reads an IDX image file (`0x00000803`: count × rows × columns unsigned bytes), gzipped or
/// not, as 1-channel images of `columns × rows`.
pub fn read_idx_images(path: &Path) -> Result<Vec<Image>, ImageError> {
    let idx = read_idx(path, IMAGES_NDIM)?;
    let (rows, cols) = (idx.dims[1], idx.dims[2]);
    let size = rows * cols;
    idx.data
        .chunks_exact(size)
        .map(|chunk| Image::new(cols, rows, 1, chunk.to_vec()))
        .collect()
}

/// Reads an IDX label file (`0x00000801`: count unsigned bytes), gzipped or not.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, ImageError> {
    Ok(read_idx(path, LABELS_NDIM)?.data)
}

struct Idx {
    dims: Vec<usize>,
    data: Vec<u8>,
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn read_idx(path: &Path, ndim: u8) -> Result<Idx, ImageError> {
    let what = if ndim == IMAGES_NDIM {
        "images"
    } else {
        "labels"
    };
    let expected_magic = 0x0800 | u32::from(ndim);
    let file = File::open(path).map_err(read_err(path))?;
    let file_len = file.metadata().map_err(read_err(path))?.len();
    let mut buffered = BufReader::new(file);
    let gz = buffered
        .fill_buf()
        .map_err(read_err(path))?
        .starts_with(&GZIP_MAGIC);
    let mut reader: Box<dyn Read> = if gz {
        Box::new(GzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let stream_err = |at: String, e: io::Error| {
        if gz {
            malformed(path, format!("corrupt or truncated gzip stream {at}: {e}"))
        } else {
            read_err(path)(e)
        }
    };

    let mut magic = [0u8; 4];
    let got = read_full(&mut reader, &mut magic)
        .map_err(|e| stream_err("in the IDX header".into(), e))?;
    if got < magic.len() {
        return Err(malformed(
            path,
            format!(
                "{got} bytes{}: too short for an IDX header",
                if gz { " after decompression" } else { "" }
            ),
        ));
    }
    let found_magic = u32::from_be_bytes(magic);
    if magic[..2] != [0, 0] {
        return Err(malformed(
            path,
            format!(
                "bad magic number 0x{found_magic:08x}: not an IDX file (expected \
                 0x{expected_magic:08x} for {what})"
            ),
        ));
    }
    if magic[2] != 0x08 {
        return Err(malformed(
            path,
            format!(
                "magic number 0x{found_magic:08x}: data type 0x{:02x} is not unsigned bytes \
                 (0x08)",
                magic[2]
            ),
        ));
    }
    if magic[3] != ndim {
        return Err(malformed(
            path,
            format!(
                "magic number 0x{found_magic:08x}: {} dimensions, but {what} have {ndim} \
                 (expected 0x{expected_magic:08x})",
                magic[3]
            ),
        ));
    }

    let mut raw_dims = vec![0u8; 4 * usize::from(ndim)];
    let got = read_full(&mut reader, &mut raw_dims)
        .map_err(|e| stream_err("in the IDX header".into(), e))?;
    if got < raw_dims.len() {
        return Err(malformed(
            path,
            format!(
                "truncated header: {} of the {ndim} dimension sizes present",
                got / 4
            ),
        ));
    }
    let dims: Vec<u64> = raw_dims
        .chunks_exact(4)
        .map(|b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    if dims[1..].contains(&0) {
        return Err(malformed(
            path,
            format!(
                "zero-sized images ({} × {}) in the header",
                dims[1], dims[2]
            ),
        ));
    }
    let count = dims[0];
    let item: u64 = dims[1..].iter().product();
    let header = 4 + raw_dims.len() as u64;
    let payload = count
        .checked_mul(item)
        .filter(|&p| usize::try_from(p).is_ok())
        .ok_or_else(|| {
            malformed(
                path,
                format!("the header's sizes {dims:?} do not fit in memory"),
            )
        })?;
    let incomplete = |have: u64| {
        format!(
            "truncated: the header announces {count} {what} ({payload} bytes of data) but \
             there are only {have} bytes{} — item {} is incomplete",
            if gz { " after decompression" } else { "" },
            have / item
        )
    };
    if !gz {
        let expected = header + payload;
        if file_len < expected {
            return Err(malformed(path, incomplete(file_len - header)));
        }
        if file_len > expected {
            return Err(malformed(
                path,
                format!(
                    "{} bytes of trailing data after the {count} {what} the header announces",
                    file_len - expected
                ),
            ));
        }
    }

    let mut data = Vec::with_capacity(payload.min(1 << 26) as usize);
    let mut limited = reader.take(payload);
    if let Err(e) = limited.read_to_end(&mut data) {
        let at = format!(
            "at byte {} of the data (item {})",
            data.len(),
            data.len() as u64 / item
        );
        return Err(stream_err(at, e));
    }
    if (data.len() as u64) < payload {
        return Err(malformed(path, incomplete(data.len() as u64)));
    }
    if gz {
        // Read the stream to its end: this checks the gzip CRC and finds trailing data.
        let mut rest = limited.into_inner();
        let mut extra = 0u64;
        let mut buf = [0u8; 4096];
        loop {
            match rest.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => extra += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(stream_err("after the data".into(), e)),
            }
        }
        if extra > 0 {
            return Err(malformed(
                path,
                format!(
                    "{extra} bytes of trailing data (after decompression) after the {count} \
                     {what} the header announces"
                ),
            ));
        }
    }
    Ok(Idx {
        dims: dims.iter().map(|&d| d as usize).collect(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_full_stops_at_end() {
        let mut r: &[u8] = &[1, 2, 3];
        let mut buf = [0u8; 5];
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 3);
        assert_eq!(buf, [1, 2, 3, 0, 0]);
    }
}
