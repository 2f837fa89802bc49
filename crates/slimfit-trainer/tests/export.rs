//! `train --output`'s writer: fine-tuned models saved as Hugging Face checkpoints and read
//! back by the loader. On the real MiniLM checkpoint (BERT sequence classification) and on
//! tiny random ViT and DINOv2 configurations.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Distribution, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use slimfit_data::assets::MINILM_L6_V2;
use slimfit_data::{PaddedBatch, WordPieceTokenizer};
use slimfit_models::{
    BertForSequenceClassification, CheckpointDir, HeadLabels, InitSource, LoraConfig, LoraTarget,
    SafetensorsSource, SaveError, SequenceTask, ViTConfig, ViTForImageClassification,
    save_bert_classifier, save_vit_classifier,
};
use slimfit_trainer::backend::{InferenceBackend as B, default_device};
use slimfit_trainer::encode::batch_to_input;

/// The backend's RNG (fresh heads, random pixels) is process-wide.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Moves every weight by `1e-3 · sin(i)` so that the saved tensors differ from any file the
/// model was read from.
struct Perturb(usize);

impl ModuleMapper<B> for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        self.0 += 1;
        let phase = self.0 as f32;
        param.map(|t| {
            let shape = t.shape();
            let n = shape.num_elements();
            let delta: Vec<f32> = (0..n)
                .map(|i| 1e-3 * (i as f32 * 0.37 + phase).sin())
                .collect();
            let device = t.device();
            t + Tensor::from_data(TensorData::new(delta, shape), &device)
        })
    }
}

