//! Bad checkpoints and configs must give typed errors naming the file and tensor/field.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, serialize_to_file};
use slimfit_models::{
    BertConfig, BertForQuestionAnswering, BertForSequenceClassification, BertInput, BertModel,
    CheckpointDir, LoadError, SafetensorsSource, SequenceTask,
};

type B = Flex;

fn tiny_config() -> BertConfig {
    let mut c = BertConfig::with_shape(50, 8, 2, 2, 16);
    c.max_position_embeddings = 16;
    c
}

/// Every tensor of a `BertModel` with pooler for `c`, by Hugging Face name, with `prefix`.
fn bert_tensors(c: &BertConfig, prefix: &str) -> Vec<(String, Vec<usize>)> {
    let (h, f) = (c.hidden_size, c.intermediate_size);
    let mut t = vec![
        (
            "embeddings.word_embeddings.weight".to_string(),
            vec![c.vocab_size, h],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![c.max_position_embeddings, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![c.type_vocab_size, h],
        ),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
        ("pooler.dense.weight".into(), vec![h, h]),
        ("pooler.dense.bias".into(), vec![h]),
    ];
    for i in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        for name in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
        ] {
            t.push((format!("{p}.{name}.weight"), vec![h, h]));
            t.push((format!("{p}.{name}.bias"), vec![h]));
        }
        t.push((format!("{p}.attention.output.dense.weight"), vec![h, h]));
        t.push((format!("{p}.attention.output.dense.bias"), vec![h]));
        t.push((format!("{p}.intermediate.dense.weight"), vec![f, h]));
        t.push((format!("{p}.intermediate.dense.bias"), vec![f]));
        t.push((format!("{p}.output.dense.weight"), vec![h, f]));
        t.push((format!("{p}.output.dense.bias"), vec![h]));
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            t.push((format!("{p}.{ln}.weight"), vec![h]));
            t.push((format!("{p}.{ln}.bias"), vec![h]));
        }
    }
    t.into_iter()
        .map(|(n, s)| (format!("{prefix}{n}"), s))
        .collect()
}

/// Writes `tensors` (deterministic small values) as F32 safetensors.
fn write_checkpoint(path: &Path, tensors: &[(String, Vec<usize>)]) {
    let buffers: Vec<Vec<u8>> = tensors
        .iter()
        .enumerate()
        .map(|(k, (_, shape))| {
            let n: usize = shape.iter().product();
            (0..n)
                .flat_map(|i| (((i * 7 + k * 3) % 11) as f32 * 0.01 - 0.05).to_le_bytes())
                .collect()
        })
        .collect();
    let views: HashMap<String, TensorView<'_>> = tensors
        .iter()
        .zip(&buffers)
        .map(|((name, shape), bytes)| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    serialize_to_file(views, None, path).unwrap();
}

fn temp_checkpoint(tensors: &[(String, Vec<usize>)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    write_checkpoint(&path, tensors);
    (dir, path)
}

fn load(path: &Path, c: &BertConfig) -> Result<BertModel<B>, LoadError> {
    let device = Default::default();
    BertModel::load(&mut SafetensorsSource::<B>::open(path, &device)?, c, true)
}

fn input(ids: &[i64]) -> BertInput<B> {
    let device = Default::default();
    let n = ids.len();
    let t = |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [1, n]), &device);
    BertInput {
        input_ids: t(ids.to_vec()),
        token_type_ids: t(vec![0; n]),
        attention_mask: t(vec![1; n]),
    }
}

#[test]
fn complete_checkpoint_loads_with_or_without_bert_prefix() {
    let c = tiny_config();
    let (_d1, plain) = temp_checkpoint(&bert_tensors(&c, ""));
    let (_d2, prefixed) = temp_checkpoint(&bert_tensors(&c, "bert."));
    let a = load(&plain, &c).unwrap().forward(input(&[1, 5, 9, 2]));
    let b = load(&prefixed, &c).unwrap().forward(input(&[1, 5, 9, 2]));
    assert_eq!(a.last_hidden_state.dims(), [1, 4, 8]);
    a.last_hidden_state
        .into_data()
        .assert_eq(&b.last_hidden_state.into_data(), true);
}

