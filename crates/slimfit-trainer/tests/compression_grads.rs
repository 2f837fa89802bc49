//! On the real MiniLM weights and real sentences, the loss gradient of the trainable units
//! under `paper` and `scaled` compression points the same way as under exact storage.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use slimfit_data::assets::MINILM_L6_V2;
use slimfit_data::{PaddedBatch, WordPieceTokenizer};
use slimfit_models::{
    BertForSequenceClassification, CheckpointDir, Compression, CompressionConfig, HasUnits,
    SequenceTask, Unit,
};
use slimfit_trainer::backend::{TrainingBackend as B, default_device};
use slimfit_trainer::encode::batch_to_input;

const SENTENCES: [(&str, Option<&str>); 8] = [
    ("The cat sat on the mat.", None),
    (
        "A man is playing a guitar on stage tonight.",
        Some("Someone performs music."),
    ),
    ("Stocks fell sharply after the announcement.", None),
    ("I would not recommend this restaurant to anyone.", None),
    (
        "The committee approved the budget.",
        Some("The budget was rejected by the committee."),
    ),
    (
        "Rain is expected tomorrow in the northern regions of the country.",
        None,
    ),
    (
        "She quickly finished the report.",
        Some("The report was finished by her."),
    ),
    ("Colorless green ideas sleep furiously.", None),
];

type Inner = <B as burn::tensor::backend::AutodiffBackend>::InnerBackend;

static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn try_unit_grad(grads: &GradientsParams, unit: &Unit) -> Option<Vec<f32>> {
    let data = match unit.shape.len() {
        1 => grads.get::<Inner, 1>(unit.param_id).map(|t| t.into_data()),
        _ => grads.get::<Inner, 2>(unit.param_id).map(|t| t.into_data()),
    };
    data.map(|d| d.convert::<f32>().into_vec().unwrap())
}

