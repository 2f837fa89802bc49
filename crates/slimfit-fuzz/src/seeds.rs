//! Valid inputs of every target, built in code: the starting corpus of each driver (a
//! mutation of a valid file reaches deeper than random bytes).

use std::io::Cursor;

use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::{Target, tiny_bert_config};

/// The seed inputs of `target`.
pub fn seeds(target: Target) -> Vec<Vec<u8>> {
    match target {
        Target::Safetensors => vec![tiny_checkpoint("bert."), tiny_checkpoint("")],
        Target::ConfigJson => config_jsons(),
        Target::GlueTsv => glue_files(),
        Target::Idx => vec![idx_pair(3, 4, 4)],
        Target::Cifar => vec![cifar_batch(2)],
        Target::ImageFile => images(),
        Target::RunToml => vec![RUN_TOML.as_bytes().to_vec(), b"task = \"rte\"\n".to_vec()],
        Target::EncodeStdin => vec![ENCODE_LINES.as_bytes().to_vec()],
    }
}

/// Every tensor of the tiny BERT ([`tiny_bert_config`]) with pooler, by Hugging Face name.
fn bert_tensors(prefix: &str) -> Vec<(String, Vec<usize>)> {
    let c = tiny_bert_config();
    let (h, f) = (c.hidden_size, c.intermediate_size);
    let mut t: Vec<(String, Vec<usize>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
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
            "attention.output.dense",
        ] {
            t.push((format!("{p}.{name}.weight"), vec![h, h]));
            t.push((format!("{p}.{name}.bias"), vec![h]));
        }
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

/// A complete F32 checkpoint of the tiny BERT, tensor names under `prefix`.
fn tiny_checkpoint(prefix: &str) -> Vec<u8> {
    let tensors = bert_tensors(prefix);
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
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&buffers)
        .map(|((name, shape), bytes)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes).expect("a valid view");
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize(views, None).expect("serializes")
}

fn config_jsons() -> Vec<Vec<u8>> {
    let bert = serde_json::json!({
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": 24,
        "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 16, "hidden_act": "gelu", "max_position_embeddings": 16,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "id2label": {"0": "no", "1": "yes"}, "label2id": {"no": 0, "yes": 1}
    });
    let vit = serde_json::json!({
        "model_type": "vit", "hidden_size": 8, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 16, "image_size": 28,
        "patch_size": 14, "num_channels": 3, "layer_norm_eps": 1e-12, "qkv_bias": true
    });
    let dinov2 = serde_json::json!({
        "model_type": "dinov2", "hidden_size": 8, "num_hidden_layers": 2,
        "num_attention_heads": 2, "mlp_ratio": 4, "image_size": 518, "patch_size": 14,
        "layerscale_value": 1.0, "layer_norm_eps": 1e-6
    });
    [bert, vit, dinov2]
        .iter()
        .map(|v| serde_json::to_vec_pretty(v).expect("JSON"))
        .collect()
}

/// One small file per GLUE task, each behind the byte that picks its task.
fn glue_files() -> Vec<Vec<u8>> {
    let files: [(u8, &str); 8] = [
        (
            0,
            "gj04\t1\t\tOur friends won't buy this analysis.\ngj04\t0\t*\tOne more pseudo.\n",
        ),
        (
            1,
            "sentence\tlabel\nit 's a charming journey . \t1\nbad film \t0\n",
        ),
        (
            2,
            "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said so .\tHe did .\n",
        ),
        (
            3,
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n\
             0\tmain\tx\t2012\t1\tnone\tnone\tA plane is taking off.\tAn air plane is taking off.\t5.000\n",
        ),
        (
            4,
            "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t1\t2\tWhy?\tHow?\t0\n",
        ),
        (
            5,
            "index\tsentence1\tsentence2\tgold_label\n0\tA b.\tC d.\tneutral\n",
        ),
        (
            6,
            "index\tquestion\tsentence\tlabel\n0\tWho?\tHim.\tentailment\n",
        ),
        (
            7,
            "index\tsentence1\tsentence2\tlabel\n0\tA b.\tC d.\tnot_entailment\n",
        ),
    ];
    files
        .iter()
        .map(|(pick, text)| {
            let mut bytes = vec![*pick];
            bytes.extend_from_slice(text.as_bytes());
            bytes
        })
        .collect()
}

/// `n` images of `rows × cols` and their labels as IDX files, behind the two bytes (little
/// endian) that give the images file's length.
pub fn idx_pair(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut images = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        images.extend_from_slice(&d.to_be_bytes());
    }
    images.extend((0..n * rows * cols).map(|i| (i * 37 % 256) as u8));
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&n.to_be_bytes());
    labels.extend((0..n).map(|i| (i % 10) as u8));
    let len = u16::try_from(images.len()).expect("a small images file");
    let mut bytes = len.to_le_bytes().to_vec();
    bytes.extend(images);
    bytes.extend(labels);
    bytes
}

/// `n` CIFAR-10 records (a label byte, then 32 × 32 × 3 pixels).
fn cifar_batch(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|r| {
            std::iter::once((r % 10) as u8).chain((0..3072).map(move |i| ((i + r) % 256) as u8))
        })
        .collect()
}

/// A 3 × 2 PNG (RGB and grey) and a JPEG.
fn images() -> Vec<Vec<u8>> {
    let rgb = image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 80, y as u8 * 120, 7]));
    let encode = |img: image::DynamicImage, format| {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("encodes");
        out.into_inner()
    };
    vec![
        encode(rgb.clone().into(), image::ImageFormat::Png),
        encode(
            image::DynamicImage::from(rgb).into_luma8().into(),
            image::ImageFormat::Png,
        ),
        encode(
            image::RgbImage::from_pixel(8, 8, image::Rgb([200, 10, 30])).into(),
            image::ImageFormat::Jpeg,
        ),
    ]
}

const RUN_TOML: &str = r#"task = "rte"
data_dir = "glue"
model = "minilm"
policy = "ils"
variant = "default"
epochs = 3
batch = 16
grad_accum = 2
lr = 3e-5
warmup = 0.1
max_len = 128
seed = 42
max_train_examples = 100
memory_budget = "600MiB"
optimizer_state = "drop"
report = "r.json"
checkpoint_every = 100
checkpoint_dir = "ckpt"
"#;

const ENCODE_LINES: &str = "{\"text\": \"A man is playing a guitar.\", \"text_pair\": \"Someone plays music.\"}\n\
                            \n{\"text\": \"the man!\"}\n";
