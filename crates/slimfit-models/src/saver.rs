//! Saving fine-tuned models as Hugging Face checkpoints (`model.safetensors` +
//! `config.json`, plus the tokenizer or image-processor files of the checkpoint they came
//! from), so that the output directory is itself a checkpoint the loader — and Hugging Face
//! `from_pretrained` — reads.
//!
//! Saving is a mapping, driven by the loader itself: the model's `load` is replayed against a
//! [`ParamSource`] that records the Hugging Face name (and stored shape) of every parameter it
//! is asked for and hands out lazy parameters that are never allocated. The recorded skeleton
//! and the trained model are the same module type built from the same configuration, so
//! burn's visitor meets their parameters in the same order; pairing them gives every trained
//! tensor the name its `load` reads it by. No second name table exists that could drift.
//!
//! Task models are saved as Hugging Face nests them: the backbone under the task model's
//! prefix (`bert.`, `vit.`, `dinov2.`), the head as `classifier.*`. A parameter the model holds
//! in another layout than the checkpoint (ViT's patch projection, a `[hidden, channels,
//! patch, patch]` convolution held as `[hidden, channels · patch²]`) is written in the shape
//! the loader asked for.
//!
//! The directory is written as a whole ([`crate::staged_dir`]): staged beside the target,
//! synced, then put in its place in one step, so an interrupted save leaves the previous
//! checkpoint (or nothing), never a mix of old and new files. A model with a NaN or infinite
//! value is refused before anything is written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{Shape, Tensor, backend::Backend};
use safetensors::{Dtype, View};
use serde_json::{Map, Value};

use crate::bert::BertModel;
use crate::config::BertConfig;
use crate::dense::Dense;
use crate::heads::BertForSequenceClassification;
use crate::loader::{Init, LoadError, ParamSource};
use crate::slim::SlimOps;
use crate::staged_dir::{CHECKPOINT_MARKERS, StagedDir};
use crate::vit::{ViTConfig, ViTForImageClassification, ViTModel, ViTVariant};

/// Files a BERT checkpoint needs besides its weights and config: copied when the source has
/// them.
pub const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// Files an image checkpoint may carry besides its weights and config: copied when present.
pub const IMAGE_PROCESSOR_FILES: [&str; 1] = ["preprocessor_config.json"];

/// Everything that can go wrong while saving a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// Creating, writing, syncing or renaming a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The safetensors writer refused the tensors.
    #[error("cannot serialize {path}: {reason}")]
    Serialize {
        /// The file.
        path: PathBuf,
        /// What the safetensors writer reported.
        reason: String,
    },
    /// The model does not have the layout its configuration implies (another number of
    /// layers, a parameter of another size).
    #[error("the model does not match its configuration: {0}")]
    Layout(String),
    /// The output path exists and is not something a checkpoint may replace.
    #[error("cannot save a checkpoint to {path}: {reason}")]
    NotACheckpoint {
        /// The output path.
        path: PathBuf,
        /// Why it may not be replaced.
        reason: String,
    },
    /// A parameter holds NaN or infinite values: such a model is never saved.
    #[error(
        "`{name}` holds {count} non-finite values (NaN or infinite): a diverged model is not \
         saved"
    )]
    NonFinite {
        /// The checkpoint name of the tensor.
        name: String,
        /// How many values are NaN or infinite.
        count: usize,
    },
    /// The labels given do not fit the head.
    #[error("labels: {0}")]
    Labels(String),
    /// The source checkpoint's `config.json` could not be read.
    #[error(transparent)]
    Source(#[from] LoadError),
}

/// What a classification head predicts, for `config.json`'s `id2label`, `label2id` and
/// `problem_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadLabels {
    /// One logit per class; the index is the class id.
    Classes(Vec<String>),
    /// One real-valued output (`problem_type: "regression"`).
    Regression,
}

impl HeadLabels {
    fn check(&self, outputs: usize) -> Result<(), SaveError> {
        let expected = match self {
            Self::Classes(names) => names.len(),
            Self::Regression => 1,
        };
        if expected == outputs {
            Ok(())
        } else {
            Err(SaveError::Labels(format!(
                "{expected} label(s) given for a head with {outputs} output(s)"
            )))
        }
    }