fn max_abs_diff(a: Tensor<B, 2>, b: Tensor<B, 2>) -> f32 {
    let a: Vec<f32> = a.into_data().convert::<f32>().into_vec().unwrap();
    let b: Vec<f32> = b.into_data().convert::<f32>().into_vec().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const LABELS: [&str; 2] = ["ham", "spam"];

/// MiniLM with a fresh two-label head, every weight perturbed.
fn minilm_classifier(dir: &Path) -> BertForSequenceClassification<B> {
    let device = default_device().unwrap();
    let checkpoint = CheckpointDir::new(dir);
    let config = checkpoint.config().unwrap();
    let model = BertForSequenceClassification::<B>::load(
        &mut checkpoint.weights(&device).unwrap(),
        &config,
        SequenceTask::Classification { num_labels: 2 },
    )
    .unwrap();
    model.map(&mut Perturb(0))
}

fn save_minilm(out: &Path) -> (BertForSequenceClassification<B>, std::path::PathBuf) {
    let source = MINILM_L6_V2.resolve(None).unwrap();
    let model = {
        let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
        minilm_classifier(&source)
    };
    let config = CheckpointDir::new(&source).config().unwrap();
    let labels = HeadLabels::Classes(LABELS.iter().map(|s| s.to_string()).collect());
    let saved = save_bert_classifier(&model, &config, &labels, Some(&source), out).unwrap();
    // 6 layers × 16 tensors + 5 embedding + 2 pooler + 2 classifier.
    assert_eq!(saved.tensors, 6 * 16 + 5 + 2 + 2);
    assert_eq!(
        saved.copied,
        [
            "tokenizer.json",
            "vocab.txt",
            "tokenizer_config.json",
            "special_tokens_map.json"
        ]
    );
    (model, source)
}

#[test]
fn bert_classifier_round_trips_with_identical_logits() {
    let out = tempfile::tempdir().unwrap();
    let (model, _) = save_minilm(out.path());

    // The output directory is a checkpoint: config, weights and tokenizer load from it.
    let device = default_device().unwrap();
    let checkpoint = CheckpointDir::new(out.path());
    let config = checkpoint.config().unwrap();
    let mut source = checkpoint.weights::<B>(&device).unwrap();
    let reloaded = BertForSequenceClassification::<B>::load(
        &mut source,
        &config,
        SequenceTask::Classification { num_labels: 2 },
    )
    .unwrap();
    assert!(
        source.initialised().is_empty(),
        "{:?}",
        source.initialised()
    );
    assert!(source.unused().is_empty(), "{:?}", source.unused());

    let tokenizer = WordPieceTokenizer::from_dir(out.path(), 64).unwrap();
    let rows: Vec<_> = [
        ("Win a free cruise now, click here!", None),
        ("The meeting moved to Thursday.", Some("See you then.")),
        ("Colorless green ideas sleep furiously.", None),
    ]
    .iter()
    .map(|(a, b)| tokenizer.encode(a, *b).unwrap())
    .collect();
    let batch = PaddedBatch::new(&rows, tokenizer.pad_id());
    let before = model.forward(batch_to_input::<B>(&batch, &device));
    let after = reloaded.forward(batch_to_input::<B>(&batch, &device));
    let logits: Vec<f32> = before
        .clone()
        .into_data()
        .convert::<f32>()
        .into_vec()
        .unwrap();
    let diff = max_abs_diff(before, after);
    println!("BERT round trip: logits {logits:?}, max |Δ| after reloading {diff}");
    assert_eq!(diff, 0.0);
}

#[test]
fn saved_bert_file_has_the_hugging_face_keys_and_shapes() {
    let out = tempfile::tempdir().unwrap();
    let (_, source) = save_minilm(out.path());

    let source_bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let original = SafeTensors::deserialize(&source_bytes).unwrap();
    let mut expected: BTreeMap<String, Vec<usize>> = original
        .tensors()
        .into_iter()
        .filter(|(name, _)| !name.ends_with("position_ids"))
        .map(|(name, view)| {
            let name = name.strip_prefix("bert.").unwrap_or(&name).to_string();
            (format!("bert.{name}"), view.shape().to_vec())
        })
        .collect();
    expected.insert("classifier.weight".into(), vec![2, 384]);
    expected.insert("classifier.bias".into(), vec![2]);

    let bytes = std::fs::read(out.path().join("model.safetensors")).unwrap();
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(
        metadata.metadata().as_ref().and_then(|m| m.get("format")),
        Some(&"pt".to_string())
    );
    let saved = SafeTensors::deserialize(&bytes).unwrap();
    let found: BTreeMap<String, Vec<usize>> = saved
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), Dtype::F32, "{name}");
            (name, view.shape().to_vec())
        })
        .collect();
    assert_eq!(found, expected);
    assert!(found.contains_key("bert.pooler.dense.weight"));

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        config["architectures"],
        serde_json::json!(["BertForSequenceClassification"])
    );
    assert_eq!(config["model_type"], "bert");
    assert_eq!(
        config["id2label"],
        serde_json::json!({"0": "ham", "1": "spam"})
    );
    assert_eq!(config["label2id"], serde_json::json!({"ham": 0, "spam": 1}));
    assert_eq!(config["problem_type"], "single_label_classification");
    // The source's own fields survive.
    assert_eq!(config["_name_or_path"], "nreimers/MiniLM-L6-H384-uncased");
    for file in ["tokenizer.json", "vocab.txt"] {
        assert_eq!(
            std::fs::read(out.path().join(file)).unwrap(),
            std::fs::read(source.join(file)).unwrap(),
            "{file}"
        );
    }
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // As a file written plainly: 0666 less the umask, not a temporary file's 0600.
        let mode = |name: &str| {
            std::fs::metadata(out.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        std::fs::write(out.path().join("probe"), "").unwrap();
        assert_eq!(mode("model.safetensors"), mode("probe"));
        assert_eq!(mode("config.json"), mode("probe"));
    }
}

#[test]
fn save_errors_are_typed_and_leave_nothing_behind() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (config, model) = tiny_vit(dir.path());
    let two = ["a".to_string(), "b".to_string()];
    let out = dir.path().join("out");
    let err = save_vit_classifier(&model, &config, &two, None, &out).unwrap_err();
    assert!(matches!(err, SaveError::Labels(_)), "{err}");
    assert!(!out.exists());
    // The output path is a file: the error names it.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, "").unwrap();
    let three = ["a", "b", "c"].map(String::from);
    let err = save_vit_classifier(&model, &config, &three, None, &blocked).unwrap_err();
    assert!(
        matches!(err, SaveError::Io { .. }) && err.to_string().contains("blocked"),
        "{err}"
    );
}

/// A tiny DINOv2 (or ViT): 2 layers, H 32, 4 heads, 4-pixel patches, 16-pixel images.
fn tiny_config(model_type: &str) -> String {
    format!(
        r#"{{"model_type":"{model_type}","hidden_size":32,"num_hidden_layers":2,
            "num_attention_heads":4,"intermediate_size":128,"image_size":16,"patch_size":4}}"#
    )
}

