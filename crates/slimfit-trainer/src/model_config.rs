//! `--model-config`: a named architecture or a Hugging Face `config.json`.

use std::path::Path;

use slimfit_models::{BertConfig, LoadError};

/// Resolves `bert-base`, `minilm-l6`, or a path to a `config.json` (or to its directory).
pub fn resolve_model_config(spec: &str) -> Result<BertConfig, LoadError> {
    match spec {
        "bert-base" | "bert-base-uncased" => Ok(BertConfig::bert_base()),
        "minilm-l6" | "all-MiniLM-L6-v2" => Ok(BertConfig::minilm_l6()),
        path => {
            let path = Path::new(path);
            if path.is_dir() {
                BertConfig::from_json_file(path.join("config.json"))
            } else {
                BertConfig::from_json_file(path)
            }
        }
    }
}