fn unit_grad(grads: &GradientsParams, unit: &Unit) -> Vec<f32> {
    try_unit_grad(grads, unit)
        .unwrap_or_else(|| panic!("no gradient for trainable unit {}", unit.name))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

struct Fixture {
    model: BertForSequenceClassification<B>,
    units: Vec<Unit>,
    trainable: Vec<bool>,
    batch: PaddedBatch,
    labels: Tensor<B, 1, Int>,
    device: slimfit_trainer::backend::Device,
}

impl Fixture {
    fn new() -> Self {
        let device = default_device().unwrap();
        let dir = MINILM_L6_V2.resolve(None).unwrap();
        let checkpoint = CheckpointDir::new(&dir);
        let mut config = checkpoint.config().unwrap();
        // Dropout off: every run must see the same network.
        config.hidden_dropout_prob = 0.0;
        config.attention_probs_dropout_prob = 0.0;
        // The new head is drawn from the backend's process-wide RNG: the tests of this file
        // run in parallel threads, so seed and draw under a lock to get the same head.
        let model = {
            let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
            <B as burn::tensor::backend::Backend>::seed(&device, 7);
            BertForSequenceClassification::<B>::load(
                &mut checkpoint.weights(&device).unwrap(),
                &config,
                SequenceTask::Classification { num_labels: 2 },
            )
            .unwrap()
        };
        let tokenizer = WordPieceTokenizer::from_dir(&dir, 128).unwrap();
        let rows: Vec<_> = SENTENCES
            .iter()
            .map(|(a, b)| tokenizer.encode(a, *b).unwrap())
            .collect();
        let batch = PaddedBatch::new(&rows, tokenizer.pad_id());
        let labels = Tensor::<B, 1, Int>::from_data(
            TensorData::new(vec![1i64, 1, 0, 0, 0, 1, 1, 0], [8]),
            &device,
        );
        let units = model.units();
        assert_eq!(units.len(), 54);
        // About 10 % of the units train, one in each layer, plus the head.
        let trainable = units
            .iter()
            .map(|u| u.index % 9 == 4 || u.name == "classifier.weight")
            .collect();
        Self {
            model,
            units,
            trainable,
            batch,
            labels,
            device,
        }
    }

    fn grads(&self, compression: CompressionConfig) -> GradientsParams {
        let mut m = self
            .model
            .clone()
            .with_trainable(&self.units, &self.trainable);
        m.bert = m.bert.with_compression(compression);
        let logits = m.forward(batch_to_input::<B>(&self.batch, &self.device));
        let loss_fn = CrossEntropyLossConfig::new().init(&self.device);
        let grads = loss_fn.forward(logits, self.labels.clone()).backward();
        GradientsParams::from_grads(grads, &m)
    }

    /// Cosine between each trainable unit's gradient under `compression` and under exact.
    fn cosines(&self, exact: &GradientsParams, compression: CompressionConfig) -> Vec<f64> {
        let grads = self.grads(compression);
        for unit in self.units.iter().filter(|u| !self.trainable[u.index]) {
            assert!(
                try_unit_grad(&grads, unit).is_none(),
                "frozen {} got a gradient",
                unit.name
            );
        }
        self.units
            .iter()
            .filter(|u| self.trainable[u.index])
            .map(|u| cosine(&unit_grad(&grads, u), &unit_grad(exact, u)))
            .collect()
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// All ops compressed together. Measured on this batch: scaled 0.9996–1.000 per unit (it was
/// 0.988 while GELU′ was kept in 4 bits); paper 0.90–1.000 — the reference's 4-bit GELU
/// input and top-10 % LayerNorm lose direction on MiniLM (see `per_op_ablation`).
#[test]
fn trainable_unit_gradients_survive_compression() {
    let f = Fixture::new();
    let exact = f.grads(CompressionConfig::exact());
    let scaled = f.cosines(&exact, CompressionConfig::uniform(Compression::Scaled));
    let paper = f.cosines(&exact, CompressionConfig::uniform(Compression::Paper));
    println!("scaled {scaled:.4?}\npaper  {paper:.4?}");
    let mean = scaled.iter().sum::<f64>() / scaled.len() as f64;
    assert!(
        min(&scaled) > 0.999 && mean > 0.9995,
        "scaled cosines {scaled:?}"
    );
    assert!(min(&paper) > 0.85, "paper cosines {paper:?}");
}

/// One op compressed at a time: where each mode loses gradient direction. Scaled is never
/// worse than paper and fixes the two lossy paper formats (GELU, frozen LayerNorm).
#[test]
fn per_op_ablation() {
    let f = Fixture::new();
    let exact = f.grads(CompressionConfig::exact());
    let ops = [
        "attention_scores",
        "attention_context",
        "gelu",
        "ffn2_input",
        "layer_norm",
    ];
    for (i, op) in ops.iter().enumerate() {
        let only = |mode: Compression| {
            let mut c = CompressionConfig::exact();
            match i {
                0 => c.attention_scores = mode,
                1 => c.attention_context = mode,
                2 => c.gelu = mode,
                3 => c.ffn2_input = mode,
                _ => c.layer_norm = mode,
            }
            // Keep the custom-op path (dropout is off, so its mask storage is irrelevant).
            c.dropout_mask = Compression::Scaled;
            min(&f.cosines(&exact, c))
        };
        let (paper, scaled) = (only(Compression::Paper), only(Compression::Scaled));
        println!("{op:18} min cosine: paper {paper:.4}  scaled {scaled:.4}");
        assert!(
            scaled >= paper - 1e-3,
            "{op}: scaled {scaled} worse than paper {paper}"
        );
        assert!(scaled > 0.985, "{op}: scaled {scaled}");
        if *op == "gelu" || *op == "layer_norm" {
            assert!(
                scaled > paper + 0.01,
                "{op}: scaled {scaled} vs paper {paper}"
            );
        }
    }
}