#[test]
fn vit_and_dinov2_round_trip_on_tiny_random_configs() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = default_device().unwrap();
    for (model_type, prefix, architecture, classifier_input) in [
        ("vit", "vit.", "ViTForImageClassification", 32),
        ("dinov2", "dinov2.", "Dinov2ForImageClassification", 64),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::create_dir(&source).unwrap();
        std::fs::write(source.join("config.json"), tiny_config(model_type)).unwrap();
        std::fs::write(source.join("preprocessor_config.json"), "{}\n").unwrap();
        let config = ViTConfig::from_json_file(source.join("config.json")).unwrap();
        <B as burn::tensor::backend::Backend>::seed(&device, 11);
        let model = ViTForImageClassification::<B>::load(&mut InitSource::new(&device), &config, 3)
            .unwrap()
            .map(&mut Perturb(0));
        let labels = ["cat", "dog", "bird"].map(String::from);
        let out = dir.path().join("out");
        let saved = save_vit_classifier(&model, &config, &labels, Some(&source), &out).unwrap();
        assert_eq!(saved.copied, ["preprocessor_config.json"]);

        let reread = ViTConfig::from_json_file(out.join("config.json")).unwrap();
        assert_eq!(reread, config);
        let mut weights = SafetensorsSource::open(out.join("model.safetensors"), &device).unwrap();
        let reloaded = ViTForImageClassification::<B>::load(&mut weights, &reread, 3).unwrap();
        assert!(
            weights.initialised().is_empty(),
            "{:?}",
            weights.initialised()
        );
        assert!(weights.unused().is_empty(), "{:?}", weights.unused());
        let pixels = Tensor::<B, 4>::random([2, 3, 16, 16], Distribution::Default, &device);
        let diff = max_abs_diff(model.forward(pixels.clone()), reloaded.forward(pixels));
        println!("{model_type} round trip: max |Δ| {diff}");
        assert_eq!(diff, 0.0, "{model_type}");

        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let tensors = SafeTensors::deserialize(&bytes).unwrap();
        let shape = |name: &str| {
            tensors
                .tensor(name)
                .unwrap_or_else(|_| panic!("{model_type}: no {name}"))
                .shape()
                .to_vec()
        };
        // The patch projection is written as the convolution Hugging Face holds.
        assert_eq!(
            shape(&format!(
                "{prefix}embeddings.patch_embeddings.projection.weight"
            )),
            [32, 3, 4, 4]
        );
        assert_eq!(shape(&format!("{prefix}layernorm.weight")), [32]);
        assert_eq!(shape("classifier.weight"), [3, classifier_input]);
        assert!(
            tensors
                .names()
                .iter()
                .all(|n| n.starts_with(prefix) || n.starts_with("classifier."))
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(json["architectures"], serde_json::json!([architecture]));
        assert_eq!(json["id2label"]["2"], "bird");
        if model_type == "dinov2" {
            // `Dinov2Config` declares an integer ratio.
            assert_eq!(json["mlp_ratio"], serde_json::json!(4));
        }
    }
}

/// A tiny random three-class ViT, its config written to `dir/config.json`.
fn tiny_vit(dir: &Path) -> (ViTConfig, ViTForImageClassification<B>) {
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, tiny_config("vit")).unwrap();
    let config = ViTConfig::from_json_file(&config_path).unwrap();
    let device = default_device().unwrap();
    let model =
        ViTForImageClassification::<B>::load(&mut InitSource::new(&device), &config, 3).unwrap();
    (config, model)
}

/// Sets every value of the matrices of this many values to NaN (the classifier's weight).
struct Poison(usize);

impl ModuleMapper<B> for Poison {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let target = self.0;
        param.map(|t| {
            if D == 2 && t.shape().num_elements() == target {
                t.mul_scalar(f32::NAN)
            } else {
                t
            }
        })
    }
}

/// Names in `dir` that a save leaves only while it runs (or when it is killed).
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-") || n.contains(".old-"))
        .collect()
}

