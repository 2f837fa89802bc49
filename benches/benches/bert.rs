//! MiniLM-L6 (real weights) on the flex CPU backend, batch 32 × 128 tokens:
//! - `minilm_forward_32x128`: inference forward pass;
//! - `minilm_train_step_32x128`: BertForSequenceClassification forward + cross-entropy +
//!   backward + AdamW update (full fine-tuning, nothing frozen).
//!
//! `cargo bench -p slimfit-benches --bench bert`; the PyTorch anchor on the same shapes is
//! `tools/reference/bench_torch.py`.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use burn::backend::{Autodiff, Flex};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use criterion::{Criterion, criterion_group, criterion_main};
use slimfit_data::assets::MINILM_L6_V2;
use slimfit_models::{
    BertForSequenceClassification, BertInput, BertModel, CheckpointDir, SequenceTask,
};

const BATCH: usize = 32;
const SEQ: usize = 128;

fn random_input<B: Backend>(vocab: usize, device: &B::Device) -> BertInput<B> {
    // A fixed pseudo-random id pattern: reproducible without an RNG dependency.
    let ids: Vec<i64> = (0..BATCH * SEQ)
        .map(|i| 1000 + ((i * 7919 + 13) % (vocab - 1000)) as i64)
        .collect();
    let t = |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [BATCH, SEQ]), device);
    BertInput {
        input_ids: t(ids),
        token_type_ids: t(vec![0; BATCH * SEQ]),
        attention_mask: t(vec![1; BATCH * SEQ]),
    }
}

fn forward(c: &mut Criterion) {
    let device = Default::default();
    let ckpt = CheckpointDir::new(MINILM_L6_V2.resolve(None).expect("MiniLM checkpoint"));
    let config = ckpt.config().unwrap();
    let model: BertModel<Flex> =
        BertModel::load(&mut ckpt.weights(&device).unwrap(), &config, true).unwrap();
    let input = random_input::<Flex>(config.vocab_size, &device);
    let mut group = c.benchmark_group("bert");
    group.sample_size(10);
    group.bench_function("minilm_forward_32x128", |b| {
        b.iter(|| {
            let out = model.forward(input.clone());
            Flex::sync(&device).unwrap();
            out.last_hidden_state
        })
    });
    group.finish();
}

fn train_step(c: &mut Criterion) {
    type B = Autodiff<Flex>;
    let device = Default::default();
    let ckpt = CheckpointDir::new(MINILM_L6_V2.resolve(None).expect("MiniLM checkpoint"));
    let config = ckpt.config().unwrap();
    let task = SequenceTask::Classification { num_labels: 2 };
    let mut model: Option<BertForSequenceClassification<B>> = Some(
        BertForSequenceClassification::load(&mut ckpt.weights(&device).unwrap(), &config, task)
            .unwrap(),
    );
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-6)
        .with_weight_decay(0.01)
        .init::<B, BertForSequenceClassification<B>>();
    let input = random_input::<B>(config.vocab_size, &device);
    let labels = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            (0..BATCH as i64).map(|i| i % 2).collect::<Vec<_>>(),
            [BATCH],
        ),
        &device,
    );
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut group = c.benchmark_group("bert");
    group.sample_size(10);
    group.bench_function("minilm_train_step_32x128", |b| {
        b.iter(|| {
            let m = model.take().unwrap();
            let logits = m.forward(input.clone());
            let loss = loss_fn.forward(logits, labels.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            model = Some(optim.step(1e-5, m, grads));
            Flex::sync(&device).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, forward, train_step);
criterion_main!(benches);
