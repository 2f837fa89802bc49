//! Step time of one SlimFit training step on all-MiniLM-L6-v2 (real weights, 54 units) on
//! the flex CPU backend, batch 16 × 64 tokens: `BertForSequenceClassification` (2 labels)
//! forward + cross-entropy + backward + AdamW update (ε 1e-6, weight decay 0.01), the
//! protocol of `slimfit-trainer measure-step` on real weights.
//!
//! Benchmarks `slimfit_step_minilm_16x64/<mode>/<rate>`, for each compression mode
//! (`exact`, `paper`, `scaled`: `CompressionConfig::uniform`) and freezing rate
//! `full` (r = 0, nothing frozen) or `r0.8` / `r0.9` / `r0.95`. The frozen set is
//! chosen by `slimfit_scheduler::Ils` from scores that rank the units by index, i.e. the
//! lowest `floor(r · 54)` units are frozen (43 / 48 / 51) — the `measure-step` convention:
//! embeddings and the early layers freeze first. Each iteration re-applies the freezing
//! (`HasUnits::with_trainable`, as the training loop does every step) and runs one step;
//! the weights keep training from iteration to iteration.
//!
//! Run: `nice -n 0 cargo bench -p slimfit-benches --bench slimfit_step`
//! (flat sampling, 10 one-step samples per configuration; 12 minutes at load 7 on 2 cores).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use slimfit_data::assets::MINILM_L6_V2;
use slimfit_models::{
    BertForSequenceClassification, BertInput, CheckpointDir, Compression, CompressionConfig,
    HasUnits, SequenceTask,
};
use slimfit_scheduler::{FreezePolicy, FreezeRate, Ils};

type B = Autodiff<Flex>;

const BATCH: usize = 16;
const SEQ: usize = 64;
/// Freezing rates of the ILS rows (`full` is r = 0).
const RATES: [f64; 3] = [0.8, 0.9, 0.95];

fn random_input<Bk: Backend>(vocab: usize, device: &Bk::Device) -> BertInput<Bk> {
    // A fixed pseudo-random id pattern: reproducible without an RNG dependency.
    let ids: Vec<i64> = (0..BATCH * SEQ)
        .map(|i| 1000 + ((i * 7919 + 13) % (vocab - 1000)) as i64)
        .collect();
    let t = |v: Vec<i64>| Tensor::<Bk, 2, Int>::from_data(TensorData::new(v, [BATCH, SEQ]), device);
    BertInput {
        input_ids: t(ids),
        token_type_ids: t(vec![0; BATCH * SEQ]),
        attention_mask: t(vec![1; BATCH * SEQ]),
    }
}

/// `trainable[i]` per unit for freezing rate `rate`: ILS over all units with scores that
/// grow with the unit index, so the lowest `floor(rate · t)` units freeze.
fn ils_by_index(t: usize, rate: f64) -> Vec<bool> {
    let scores: Vec<f64> = (0..t).map(|i| i as f64).collect();
    Ils::new(FreezeRate::new(rate).unwrap(), vec![true; t]).trainable(0, &scores)
}

fn step_time(c: &mut Criterion) {
    let device = Default::default();
    let ckpt = CheckpointDir::new(MINILM_L6_V2.resolve(None).expect("MiniLM checkpoint"));
    let config = ckpt.config().unwrap();
    let task = SequenceTask::Classification { num_labels: 2 };
    // Loaded once; every configuration trains its own copy from these weights.
    let pretrained: BertForSequenceClassification<B> =
        BertForSequenceClassification::load(&mut ckpt.weights(&device).unwrap(), &config, task)
            .unwrap();
    let units = pretrained.units();
    let t = units.len();
    let input = random_input::<B>(config.vocab_size, &device);
    let labels = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            (0..BATCH as i64).map(|i| i % 2).collect::<Vec<_>>(),
            [BATCH],
        ),
        &device,
    );
    let loss_fn = CrossEntropyLossConfig::new().init(&device);

    let mut group = c.benchmark_group(format!("slimfit_step_minilm_{BATCH}x{SEQ}"));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(12));
    for mode in Compression::ALL {
        let rows = std::iter::once((String::from("full"), vec![true; t]))
            .chain(RATES.iter().map(|&r| (format!("r{r}"), ils_by_index(t, r))));
        for (rate_name, trainable) in rows {
            let mut model = pretrained.clone();
            model.bert = model
                .bert
                .with_compression(CompressionConfig::uniform(mode));
            let mut model = Some(model);
            let mut optim = AdamWConfig::new()
                .with_epsilon(1e-6)
                .with_weight_decay(0.01)
                .init::<B, BertForSequenceClassification<B>>();
            group.bench_function(format!("{mode}/{rate_name}"), |b| {
                b.iter(|| {
                    let m = model.take().unwrap().with_trainable(&units, &trainable);
                    let logits = m.forward(input.clone());
                    let loss = loss_fn.forward(logits, labels.clone());
                    let grads = GradientsParams::from_grads(loss.backward(), &m);
                    model = Some(optim.step(1e-5, m, grads));
                    B::sync(&device).unwrap();
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, step_time);
criterion_main!(benches);
