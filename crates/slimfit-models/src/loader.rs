//! Loading parameters by their Hugging Face names.
//!
//! Every module builds itself from a [`ParamSource`], asking for each tensor by the exact name
//! it has in a Hugging Face checkpoint. The same construction code therefore serves random
//! initialisation ([`InitSource`]) and checkpoint loading ([`SafetensorsSource`]): loading is a
//! mapping, never a translation step that could drift from the model definition.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};
use safetensors::{Dtype, SafeTensors};

/// Everything that can go wrong while reading a configuration or checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read at all.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file (corrupt or truncated).
    #[error("{path} is not a valid safetensors checkpoint (corrupt or truncated?): {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the safetensors parser reported.
        reason: String,
    },
    /// A tensor the model needs is absent.
    #[error("checkpoint {path} has no tensor `{name}`")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The Hugging Face name of the tensor.
        name: String,
    },
    /// A tensor has a different shape than the configuration implies.
    #[error("tensor `{name}` in {path} has shape {found:?}, but the config implies {expected:?}")]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The Hugging Face name of the tensor.
        name: String,
        /// Shape implied by the configuration.
        expected: Vec<usize>,
        /// Shape stored in the checkpoint.
        found: Vec<usize>,
    },
    /// A tensor is stored in a type we cannot read as floats.
    #[error("tensor `{name}` in {path} has dtype {dtype}; expected F32, F16 or BF16")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The Hugging Face name of the tensor.
        name: String,
        /// The stored dtype.
        dtype: String,
    },
    /// A tensor holds NaN or infinite values (a checkpoint saved from a diverged run).
    #[error(
        "tensor `{name}` in {path} holds {count} non-finite values (NaN or infinite), the \
         first at flat index {first}: the checkpoint is corrupt or was saved from a diverged run"
    )]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The Hugging Face name of the tensor.
        name: String,
        /// How many values are NaN or infinite.
        count: usize,
        /// The flat index of the first.
        first: usize,
    },
    /// The checkpoint has encoder layers the configuration leaves out.
    #[error(
        "checkpoint {path} has encoder layers {layers:?} beyond the {used} the config.json \
         beside it declares (num_hidden_layers): the model would silently be a truncated one; \
         use the config.json saved with these weights"
    )]
    ExtraLayers {
        /// The file.
        path: PathBuf,
        /// The checkpoint's layer indices the model did not load.
        layers: Vec<usize>,
        /// How many layers the model loaded.
        used: usize,
    },
    /// The configuration file is malformed or out of range.
    #[error("invalid model config {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Which field is wrong and why.
        reason: String,
    },
}

/// How a freshly created parameter is initialised (Hugging Face's `_init_weights`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal distribution with mean 0 and the given standard deviation.
    Normal(f64),
    /// All zeros (biases, LayerNorm β).
    Zeros,
    /// All ones (LayerNorm γ).
    Ones,
    /// Every entry the given value (DINOv2's layer scale λ).
    Constant(f64),
}

/// A provider of named parameters.
pub trait ParamSource<B: Backend> {
    /// The parameter called `name` with the given shape. A missing tensor is an error.
    fn required<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        init: Init,
    ) -> Result<Param<Tensor<B, D>>, LoadError>;

    /// The parameter called `name`, freshly initialised with `init` when the source lacks it
    /// (a task head on top of a pretrained backbone). Shape mismatches are still errors.
    fn optional<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        init: Init,
    ) -> Result<Param<Tensor<B, D>>, LoadError>;
}

fn init_tensor<B: Backend, const D: usize>(
    shape: [usize; D],
    init: Init,
    device: &B::Device,
) -> Tensor<B, D> {
    match init {
        Init::Normal(std) => Tensor::random(shape, Distribution::Normal(0.0, std), device),
        Init::Zeros => Tensor::zeros(shape, device),
        Init::Ones => Tensor::ones(shape, device),
        Init::Constant(value) => Tensor::full(shape, value, device),
    }
}

/// Random initialisation: every parameter is created fresh.
pub struct InitSource<'a, B: Backend> {
    device: &'a B::Device,
}

impl<'a, B: Backend> InitSource<'a, B> {
    /// A source creating parameters on `device`. Seed the backend (`B::seed`) for
    /// reproducible weights.
    pub fn new(device: &'a B::Device) -> Self {
        Self { device }
    }
}

impl<B: Backend> ParamSource<B> for InitSource<'_, B> {
    fn required<const D: usize>(
        &mut self,
        _name: &str,
        shape: [usize; D],
        init: Init,
    ) -> Result<Param<Tensor<B, D>>, LoadError> {
        Ok(Param::from_tensor(init_tensor(shape, init, self.device)))
    }

    fn optional<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        init: Init,
    ) -> Result<Param<Tensor<B, D>>, LoadError> {
        self.required(name, shape, init)
    }
}

/// Parameters read from a Hugging Face safetensors checkpoint.
///
/// Names are looked up as given and, failing that, with the `bert.` prefix that task models
/// (`BertForSequenceClassification`, ...) put in front of the backbone.
pub struct SafetensorsSource<'a, B: Backend> {
    path: PathBuf,
    bytes: FileBytes,
    device: &'a B::Device,
    used: BTreeSet<String>,
    initialised: Vec<String>,
}

/// A checkpoint file's bytes, memory-mapped: reading the file into the heap kept a second
/// copy of every weight alive while the model was built, so that loading, not training,
/// set the whole-run peak of every run below twice the weights (183 MiB for MiniLM's
/// 87 MiB; docs/RESULTS.md, "The frontier"). Mapped pages are the operating system's page
/// cache of the file — clean, shared and reclaimable — not the process's allocations.
enum FileBytes {
    Mapped(memmap2::Mmap),
    /// An empty file (which cannot be mapped; safetensors refuses it with a clear error).
    Empty,
}

