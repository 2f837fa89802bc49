//! Gradient accumulation on the real MiniLM weights, with dropout off: two micro-batches
//! of 8 make the same optimizer step as one batch of 16 — at the level of the step's
//! gradients ([`step_gradients`]) and through a whole `train` run driven by a run file
//! (`train --config run.toml`), whose `--output` checkpoint is compared tensor by tensor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use safetensors::SafeTensors;
use slimfit_data::assets::MINILM_L6_V2;
use slimfit_data::{Encoded, GlueTask, PaddedBatch, WordPieceTokenizer};
use slimfit_memory::CountingAllocator;
use slimfit_models::{
    BertForSequenceClassification, CheckpointDir, HasUnits, SequenceTask, TOKENIZER_FILES, Unit,
};
use slimfit_trainer::backend::{Device, TrainingBackend as B, default_device};
use slimfit_trainer::encode::batch_to_input;
use slimfit_trainer::run_config::TrainSettings;
use slimfit_trainer::train::{
    MemoryBudget, PolicyKind, TrainConfig, TrainError, Workload, step_gradients, train,
};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

type Inner = <B as AutodiffBackend>::InnerBackend;

/// In-process runs share the backend RNG (fresh heads): one at a time.
static IN_PROCESS: std::sync::Mutex<()> = std::sync::Mutex::new(());

const PAIRS: [(&str, &str, &str); 8] = [
    (
        "A cat sat on the mat.",
        "A cat is on the mat.",
        "entailment",
    ),
    (
        "The sun rises in the east every single morning.",
        "The sun rises in the west.",
        "not_entailment",
    ),
    ("John bought a red car.", "John owns a car.", "entailment"),
    (
        "Mary is a doctor in Boston and has worked there for years.",
        "Mary is a lawyer.",
        "not_entailment",
    ),
    (
        "The meeting was cancelled.",
        "The meeting took place.",
        "not_entailment",
    ),
    (
        "Paris is the capital of France.",
        "France has a capital.",
        "entailment",
    ),
    (
        "The dog chased the ball across the whole park until it was tired.",
        "An animal ran.",
        "entailment",
    ),
    (
        "He never swam.",
        "He is a champion swimmer.",
        "not_entailment",
    ),
];

/// An RTE-layout GLUE root with 24 training and 24 dev pairs.
fn write_rte(dir: &Path) {
    let rte = dir.join("RTE");
    std::fs::create_dir_all(&rte).unwrap();
    let mut text = String::from("index\tsentence1\tsentence2\tlabel\n");
    for i in 0..24 {
        let (a, b, l) = PAIRS[(i * 3) % PAIRS.len()];
        text.push_str(&format!("{i}\t{a} ({i})\t{b}\t{l}\n"));
    }
    std::fs::write(rte.join("train.tsv"), &text).unwrap();
    std::fs::write(rte.join("dev.tsv"), &text).unwrap();
}

/// MiniLM with dropout off: links to its weights and tokenizer, a config.json with both
/// dropout probabilities 0.
fn deterministic_minilm(dir: &Path) -> PathBuf {
    let source = MINILM_L6_V2.resolve(None).unwrap();
    let model = dir.join("minilm-no-dropout");
    std::fs::create_dir_all(&model).unwrap();
    for file in TOKENIZER_FILES.iter().chain(&["model.safetensors"]) {
        if source.join(file).is_file() {
            std::os::unix::fs::symlink(source.join(file), model.join(file)).unwrap();
        }
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("config.json")).unwrap())
            .unwrap();
    config["hidden_dropout_prob"] = 0.0.into();
    config["attention_probs_dropout_prob"] = 0.0.into();
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    model
}

/// Sixteen tokenized pairs with their labels, as a [`Workload`] over MiniLM.
struct Pairs {
    rows: Vec<Encoded>,
    labels: Vec<i64>,
    pad_id: u32,
    ce: CrossEntropyLoss<B>,
    device: Device,
}

impl Workload<B> for Pairs {
    type Model = BertForSequenceClassification<B>;

    fn batches_per_epoch(&self) -> usize {
        1
    }

    fn epoch_batches(&self, _epoch: usize) -> Vec<Vec<usize>> {
        vec![(0..self.rows.len()).collect()]
    }

    fn loss(&mut self, model: &Self::Model, batch: &[usize]) -> Result<Tensor<B, 1>, TrainError> {
        let rows: Vec<Encoded> = batch.iter().map(|&i| self.rows[i].clone()).collect();
        let padded = PaddedBatch::new(&rows, self.pad_id);
        let logits = model.forward(batch_to_input::<B>(&padded, &self.device));
        let targets: Vec<i64> = batch.iter().map(|&i| self.labels[i]).collect();
        let n = targets.len();
        Ok(self.ce.forward(
            logits,
            Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [n]), &self.device),
        ))
    }

    fn evaluate(
        &self,
        _model: &BertForSequenceClassification<Inner>,
    ) -> Result<HashMap<String, f64>, TrainError> {
        Ok(HashMap::new())
    }
}

