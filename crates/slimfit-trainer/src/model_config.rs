//! `--model-config`: a named architecture or a Hugging Face `config.json`.

use std::path::{Path, PathBuf};

use slimfit_models::{BertConfig, LoadError, ViTConfig};

/// A model architecture `measure-step` and `compare` can build with random weights.
#[derive(Debug, Clone, PartialEq)]
pub enum Architecture {
    /// A BERT encoder with a sequence-classification head.
    Bert(BertConfig),
    /// A ViT or DINOv2 encoder with an image-classification head.
    ViT(ViTConfig),
}

/// The names `--model-config` accepts for ViT / DINOv2 presets.
pub const VIT_NAMES: [&str; 3] = ["vit-base-16-224", "vit-base-16-384", "dinov2-small-14"];

/// Resolves a BERT: `bert-base`, `minilm-l6`, or a path to a `config.json` (or to its
/// directory). A ViT / DINOv2 name or config is an error naming it (see
/// [`resolve_architecture`]).
pub fn resolve_model_config(spec: &str) -> Result<BertConfig, LoadError> {
    match resolve_architecture(spec)? {
        Architecture::Bert(config) => Ok(config),
        Architecture::ViT(config) => Err(LoadError::Config {
            path: PathBuf::from(spec),
            reason: format!(
                "this is a {} (model_type {:?}); this command takes a BERT",
                if config.model_type == slimfit_models::ViTVariant::Dinov2 {
                    "DINOv2"
                } else {
                    "ViT"
                },
                config.model_type.model_type()
            ),
        }),
    }
}

/// Resolves `bert-base`, `minilm-l6`, `vit-base-16-224`, `vit-base-16-384`,
/// `dinov2-small-14`, or a path to a Hugging Face `config.json` (or to its directory): a
/// `model_type` of `"vit"` or `"dinov2"` is read as a [`ViTConfig`], anything else as a
/// [`BertConfig`].
pub fn resolve_architecture(spec: &str) -> Result<Architecture, LoadError> {
    match spec {
        "bert-base" | "bert-base-uncased" => {
            return Ok(Architecture::Bert(BertConfig::bert_base()));
        }
        "minilm-l6" | "all-MiniLM-L6-v2" => {
            return Ok(Architecture::Bert(BertConfig::minilm_l6()));
        }
        "vit-base-16-224" | "vit-base-patch16-224" => {
            return Ok(Architecture::ViT(ViTConfig::vit_base_16_224()));
        }
        "vit-base-16-384" | "vit-base-patch16-384" => {
            return Ok(Architecture::ViT(ViTConfig::vit_base_16_384()));
        }
        "dinov2-small-14" | "dinov2-small" => {
            return Ok(Architecture::ViT(ViTConfig::dinov2_small_14()));
        }
        _ => {}
    }
    let path = Path::new(spec);
    let file = if path.is_dir() {
        path.join("config.json")
    } else {
        path.to_path_buf()
    };
    if is_vit_config(&file) {
        ViTConfig::from_json_file(&file).map(Architecture::ViT)
    } else {
        BertConfig::from_json_file(&file).map(Architecture::Bert)
    }
}

/// Whether `file` is a JSON object whose `model_type` is `"vit"` or `"dinov2"` (unreadable
/// or other files are not: the BERT reader reports what is wrong with them).
pub fn is_vit_config(file: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("model_type")?.as_str().map(str::to_owned))
        .is_some_and(|t| t == "vit" || t == "dinov2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_config_files_of_both_families() {
        assert!(matches!(
            resolve_architecture("bert-base").unwrap(),
            Architecture::Bert(_)
        ));
        for name in VIT_NAMES {
            assert!(
                matches!(resolve_architecture(name).unwrap(), Architecture::ViT(_)),
                "{name}"
            );
            let err = resolve_model_config(name).unwrap_err().to_string();
            assert!(err.contains("takes a BERT"), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"model_type":"dinov2","hidden_size":32,"num_hidden_layers":2,
                "num_attention_heads":4,"image_size":28,"patch_size":14}"#,
        )
        .unwrap();
        match resolve_architecture(dir.path().to_str().unwrap()).unwrap() {
            Architecture::ViT(c) => {
                assert_eq!(c.intermediate_size, 128);
                assert_eq!(c.num_positions(), 5);
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(&file, r#"{"model_type":"vit","hidden_size":0}"#).unwrap();
        let err = resolve_architecture(file.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
        let err = resolve_architecture("/nonexistent/config.json").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/config.json"),
            "{err}"
        );
    }
}