#[test]
fn a_checkpoint_directory_is_replaced_as_a_whole_and_killed_saves_leave_nothing() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (config, model) = tiny_vit(dir.path());
    let out = dir.path().join("out");
    let first = ["a", "b", "c"].map(String::from);
    save_vit_classifier(&model, &config, &first, None, &out).unwrap();
    // A file of the old checkpoint, and the debris of a save killed half-way.
    std::fs::write(out.join("stale.txt"), "old").unwrap();
    let killed = dir.path().join(".out.partial-killed");
    std::fs::create_dir(&killed).unwrap();
    std::fs::write(killed.join("model.safetensors"), vec![0u8; 1024]).unwrap();

    let second = ["x", "y", "z"].map(String::from);
    save_vit_classifier(&model, &config, &second, None, &out).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(json["id2label"]["0"], "x");
    assert!(
        !out.join("stale.txt").exists(),
        "the old directory went as a whole"
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_ne!(
            mode & 0o055,
            0,
            "not a private temporary directory: {mode:o}"
        );
    }

    // A directory that is not a checkpoint is never replaced.
    let notes = dir.path().join("notes");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(notes.join("todo.txt"), "keep me").unwrap();
    let err = save_vit_classifier(&model, &config, &second, None, &notes).unwrap_err();
    assert!(
        matches!(err, SaveError::NotACheckpoint { .. }) && err.to_string().contains("notes"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(notes.join("todo.txt")).unwrap(),
        "keep me"
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[test]
fn a_model_with_nan_weights_is_never_saved() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (config, model) = tiny_vit(dir.path());
    let model = model.map(&mut Poison(3 * 32));
    let out = dir.path().join("out");
    let labels = ["a", "b", "c"].map(String::from);
    let err = save_vit_classifier(&model, &config, &labels, None, &out).unwrap_err();
    assert!(
        matches!(err, SaveError::NonFinite { ref name, count: 96 } if name == "classifier.weight"),
        "{err}"
    );
    assert!(!out.exists());
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

/// The LoRA baseline's `--output`: adapters folded into their weights give the same logits
/// as the adapted model, and the result saves as a plain checkpoint that reloads to them;
/// an adapted model is never saved with its adapters silently dropped.
#[test]
fn a_lora_model_merges_into_a_plain_checkpoint_with_the_same_logits() {
    let source = MINILM_L6_V2.resolve(None).unwrap();
    let device = default_device().unwrap();
    let config = CheckpointDir::new(&source).config().unwrap();
    let lora = LoraConfig {
        targets: vec![LoraTarget::Query, LoraTarget::Value, LoraTarget::Ffn1],
        ..LoraConfig::default()
    };
    let mut model = {
        let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
        minilm_classifier(&source)
    };
    model.bert = model.bert.with_lora(&lora).unwrap();
    // B starts at zero; move every adapter off it so that the update is not trivial.
    let model = model.map(&mut Perturb(7));
    let units = slimfit_models::HasUnits::units(&model);
    assert_eq!(
        units.iter().filter(|u| u.name.contains(".lora_")).count(),
        6 * 3 * 2
    );

    let tokenizer = WordPieceTokenizer::from_dir(&source, 64).unwrap();
    let rows: Vec<_> = ["Win a free cruise now, click here!", "The meeting moved."]
        .iter()
        .map(|a| tokenizer.encode(a, None).unwrap())
        .collect();
    let batch = PaddedBatch::new(&rows, tokenizer.pad_id());
    let adapted = model.forward(batch_to_input::<B>(&batch, &device));

    let out = tempfile::tempdir().unwrap();
    let labels = HeadLabels::Classes(LABELS.iter().map(|s| s.to_string()).collect());
    let unmerged = save_bert_classifier(&model, &config, &labels, Some(&source), out.path());
    assert!(
        matches!(unmerged, Err(SaveError::Layout(_))),
        "{unmerged:?}"
    );

    let mut merged = model;
    merged.bert = merged.bert.merge_lora();
    let diff = max_abs_diff(
        adapted.clone(),
        merged.forward(batch_to_input::<B>(&batch, &device)),
    );
    assert!(diff <= 1e-5, "merged |Δ| {diff}");
    let saved = save_bert_classifier(&merged, &config, &labels, Some(&source), out.path()).unwrap();
    assert_eq!(
        saved.tensors,
        6 * 16 + 5 + 2 + 2,
        "no adapter tensor is written"
    );
    let reloaded = BertForSequenceClassification::<B>::load(
        &mut CheckpointDir::new(out.path())
            .weights::<B>(&device)
            .unwrap(),
        &config,
        SequenceTask::Classification { num_labels: 2 },
    )
    .unwrap();
    let diff = max_abs_diff(
        adapted,
        reloaded.forward(batch_to_input::<B>(&batch, &device)),
    );
    println!("LoRA merge: max |Δ| of the reloaded logits {diff}");
    assert!(diff <= 1e-5, "reloaded |Δ| {diff}");
}