fn unit_grad(grads: &GradientsParams, unit: &Unit) -> Vec<f32> {
    let data = match unit.shape.len() {
        1 => grads.get::<Inner, 1>(unit.param_id).map(|t| t.into_data()),
        _ => grads.get::<Inner, 2>(unit.param_id).map(|t| t.into_data()),
    };
    data.unwrap_or_else(|| panic!("no gradient for {}", unit.name))
        .convert::<f32>()
        .into_vec()
        .unwrap()
}

/// `‖a − b‖ / ‖a‖`.
fn relative(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    let norm: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum();
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

#[test]
fn two_micro_batches_of_8_give_the_gradient_of_one_batch_of_16() {
    let _serial = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = deterministic_minilm(tmp.path());
    let device = default_device().unwrap();
    let checkpoint = CheckpointDir::new(&dir);
    let config = checkpoint.config().unwrap();
    assert_eq!(config.hidden_dropout_prob, 0.0);
    <B as burn::tensor::backend::Backend>::seed(&device, 1);
    let model = BertForSequenceClassification::<B>::load(
        &mut checkpoint.weights(&device).unwrap(),
        &config,
        SequenceTask::Classification { num_labels: 2 },
    )
    .unwrap();
    let tokenizer = WordPieceTokenizer::from_dir(&dir, 64).unwrap();
    // The first eight as written, the second eight with the sentences swapped.
    let (rows, labels): (Vec<Encoded>, Vec<i64>) = (0..16)
        .map(|i| {
            let (a, b, l) = PAIRS[i % PAIRS.len()];
            let (a, b) = if i < 8 { (a, b) } else { (b, a) };
            let label = i64::from(l == "not_entailment");
            (tokenizer.encode(a, Some(b)).unwrap(), label)
        })
        .unzip();
    let mut pairs = Pairs {
        rows,
        labels,
        pad_id: tokenizer.pad_id(),
        ce: CrossEntropyLossConfig::new().init(&device),
        device: default_device().unwrap(),
    };
    // Two halves of unequal padded lengths: the micro-batches pad differently from the
    // whole batch.
    let whole: Vec<usize> = (0..16).collect();
    let halves = [(0..8).collect::<Vec<_>>(), (8..16).collect()];
    let (g16, loss16) = step_gradients(&mut pairs, &model, std::slice::from_ref(&whole)).unwrap();
    let (g8x2, loss8x2) = step_gradients(&mut pairs, &model, &halves).unwrap();
    let (g8, _) = step_gradients(&mut pairs, &model, &halves[..1]).unwrap();

    let units = model.units();
    let mut worst: f64 = 0.0;
    let mut first_half: f64 = f64::INFINITY;
    for unit in &units {
        let whole = unit_grad(&g16, unit);
        worst = worst.max(relative(&whole, &unit_grad(&g8x2, unit)));
        first_half = first_half.min(relative(&whole, &unit_grad(&g8, unit)));
    }
    println!(
        "loss 16×1 {loss16}, 8×2 {loss8x2}; max over {} units of ‖g16 − g8×2‖/‖g16‖ = {worst:.2e} \
         (one half alone: ≥ {first_half:.2e})",
        units.len()
    );
    assert!(
        (loss16 - loss8x2).abs() <= 1e-6 * loss16.abs(),
        "{loss16} vs {loss8x2}"
    );
    assert!(worst <= 1e-5, "{worst}");
    // The comparison can tell: one micro-batch alone is far off.
    assert!(first_half > 1e-2, "{first_half}");
}

fn rte_config(
    data: &Path,
    model: &Path,
    batch: usize,
    grad_accum: usize,
    out: &Path,
) -> TrainConfig {
    TrainSettings {
        task: Some(GlueTask::Rte.into()),
        data_dir: Some(data.to_path_buf()),
        model: Some(model.to_path_buf()),
        policy: Some(PolicyKind::Full),
        epochs: Some(1),
        batch: Some(batch),
        grad_accum: Some(grad_accum),
        lr: Some(1e-4),
        max_len: Some(64),
        seed: Some(5),
        max_train_examples: Some(16),
        max_dev_examples: Some(8),
        output: Some(out.to_path_buf()),
        ..TrainSettings::default()
    }
    .resolve()
    .unwrap()
}

fn tensors(dir: &Path) -> HashMap<String, Vec<f32>> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, values)
        })
        .collect()
}