    /// Adds `id2label`, `label2id` and `problem_type` as Hugging Face's `PretrainedConfig`
    /// writes them (it stores no `num_labels`: that is `len(id2label)`).
    fn write_into(&self, config: &mut Map<String, Value>) {
        let names = match self {
            Self::Classes(names) => names.clone(),
            Self::Regression => vec!["LABEL_0".to_string()],
        };
        let id2label: Map<String, Value> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (i.to_string(), Value::from(n.as_str())))
            .collect();
        let label2id: Map<String, Value> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), Value::from(i)))
            .collect();
        config.insert("id2label".into(), Value::Object(id2label));
        config.insert("label2id".into(), Value::Object(label2id));
        let problem = match self {
            Self::Classes(_) => "single_label_classification",
            Self::Regression => "regression",
        };
        config.insert("problem_type".into(), problem.into());
    }
}

/// What [`save_bert_classifier`] and [`save_vit_classifier`] wrote.
#[derive(Debug, Clone)]
pub struct SavedCheckpoint {
    /// The output directory.
    pub dir: PathBuf,
    /// Tensors in `model.safetensors`.
    pub tensors: usize,
    /// Bytes of tensor data in `model.safetensors` (fp32).
    pub tensor_bytes: u64,
    /// Files copied from the source checkpoint (tokenizer, image processor).
    pub copied: Vec<String>,
}

/// Saves a `BertForSequenceClassification` as a Hugging Face checkpoint in `dir` (created
/// when absent): `model.safetensors` with `bert.*` and `classifier.*` tensors (pooler
/// included), `config.json` — the source's, with `config`'s fields, `architectures`,
/// `id2label`, `label2id` and `problem_type` — and the source's tokenizer files
/// ([`TOKENIZER_FILES`]). `source` is the checkpoint directory the model was loaded from
/// (`None`: the config is written from `config` alone and nothing is copied).
pub fn save_bert_classifier<B: SlimOps>(
    model: &BertForSequenceClassification<B>,
    config: &BertConfig,
    labels: &HeadLabels,
    source: Option<&Path>,
    dir: &Path,
) -> Result<SavedCheckpoint, SaveError> {
    let (d_input, outputs) = model.classifier.dims();
    labels.check(outputs)?;
    let device = model.classifier.bias.val().device();
    let mut recorder = NameRecorder::<B>::new(&device);
    let mut tensors = Vec::new();
    let skeleton = BertModel::load(&mut recorder, config, true).map_err(layout)?;
    recorder.pair(&skeleton, &model.bert, "bert.", &mut tensors)?;
    let std = config.initializer_range;
    let head = Dense::load(&mut recorder, "classifier", d_input, outputs, std, true);
    recorder.pair(&head.map_err(layout)?, &model.classifier, "", &mut tensors)?;

    let mut ours = to_object(config);
    ours.entry("model_type").or_insert_with(|| "bert".into());
    let json = config_json(source, ours, "BertForSequenceClassification", labels)?;
    write_checkpoint(dir, tensors, &json, source, &TOKENIZER_FILES)
}