#[test]
fn missing_tensor_is_named_with_the_file() {
    let c = tiny_config();
    let mut tensors = bert_tensors(&c, "");
    tensors.retain(|(n, _)| n != "encoder.layer.1.attention.self.key.weight");
    let (_dir, path) = temp_checkpoint(&tensors);
    let err = load(&path, &c).unwrap_err();
    assert!(matches!(err, LoadError::MissingTensor { ref name, .. }
        if name == "encoder.layer.1.attention.self.key.weight"));
    let msg = err.to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("self.key.weight"),
        "{msg}"
    );
}

#[test]
fn shape_mismatch_names_tensor_and_both_shapes() {
    let c = tiny_config();
    let mut tensors = bert_tensors(&c, "");
    for (name, shape) in &mut tensors {
        if name == "encoder.layer.0.intermediate.dense.weight" {
            *shape = vec![8, 16];
        }
    }
    let (_dir, path) = temp_checkpoint(&tensors);
    let err = load(&path, &c).unwrap_err();
    match err {
        LoadError::ShapeMismatch {
            name,
            expected,
            found,
            ..
        } => {
            assert_eq!(name, "encoder.layer.0.intermediate.dense.weight");
            assert_eq!((expected, found), (vec![16, 8], vec![8, 16]));
        }
        other => panic!("expected ShapeMismatch, got {other}"),
    }
}

