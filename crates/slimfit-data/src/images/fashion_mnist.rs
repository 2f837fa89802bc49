//! Fashion-MNIST (Zalando, MIT licence): 28 × 28 grey images of 10 kinds of clothing,
//! 60 000 for training and 10 000 for testing, 6 000 / 1 000 per class — as packaged by
//! Debian in [`dataset-fashion-mnist`](https://packages.debian.org/bookworm/dataset-fashion-mnist)
//! (`0.0~git20200523.55506a9-1`, architecture `all`, 30.9 MB), which ships the four upstream
//! IDX files gzipped under `/usr/share/datasets/fashion-mnist/`.
//!
//! **Resolution** mirrors [`crate::assets`]:
//! 1. an explicit directory holding the four IDX files (`train-images-idx3-ubyte`,
//!    `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each
//!    with or without `.gz`), used as is;
//! 2. the cache `$SLIMFIT_HOME/datasets/fashion-mnist`, or
//!    `<platform cache>/slimfit/datasets/fashion-mnist`;
//! 3. a fetch with Debian's package client, which needs no root: in a temporary directory,
//!    `apt-get download dataset-fashion-mnist=0.0~git20200523.55506a9-1`. Where the system's
//!    package lists are missing or stale (a fresh container), that fails; it is then retried
//!    after an `apt-get update` into **private** lists inside the temporary directory
//!    (`-o Dir::State::Lists=… -o Dir::Cache=… -o Debug::NoLocking=1`), which touches no
//!    system state and needs no root either. The `.deb`'s SHA-256 is compared with
//!    [`DEB_SHA256`]; the four `.gz` files and the copyright file are taken out of it (with
//!    `dpkg-deb --fsys-tarfile`, or, without `dpkg-deb`, by reading the `ar` archive and its
//!    `data.tar.xz` in Rust), each IDX file's SHA-256 is checked against [`FILES`], and the
//!    directory is moved into the cache in one rename. A `.deb` with another checksum (a
//!    distribution's rebuild) is accepted only if all four IDX files match their pins.
//!
//! [`install_deb`] installs a `.deb` obtained some other way (on a system without apt).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::deb;
pub use super::deb::{DebExtractor, dpkg_deb_available};
use super::idx::{idx_file, load_mnist, split_files};
use super::{ImageError, ImageSet, ImageSplit};
use crate::assets::{AssetError, home, io_err, sha256_file};

/// Debian package name.
pub const PACKAGE: &str = "dataset-fashion-mnist";
/// Pinned package version.
pub const VERSION: &str = "0.0~git20200523.55506a9-1";
/// SHA-256 of `dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb` (Debian bookworm).
pub const DEB_SHA256: &str = "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0";
/// Where the package installs the IDX files (relative to `/`).
pub const DEB_DATA_DIR: &str = "usr/share/datasets/fashion-mnist";
/// The package's copyright file (relative to `/`), copied into the cache as `COPYRIGHT`.
pub const DEB_COPYRIGHT: &str = "usr/share/doc/dataset-fashion-mnist/copyright";
/// Directory name in the cache (`<home>/datasets/<CACHE_NAME>`).
pub const CACHE_NAME: &str = "fashion-mnist";
/// The four IDX files as packaged, with their SHA-256.
pub const FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    ),
];
/// Class names; the index is the label.
pub const CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const LAYOUT: &str = "expected train-images-idx3-ubyte, train-labels-idx1-ubyte, \
                      t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each with or without .gz)";

/// Resolves the data set ([`resolve`]) and loads one split.
pub fn open(explicit: Option<&Path>, split: ImageSplit) -> Result<ImageSet, ImageError> {
    let dir = resolve(explicit)?;
    load(&dir, split)
}

/// Loads one split from a directory holding the IDX files.
pub fn load(dir: &Path, split: ImageSplit) -> Result<ImageSet, ImageError> {
    load_mnist(dir, split, &CLASSES)
}

/// Where the data set lives in the cache: `<home>/datasets/fashion-mnist`.
pub fn cache_dir() -> PathBuf {
    home().join("datasets").join(CACHE_NAME)
}

/// Checks that `dir` holds the four IDX files (gzipped or not), naming the first missing.
pub fn check_dataset_dir(dir: &Path) -> Result<(), AssetError> {
    for split in [ImageSplit::Train, ImageSplit::Test] {
        let (images, labels) = split_files(split);
        for stem in [images, labels] {
            if idx_file(dir, stem).is_none() {
                return Err(AssetError::IncompleteDataset {
                    dir: dir.to_path_buf(),
                    missing: format!("{stem}.gz"),
                    expected: LAYOUT,
                });
            }
        }
    }
    Ok(())
}

/// Resolves the data set directory: `explicit` if given, else the cache, else a fetch.
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf, AssetError> {
    crate::assets::resolve_dir(explicit, cache_dir(), check_dataset_dir, fetch_to)
}

/// Fetches the package with apt-get and installs it into the cache; returns [`cache_dir`].
pub fn fetch() -> Result<PathBuf, AssetError> {
    fetch_to(&cache_dir())
}

/// Downloads the `.deb` ([`download_deb`]) into a temporary directory beside `target` and
/// installs it at `target` ([`install_deb`]).
pub fn fetch_to(target: &Path) -> Result<PathBuf, AssetError> {
    let parent = parent_of(target);
    fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
    let download = crate::staging::tempdir_in(parent).map_err(io_err("cannot create", parent))?;
    tracing::info!(
        "fetching {PACKAGE}={VERSION} with apt-get into {}",
        target.display()
    );
    let deb = download_deb(download.path())?;
    install_deb(&deb, target)
}