#[test]
fn run_file_with_grad_accum_matches_one_big_batch_and_saves_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("glue");
    write_rte(&data);
    let model = deterministic_minilm(tmp.path());

    // 8 × 2 through the binary, from a run file; the command line overrides its seed.
    let run = tmp.path().join("run.toml");
    std::fs::write(
        &run,
        format!(
            "task = \"rte\"\ndata_dir = \"glue\"\nmodel = {:?}\npolicy = \"full\"\nbatch = 8\n\
             grad_accum = 2\nepochs = 1\nlr = 1e-4\nmax_len = 64\nseed = 99\n\
             max_train_examples = 16\nmax_dev_examples = 8\noutput = \"accum\"\n\
             report = \"report.json\"\n",
            model.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_slimfit-trainer"))
        .args(["train", "--config", run.to_str().unwrap(), "--seed", "5"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 steps") && stdout.contains("saved to"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("report.json")).unwrap())
            .unwrap();
    let config = &report["config"];
    assert_eq!(config["grad_accum"], 2);
    assert_eq!(
        config["batch"], 8,
        "the run file over the task default (16)"
    );
    assert_eq!(config["seed"], 5, "the command line over the run file");
    assert_eq!(config["compression"], "exact", "full fine-tuning's default");
    assert_eq!(config["epochs"], 1);
    assert_eq!(report["loss_curve"].as_array().unwrap().len(), 1);
    let accum_dir = tmp.path().join("accum");
    for file in [
        "model.safetensors",
        "config.json",
        "vocab.txt",
        "tokenizer.json",
    ] {
        assert!(accum_dir.join(file).is_file(), "{file}");
    }

    // 16 × 1 in process, same seed.
    let whole_dir = tmp.path().join("whole");
    let whole = {
        let _serial = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
        let config = rte_config(&data, &model, 16, 1, &whole_dir);
        train::<B>(config, &default_device().unwrap(), |_, _, _, _| {}).unwrap()
    };
    assert_eq!(whole.loss_curve.len(), 1);
    let accum_loss = report["loss_curve"][0].as_f64().unwrap() as f32;
    println!("loss 16×1 {} vs 8×2 {accum_loss}", whole.loss_curve[0]);
    assert!((whole.loss_curve[0] - accum_loss).abs() <= 1e-5 * accum_loss.abs());

    // The updated weights agree tensor by tensor, and they did change.
    let (a, b) = (tensors(&whole_dir), tensors(&accum_dir));
    let original = tensors(&MINILM_L6_V2.resolve(None).unwrap());
    assert_eq!(a.len(), b.len());
    let mut worst: f64 = 0.0;
    let mut worst_update: f64 = 0.0;
    for (name, x) in &a {
        let y = &b[name];
        worst = worst.max(relative(x, y));
        if let Some(w0) = original.get(name.strip_prefix("bert.").unwrap_or(name)) {
            let dx: Vec<f32> = x.iter().zip(w0).map(|(p, q)| p - q).collect();
            let dy: Vec<f32> = y.iter().zip(w0).map(|(p, q)| p - q).collect();
            assert!(dx.iter().any(|d| *d != 0.0), "{name} did not train");
            let r = relative(&dx, &dy);
            // Key biases shift every score of a query alike: their gradient is 0 but for
            // rounding, which Adam's first step scales up to ~1e-9 — updates of noise.
            if dx.iter().any(|d| d.abs() > 1e-6) {
                worst_update = worst_update.max(r);
            }
        }
    }
    println!(
        "after one step: max ‖w16 − w8×2‖/‖w16‖ = {worst:.2e}; of the updates (tensors \
         moved by more than 1e-6): {worst_update:.2e}"
    );
    assert!(worst <= 1e-5, "{worst}");
    assert!(worst_update <= 1e-3, "{worst_update}");
}

#[test]
fn budget_mode_counts_the_running_gradient_sum_and_holds() {
    let _serial = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("glue");
    write_rte(&data);
    let model = MINILM_L6_V2.resolve(None).unwrap();
    let budget = slimfit_memory::Bytes(345 << 20);
    let config = |grad_accum, epochs| TrainConfig {
        policy: PolicyKind::Ils,
        freeze_rate: 0.9,
        compression: slimfit_models::Compression::Scaled,
        epochs,
        max_train_examples: Some(24),
        memory_budget: MemoryBudget::Bytes(budget),
        output: None,
        ..rte_config(&data, &model, 8, grad_accum, tmp.path())
    };
    let device = default_device().unwrap();
    let single = train::<B>(config(1, 1), &device, |_, _, _, _| {}).unwrap();
    let accum = train::<B>(config(2, 3), &device, |_, _, _, _| {}).unwrap();
    let (fit1, fit2) = (
        single.budget.unwrap(),
        accum.budget.as_ref().unwrap().clone(),
    );
    let peak = accum.peak_bytes.expect("flex counts bytes");
    println!(
        "budget {budget}: {} units per step without accumulation, {} with 2 micro-batches \
         (predicted worst case {}); measured peak of 6 accumulated steps {peak}",
        fit1.trainable_units, fit2.trainable_units, fit2.predicted_worst_case_peak
    );
    // Three micro-batches of 8 per epoch: steps of 2 and 1.
    assert_eq!(accum.loss_curve.len(), 6);
    assert!(fit2.trainable_units < fit1.trainable_units);
    assert!(fit2.predicted_worst_case_peak <= budget);
    assert!(peak <= budget, "measured {peak} above the budget {budget}");
}