#[test]
fn truncated_and_garbage_files_are_format_errors() {
    let c = tiny_config();
    let (_dir, path) = temp_checkpoint(&bert_tensors(&c, ""));
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = load(&path, &c).unwrap_err();
    assert!(matches!(err, LoadError::Format { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");

    std::fs::write(&path, b"this is not a checkpoint at all").unwrap();
    assert!(matches!(
        load(&path, &c).unwrap_err(),
        LoadError::Format { .. }
    ));
}

#[test]
fn unreadable_file_is_an_io_error_naming_the_path() {
    let err = load(Path::new("/nonexistent/model.safetensors"), &tiny_config()).unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/model.safetensors"));
}

#[test]
fn a_checkpoint_with_nan_or_infinite_weights_is_refused_naming_the_tensor() {
    let c = tiny_config();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let tensors = bert_tensors(&c, "");
    let buffers: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(n, s)| {
            let mut values = vec![0.01f32; s.iter().product::<usize>()];
            if n.ends_with("layer.1.output.dense.weight") {
                values[3] = f32::NAN;
                values[5] = f32::INFINITY;
            }
            values.iter().flat_map(|v| v.to_le_bytes()).collect()
        })
        .collect();
    let views: HashMap<String, TensorView<'_>> = tensors
        .iter()
        .zip(&buffers)
        .map(|((n, s), b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    serialize_to_file(views, None, &path).unwrap();
    let err = load(&path, &c).unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::NonFinite { ref name, count: 2, first: 3, .. }
                if name == "encoder.layer.1.output.dense.weight"
        ),
        "{err}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn integer_weights_are_a_dtype_error() {
    let c = tiny_config();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let tensors = bert_tensors(&c, "");
    let buffers: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, s)| vec![0u8; s.iter().product::<usize>() * 4])
        .collect();
    let views: HashMap<String, TensorView<'_>> = tensors
        .iter()
        .zip(&buffers)
        .map(|((n, s), b)| {
            let dtype = if n.ends_with("word_embeddings.weight") {
                Dtype::I32
            } else {
                Dtype::F32
            };
            (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap())
        })
        .collect();
    serialize_to_file(views, None, &path).unwrap();
    let err = load(&path, &c).unwrap_err();
    assert!(matches!(err, LoadError::Dtype { ref name, .. } if name.contains("word_embeddings")));
}

#[test]
fn task_heads_come_from_the_checkpoint_or_are_initialised() {
    let c = tiny_config();
    let device = Default::default();
    let mut tensors = bert_tensors(&c, "bert.");
    tensors.push(("classifier.weight".into(), vec![3, 8]));
    tensors.push(("classifier.bias".into(), vec![3]));
    let (_d, with_head) = temp_checkpoint(&tensors);
    let mut source = SafetensorsSource::<B>::open(&with_head, &device).unwrap();
    let model = BertForSequenceClassification::load(
        &mut source,
        &c,
        SequenceTask::Classification { num_labels: 3 },
    )
    .unwrap();
    assert!(source.initialised().is_empty());
    assert!(source.unused().is_empty(), "{:?}", source.unused());
    assert_eq!(model.forward(input(&[1, 2, 3])).dims(), [1, 3]);

    // A head of the wrong width in the checkpoint is an error, not a silent re-init.
    let mut source = SafetensorsSource::<B>::open(&with_head, &device).unwrap();
    let err =
        BertForSequenceClassification::load(&mut source, &c, SequenceTask::Regression).unwrap_err();
    assert!(
        matches!(err, LoadError::ShapeMismatch { ref name, .. } if name == "classifier.weight")
    );

    // The QA head is new on a backbone-only checkpoint; the backbone's pooler goes unused.
    let (_d2, backbone) = temp_checkpoint(&bert_tensors(&c, ""));
    let mut source = SafetensorsSource::<B>::open(&backbone, &device).unwrap();
    let qa = BertForQuestionAnswering::load(&mut source, &c).unwrap();
    assert_eq!(
        source.initialised(),
        ["qa_outputs.weight", "qa_outputs.bias"]
    );
    assert_eq!(
        source.unused(),
        ["pooler.dense.bias", "pooler.dense.weight"]
    );
    let spans = qa.forward(input(&[1, 2, 3, 4, 5]));
    assert_eq!((spans.start.dims(), spans.end.dims()), ([1, 5], [1, 5]));
}

#[test]
fn config_errors_name_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = CheckpointDir::new(dir.path());
    std::fs::write(ckpt.config_path(), "{ not json").unwrap();
    let err = ckpt.config().unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");

    let mut bad = serde_json::to_value(tiny_config()).unwrap();
    bad["num_attention_heads"] = 3.into();
    std::fs::write(ckpt.config_path(), bad.to_string()).unwrap();
    let err = ckpt.config().unwrap_err().to_string();
    assert!(
        err.contains("num_attention_heads") && err.contains("config.json"),
        "{err}"
    );

    let mut bad = serde_json::to_value(tiny_config()).unwrap();
    bad.as_object_mut().unwrap().remove("hidden_size");
    std::fs::write(ckpt.config_path(), bad.to_string()).unwrap();
    let err = ckpt.config().unwrap_err().to_string();
    assert!(err.contains("hidden_size"), "{err}");

    let mut bad = serde_json::to_value(tiny_config()).unwrap();
    bad["hidden_dropout_prob"] = 1.5.into();
    std::fs::write(ckpt.config_path(), bad.to_string()).unwrap();
    assert!(
        ckpt.config()
            .unwrap_err()
            .to_string()
            .contains("hidden_dropout_prob")
    );
}

#[test]
fn a_config_with_fewer_layers_than_the_checkpoint_is_refused_naming_the_layers_left_out() {
    let c = tiny_config();
    let mut tensors = bert_tensors(&c, "bert.");
    tensors.push(("cls.predictions.bias".into(), vec![c.vocab_size]));
    let (_dir, path) = temp_checkpoint(&tensors);
    let device = Default::default();
    // The config the checkpoint was saved with: only another head's tensor is unused.
    let mut source = SafetensorsSource::<B>::open(&path, &device).unwrap();
    BertModel::load(&mut source, &c, true).unwrap();
    assert_eq!(source.finish().unwrap(), ["cls.predictions.bias"]);
    // One layer in config.json, two in the weights.
    let mut one = tiny_config();
    one.num_hidden_layers = 1;
    let mut source = SafetensorsSource::<B>::open(&path, &device).unwrap();
    BertModel::load(&mut source, &one, true).unwrap();
    let err = source.finish().unwrap_err();
    assert!(
        matches!(err, LoadError::ExtraLayers { ref layers, used: 1, .. } if layers == &[1]),
        "{err}"
    );
    assert!(err.to_string().contains("num_hidden_layers"), "{err}");
}