/// Saves a `ViTForImageClassification` / `Dinov2ForImageClassification` as a Hugging Face
/// checkpoint in `dir` (created when absent): `model.safetensors` with `vit.*` / `dinov2.*`
/// and `classifier.*` tensors (the patch projection as its `[hidden, channels, patch,
/// patch]` convolution weight), `config.json` with `id2label` from `labels` (the class names),
/// and the source's image-processor files ([`IMAGE_PROCESSOR_FILES`]).
///
/// DINOv2's `embeddings.mask_token` (masked-image modelling, unused by classification) is not
/// part of the model and is not written; Hugging Face initialises it when loading.
pub fn save_vit_classifier<B: SlimOps>(
    model: &ViTForImageClassification<B>,
    config: &ViTConfig,
    labels: &[String],
    source: Option<&Path>,
    dir: &Path,
) -> Result<SavedCheckpoint, SaveError> {
    let (d_input, outputs) = model.classifier.dims();
    let labels = HeadLabels::Classes(labels.to_vec());
    labels.check(outputs)?;
    let device = model.classifier.bias.val().device();
    let mut recorder = NameRecorder::<B>::new(&device);
    let mut tensors = Vec::new();
    let skeleton = ViTModel::load(&mut recorder, config).map_err(layout)?;
    let prefix = config.model_type.backbone_prefix();
    recorder.pair(&skeleton, &model.vit, prefix, &mut tensors)?;
    let std = config.initializer_range;
    let head = Dense::load(&mut recorder, "classifier", d_input, outputs, std, true);
    recorder.pair(&head.map_err(layout)?, &model.classifier, "", &mut tensors)?;

    let architecture = match config.model_type {
        ViTVariant::ViT => "ViTForImageClassification",
        ViTVariant::Dinov2 => "Dinov2ForImageClassification",
    };
    let mut ours = to_object(config);
    // Hugging Face's `Dinov2Config` declares `mlp_ratio: int` (and validates it).
    if let Some(ratio) = ours.get("mlp_ratio").and_then(Value::as_f64)
        && ratio.fract() == 0.0
    {
        ours.insert("mlp_ratio".into(), Value::from(ratio as u64));
    }
    let json = config_json(source, ours, architecture, &labels)?;
    write_checkpoint(dir, tensors, &json, source, &IMAGE_PROCESSOR_FILES)
}

fn layout(e: LoadError) -> SaveError {
    SaveError::Layout(e.to_string())
}

fn to_object<T: serde::Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// The source's `config.json` (when there is one), overlaid with `ours`, the architecture and
/// the labels. A source value equal to ours (`4` and `4.0`) is kept as the source wrote it:
/// Hugging Face validates the types of some fields.
fn config_json(
    source: Option<&Path>,
    ours: Map<String, Value>,
    architecture: &str,
    labels: &HeadLabels,
) -> Result<Vec<u8>, SaveError> {
    let mut config = match source.map(|dir| dir.join("config.json")) {
        Some(path) if path.is_file() => {
            let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
            match serde_json::from_str(&text) {
                Ok(Value::Object(map)) => map,
                Ok(_) => {
                    return Err(LoadError::Config {
                        path,
                        reason: "not a JSON object".into(),
                    }
                    .into());
                }
                Err(e) => {
                    return Err(LoadError::Config {
                        path,
                        reason: e.to_string(),
                    }
                    .into());
                }
            }
        }
        _ => Map::new(),
    };
    for (key, value) in ours {
        let same_number = matches!(
            (config.get(&key).and_then(Value::as_f64), value.as_f64()),
            (Some(a), Some(b)) if a == b
        );
        if !same_number {
            config.insert(key, value);
        }
    }
    config.insert("architectures".into(), Value::from(vec![architecture]));
    labels.write_into(&mut config);
    let mut text = serde_json::to_string_pretty(&Value::Object(config)).expect("JSON values");
    text.push('\n');
    Ok(text.into_bytes())
}

/// One tensor to write: its checkpoint name and shape, and its fp32 values, little-endian.
struct NamedTensor {
    name: String,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &NamedTensor {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }

    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// The [`ParamSource`] that names parameters: it records the name and stored shape of every
/// parameter a `load` asks for and hands out lazy parameters (never initialised unless the
/// `load` itself reads them).
struct NameRecorder<B: Backend> {
    device: B::Device,
    names: HashMap<ParamId, (String, Vec<usize>)>,
}

impl<B: Backend> NameRecorder<B> {
    fn new(device: &B::Device) -> Self {
        Self {
            device: device.clone(),
            names: HashMap::new(),
        }
    }