/// Installs a downloaded `.deb` at `target`, extracting with `dpkg-deb` where it runs and in
/// Rust otherwise. If `target` appears meanwhile (another process installed it), that copy
/// is kept.
pub fn install_deb(deb: &Path, target: &Path) -> Result<PathBuf, AssetError> {
    let extractor = if dpkg_deb_available() {
        DebExtractor::DpkgDeb
    } else {
        DebExtractor::Native
    };
    install_deb_with(deb, target, extractor)
}

/// [`install_deb`] with a chosen extractor.
pub fn install_deb_with(
    deb: &Path,
    target: &Path,
    extractor: DebExtractor,
) -> Result<PathBuf, AssetError> {
    let deb_sha = sha256_file(deb)?;
    let pinned_deb = deb_sha == DEB_SHA256;
    if !pinned_deb {
        tracing::warn!(
            "{} has sha256 {deb_sha}, not the pinned {DEB_SHA256}: accepting it only if every \
             IDX file matches its pin",
            deb.display()
        );
    }
    let parent = parent_of(target);
    fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
    let staging = crate::staging::tempdir_in(parent).map_err(io_err("cannot create", parent))?;
    let scratch = crate::staging::tempdir_in(parent).map_err(io_err("cannot create", parent))?;
    let members: Vec<String> = FILES
        .iter()
        .map(|(name, _)| format!("{DEB_DATA_DIR}/{name}"))
        .collect();
    let mut wanted: Vec<(&str, PathBuf)> = members
        .iter()
        .zip(FILES)
        .map(|(member, (name, _))| (member.as_str(), staging.path().join(name)))
        .collect();
    wanted.push((DEB_COPYRIGHT, staging.path().join("COPYRIGHT")));
    deb::extract(deb, &wanted, scratch.path(), extractor)?;
    for (name, pinned) in FILES {
        let file = staging.path().join(name);
        let found = sha256_file(&file)?;
        if found != pinned {
            return Err(if pinned_deb {
                AssetError::Checksum {
                    file,
                    expected: pinned.into(),
                    found,
                }
            } else {
                AssetError::Checksum {
                    file: deb.to_path_buf(),
                    expected: DEB_SHA256.into(),
                    found: deb_sha,
                }
            });
        }
    }
    let source = format!("{PACKAGE} {VERSION} (.deb sha256 {deb_sha}), from /{DEB_DATA_DIR}\n");
    let source_path = staging.path().join("SOURCE");
    fs::write(&source_path, source).map_err(io_err("cannot write", &source_path))?;
    let staged = staging.keep();
    if let Err(e) = fs::rename(&staged, target) {
        let _ = fs::remove_dir_all(&staged);
        if check_dataset_dir(target).is_err() {
            return Err(io_err("cannot install into", target)(e));
        }
    }
    Ok(target.to_path_buf())
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether `apt-get` can be run.
pub fn apt_get_available() -> bool {
    Command::new("apt-get")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn stderr_tail(stderr: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Runs `apt-get <options> <args>` in `dir`; `Ok(Err(stderr tail))` if it ran and failed.
fn apt_get(
    dir: &Path,
    options: &[String],
    args: &[&str],
) -> Result<Result<(), AssetError>, AssetError> {
    let output = Command::new("apt-get")
        .arg("-q")
        .args(options)
        .args(args)
        .current_dir(dir)
        .env("LC_ALL", "C")
        .output()
        .map_err(io_err("cannot run apt-get in", dir))?;
    if output.status.success() {
        return Ok(Ok(()));
    }
    let mut command = vec!["apt-get".to_string()];
    command.extend(options.iter().cloned());
    command.extend(args.iter().map(|a| a.to_string()));
    Ok(Err(AssetError::Download {
        command: command.join(" "),
        status: output.status.to_string(),
        stderr: stderr_tail(&output.stderr),
    }))
}

/// Downloads the pinned `.deb` into `dir` with `apt-get download` (retrying with private,
/// freshly updated package lists if the system's do not have it; see the
/// [module docs](self)); returns its path.
pub fn download_deb(dir: &Path) -> Result<PathBuf, AssetError> {
    if !apt_get_available() {
        return Err(AssetError::NoApt {
            asset: format!("{PACKAGE}={VERSION}"),
            cache: cache_dir(),
            tried: "apt-get".into(),
        });
    }
    let dir = fs::canonicalize(dir).map_err(io_err("cannot resolve", dir))?;
    let spec = format!("{PACKAGE}={VERSION}");
    if let Err(first) = apt_get(&dir, &[], &["download", &spec])? {
        tracing::info!("{first}; retrying with private package lists");
        let state = dir.join("apt-state");
        for sub in ["lists/partial", "cache/archives/partial"] {
            let path = state.join(sub);
            fs::create_dir_all(&path).map_err(io_err("cannot create", &path))?;
        }
        let options = vec![
            "-o".to_string(),
            format!("Dir::State::Lists={}", state.join("lists").display()),
            "-o".to_string(),
            format!("Dir::Cache={}", state.join("cache").display()),
            "-o".to_string(),
            "Debug::NoLocking=1".to_string(),
        ];
        apt_get(&dir, &options, &["update"])??;
        apt_get(&dir, &options, &["download", &spec])??;
    }
    let entries = fs::read_dir(&dir).map_err(io_err("cannot list", &dir))?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| AssetError::Package {
            wheel: dir.clone(),
            reason: "apt-get download reported success but left no .deb file".into(),
        })
}
