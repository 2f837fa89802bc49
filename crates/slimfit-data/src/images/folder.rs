//! ImageNet-style folder trees: `root/<class>/**/*.{jpg,jpeg,png}`.
//!
//! Classes are the sub-directories of `root`, sorted by name (byte order); a class's index is
//! its position in that order, as in torchvision's `ImageFolder`. Inside a class directory,
//! files with a `.jpg`, `.jpeg` or `.png` extension (any case) are taken, sub-directories
//! included, in sorted path order; other files are ignored. Names starting with `.` are
//! skipped at every level, and symbolic links to directories are followed only for the class
//! directories themselves. A class directory without an image is an error (so that class
//! indices never silently shift), and so is a name that is not UTF-8.
//!
//! Files are decoded with the `image` crate (JPEG and PNG decoders only; the format is
//! recognised from the content) and converted to 8-bit RGB. A file that does not decode is an
//! error naming it.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Image, ImageError, ImageSet, malformed, read_err};

/// The file extensions taken (compared case-insensitively).
pub const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// The files of a folder tree and their classes, listed but not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    files: Vec<PathBuf>,
    labels: Vec<usize>,
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The entries of `dir`, sorted by name, without hidden ones.
fn sorted_entries(dir: &Path) -> Result<Vec<fs::DirEntry>, ImageError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err(dir))? {
        let entry = entry.map_err(read_err(dir))?;
        if !is_hidden(&entry.file_name()) {
            entries.push(entry);
        }
    }
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// Appends the image files under `dir` (recursively, sorted) to `out`.
fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ImageError> {
    for entry in sorted_entries(dir)? {
        let path = entry.path();
        let kind = entry.file_type().map_err(read_err(&path))?;
        if kind.is_dir() {
            collect_images(&path, out)?;
        } else if has_image_extension(&path) && path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

impl ImageFolder {
    /// Lists the classes and image files under `root` (nothing is decoded yet).
    pub fn scan(root: &Path) -> Result<ImageFolder, ImageError> {
        let mut classes = Vec::new();
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for entry in sorted_entries(root)? {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().into_string().map_err(|name| {
                malformed(&path, format!("class folder name {name:?} is not UTF-8"))
            })?;
            let before = files.len();
            collect_images(&path, &mut files)?;
            if files.len() == before {
                return Err(malformed(
                    &path,
                    format!(
                        "class folder {name:?} holds no .jpg, .jpeg or .png file (class \
                         indices would shift)"
                    ),
                ));
            }
            labels.resize(files.len(), classes.len());
            classes.push(name);
        }
        if classes.is_empty() {
            return Err(malformed(
                root,
                "no class folders: expected root/<class>/*.{jpg,jpeg,png}",
            ));
        }
        Ok(ImageFolder {
            root: root.to_path_buf(),
            classes,
            files,
            labels,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Class names, sorted; the index is the label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The image files, grouped by class in class order, each class's files sorted.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The class of each file.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no files (never true for a scanned folder).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Decodes file `i` to RGB; an error if `i` is out of range or the file does not decode.
    pub fn decode(&self, i: usize) -> Result<Image, ImageError> {
        let path = self.files.get(i).ok_or_else(|| {
            ImageError::Invalid(format!("index {i} is out of range ({} files)", self.len()))
        })?;
        decode_image(path)
    }

    /// Decodes every file (in [`files`](Self::files) order) into an [`ImageSet`].
    pub fn load(&self) -> Result<ImageSet, ImageError> {
        let images = self
            .files
            .iter()
            .map(|p| decode_image(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ImageSet {
            images,
            labels: self.labels.clone(),
            classes: self.classes.clone(),
        })
    }
}

/// Decodes a JPEG or PNG file (format recognised from its content) to an 8-bit RGB image.
pub fn decode_image(path: &Path) -> Result<Image, ImageError> {
    let decode_err = |reason: String| ImageError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let decoded = image::ImageReader::open(path)
        .map_err(read_err(path))?
        .with_guessed_format()
        .map_err(read_err(path))?
        .decode()
        .map_err(|e| decode_err(e.to_string()))?;
    let rgb = decoded.to_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    Image::new(width, height, 3, rgb.into_raw()).map_err(|e| decode_err(e.to_string()))
}
