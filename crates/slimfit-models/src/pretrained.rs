//! A Hugging Face checkpoint directory (`config.json` + `model.safetensors`).

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use crate::config::BertConfig;
use crate::loader::{LoadError, SafetensorsSource};

/// Paths of a checkpoint directory as Hugging Face lays it out.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    /// The directory.
    pub dir: PathBuf,
}

impl CheckpointDir {
    /// Wraps a directory; nothing is read yet.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// `model.safetensors`.
    pub fn weights_path(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }

    /// Reads and validates `config.json`.
    pub fn config(&self) -> Result<BertConfig, LoadError> {
        BertConfig::from_json_file(self.config_path())
    }

    /// Opens `model.safetensors` for loading on `device`.
    pub fn weights<'a, B: Backend>(
        &self,
        device: &'a B::Device,
    ) -> Result<SafetensorsSource<'a, B>, LoadError> {
        SafetensorsSource::open(self.weights_path(), device)
    }
}

impl AsRef<Path> for CheckpointDir {
    fn as_ref(&self) -> &Path {
        &self.dir
    }
}