    /// Pairs the parameters of `skeleton` (built from this recorder) with those of `model`
    /// in visiting order and appends `model`'s values under the recorded names, `prefix`ed.
    fn pair<M: Module<B>>(
        &self,
        skeleton: &M,
        model: &M,
        prefix: &str,
        out: &mut Vec<NamedTensor>,
    ) -> Result<(), SaveError> {
        let mut ids = SkeletonIds(Vec::new());
        skeleton.visit(&mut ids);
        let mut values = Values(Vec::new());
        model.visit(&mut values);
        if ids.0.len() != values.0.len() {
            return Err(SaveError::Layout(format!(
                "the model has {} parameters, its configuration implies {}",
                values.0.len(),
                ids.0.len()
            )));
        }
        for ((id, numel), (shape, bytes, non_finite)) in ids.0.into_iter().zip(values.0) {
            let (name, stored) = self.names.get(&id).ok_or_else(|| {
                SaveError::Layout("a parameter the loader does not name".to_string())
            })?;
            if non_finite > 0 {
                return Err(SaveError::NonFinite {
                    name: format!("{prefix}{name}"),
                    count: non_finite,
                });
            }
            let held: usize = shape.iter().product();
            if held != numel {
                return Err(SaveError::Layout(format!(
                    "`{prefix}{name}` holds {held} values ({shape:?}); the checkpoint stores \
                     {stored:?}"
                )));
            }
            out.push(NamedTensor {
                name: format!("{prefix}{name}"),
                shape: stored.clone(),
                bytes,
            });
        }
        Ok(())
    }

    fn lazy<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Param<Tensor<B, D>> {
        let id = ParamId::new();
        self.names.insert(id, (name.to_string(), shape.to_vec()));
        Param::uninitialized(
            id,
            move |device, require_grad| {
                let zeros = Tensor::zeros(shape, device);
                if require_grad {
                    zeros.require_grad()
                } else {
                    zeros
                }
            },
            self.device.clone(),
            false,
            Shape::from(shape),
        )
    }
}

impl<B: Backend> ParamSource<B> for NameRecorder<B> {
    fn required<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        _init: Init,
    ) -> Result<Param<Tensor<B, D>>, LoadError> {
        Ok(self.lazy(name, shape))
    }

    fn optional<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        _init: Init,
    ) -> Result<Param<Tensor<B, D>>, LoadError> {
        Ok(self.lazy(name, shape))
    }
}

/// Ids and sizes of a skeleton's parameters, in visiting order, without initialising them.
struct SkeletonIds(Vec<(ParamId, usize)>);

impl<B: Backend> ModuleVisitor<B> for SkeletonIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push((param.id, param.lazy_shape().num_elements()));
    }
}

/// Shapes, fp32 little-endian bytes and the count of non-finite values of a model's
/// parameters, in visiting order.
struct Values(Vec<(Vec<usize>, Vec<u8>, usize)>);

impl<B: Backend> ModuleVisitor<B> for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let data = param.val().into_data().convert::<f32>();
        let shape = data.shape.to_vec();
        let values = data.as_slice::<f32>().expect("converted to f32");
        let non_finite = values.iter().filter(|v| !v.is_finite()).count();
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.0.push((shape, bytes, non_finite));
    }
}

fn write_checkpoint(
    dir: &Path,
    tensors: Vec<NamedTensor>,
    config: &[u8],
    source: Option<&Path>,
    side_files: &[&str],
) -> Result<SavedCheckpoint, SaveError> {
    let staged = StagedDir::new(dir, &CHECKPOINT_MARKERS)?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let tensor_bytes = tensors.iter().map(|t| t.bytes.len() as u64).sum();
    let views = tensors.iter().map(|t| (t.name.as_str(), t));
    safetensors::serialize_to_file(views, Some(metadata), &staged.file("model.safetensors"))
        .map_err(|e| SaveError::Serialize {
            path: dir.join("model.safetensors"),
            reason: e.to_string(),
        })?;
    staged.write("config.json", config)?;
    let mut copied = Vec::new();
    if let Some(source) = source {
        for name in side_files {
            let from = source.join(name);
            if !from.is_file() {
                continue;
            }
            let bytes = std::fs::read(&from).map_err(|source| SaveError::Io {
                path: from.clone(),
                source,
            })?;
            staged.write(name, &bytes)?;
            copied.push(name.to_string());
        }
    }
    staged.commit()?;
    tracing::info!(
        "saved {} tensors ({} bytes) and config.json to {}{}",
        tensors.len(),
        tensor_bytes,
        dir.display(),
        if copied.is_empty() {
            String::new()
        } else {
            format!("; copied {}", copied.join(", "))
        }
    );
    Ok(SavedCheckpoint {
        dir: dir.to_path_buf(),
        tensors: tensors.len(),
        tensor_bytes,
        copied,
    })
}