impl FileBytes {
    fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(Self::Empty);
        }
        // SAFETY: the map is read-only and dropped with the source. As in every mmap-based
        // safetensors loader, a process that truncates or rewrites the checkpoint while it
        // loads could change (or, truncated, fault on) what is read; the loader validates
        // the header and extents first and copies every tensor out while loading.
        Ok(Self::Mapped(unsafe { memmap2::Mmap::map(&file)? }))
    }
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(map) => map,
            Self::Empty => &[],
        }
    }
}

/// The encoder layer a tensor belongs to (`…encoder.layer.<i>.…`), if any.
fn layer_of(name: &str) -> Option<usize> {
    const LAYER: &str = "encoder.layer.";
    let at = name.find(LAYER)? + LAYER.len();
    name[at..].split('.').next()?.parse().ok()
}

/// The prefix task models put in front of backbone tensors.
const BACKBONE_PREFIX: &str = "bert.";

impl<'a, B: Backend> SafetensorsSource<'a, B> {
    /// Maps and validates the whole file (header and data extents).
    pub fn open(path: impl AsRef<Path>, device: &'a B::Device) -> Result<Self, LoadError> {
        let path = path.as_ref().to_path_buf();
        let bytes = FileBytes::open(&path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        SafeTensors::deserialize(&bytes).map_err(|e| LoadError::Format {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            path,
            bytes,
            device,
            used: BTreeSet::new(),
            initialised: Vec::new(),
        })
    }

    /// Names of the parameters that were absent and freshly initialised (task heads).
    pub fn initialised(&self) -> &[String] {
        &self.initialised
    }

    /// Names of checkpoint tensors the model never asked for (e.g. another task's head).
    pub fn unused(&self) -> Vec<String> {
        let tensors = SafeTensors::deserialize(&self.bytes).expect("validated in open");
        let mut names: Vec<String> = tensors
            .names()
            .into_iter()
            .filter(|n| !self.used.contains(*n) && !n.ends_with("position_ids"))
            .map(|n| n.to_string())
            .collect();
        names.sort();
        names
    }

    /// Checks that the model loaded every encoder layer the checkpoint holds (a config
    /// with fewer layers would train or encode a truncated model without a word) and
    /// returns the other tensors it did not use — another task's head, say — to report.
    pub fn finish(&self) -> Result<Vec<String>, LoadError> {
        let unused = self.unused();
        let used_layers: BTreeSet<usize> = self.used.iter().filter_map(|n| layer_of(n)).collect();
        let extra: BTreeSet<usize> = unused
            .iter()
            .filter_map(|n| layer_of(n))
            .filter(|l| !used_layers.contains(l))
            .collect();
        if !extra.is_empty() {
            return Err(LoadError::ExtraLayers {
                path: self.path.clone(),
                layers: extra.into_iter().collect(),
                used: used_layers.len(),
            });
        }
        if !unused.is_empty() {
            tracing::warn!(
                "{}: tensors the model does not use: {}",
                self.path.display(),
                unused.join(", ")
            );
        }
        Ok(unused)
    }

    fn read<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Option<Tensor<B, D>>, LoadError> {
        let tensors = SafeTensors::deserialize(&self.bytes).expect("validated in open");
        let prefixed = format!("{BACKBONE_PREFIX}{name}");
        let (stored_name, view) = match tensors.tensor(name) {
            Ok(view) => (name.to_string(), view),
            Err(_) => match tensors.tensor(&prefixed) {
                Ok(view) => (prefixed, view),
                Err(_) => return Ok(None),
            },
        };
        if view.shape() != shape {
            return Err(LoadError::ShapeMismatch {
                path: self.path.clone(),
                name: stored_name,
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let values = decode_floats(view.dtype(), view.data()).ok_or_else(|| LoadError::Dtype {
            path: self.path.clone(),
            name: stored_name.clone(),
            dtype: format!("{:?}", view.dtype()),
        })?;
        if let Some(first) = values.iter().position(|v| !v.is_finite()) {
            return Err(LoadError::NonFinite {
                path: self.path.clone(),
                count: values.iter().filter(|v| !v.is_finite()).count(),
                name: stored_name,
                first,
            });
        }
        self.used.insert(stored_name);
        let data = TensorData::new(values, shape);
        Ok(Some(Tensor::from_data(data, self.device)))
    }
}

fn decode_floats(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let pairs = || bytes.chunks_exact(2).map(|c| [c[0], c[1]]);
    match dtype {
        Dtype::F32 => Some(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Dtype::F16 => Some(
            pairs()
                .map(|b| half::f16::from_le_bytes(b).to_f32())
                .collect(),
        ),
        Dtype::BF16 => Some(
            pairs()
                .map(|b| half::bf16::from_le_bytes(b).to_f32())
                .collect(),
        ),
        _ => None,
    }
}

impl<B: Backend> ParamSource<B> for SafetensorsSource<'_, B> {
    fn required<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        _init: Init,
    ) -> Result<Param<Tensor<B, D>>, LoadError> {
        match self.read(name, shape)? {
            Some(tensor) => Ok(Param::from_tensor(tensor)),
            None => Err(LoadError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            }),
        }
    }

    fn optional<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        init: Init,
    ) -> Result<Param<Tensor<B, D>>, LoadError> {
        match self.read(name, shape)? {
            Some(tensor) => Ok(Param::from_tensor(tensor)),
            None => {
                self.initialised.push(name.to_string());
                Ok(Param::from_tensor(init_tensor(shape, init, self.device)))
            }
        }
    }
}
