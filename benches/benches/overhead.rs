//! Per-step bookkeeping of SlimFit outside the model's forward / backward / update, as the
//! training loop (`slimfit-trainer`'s `run_slimfit`) does it every step:
//! - `overhead/ils_pick/{minilm_54,bert_base_102}/r…`: `slimfit_scheduler::Ils::trainable`
//!   (sort the candidates by score, freeze the lowest `floor(r·t)`) over the unit list of
//!   all-MiniLM-L6-v2 (54 units) and bert-base (102 units), scores from
//!   `slimfit_dynamics::UnitScores::new` (seeded random);
//! - `overhead/snapshot/minilm/<set>`: copying the trainable units' weights of the
//!   `Autodiff<Flex>` model to the host (`param.val().into_data()`), which the loop does
//!   twice per step (before and after the optimizer step);
//! - `overhead/score_record/minilm/<set>`: `UnitScores::record(unit, before, after)` for
//!   each trainable unit (relative-L1 formula, the default), real MiniLM weights.
//!
//! `<set>` is the set of trainable units at freezing rate r: `r0.8_step` / `r0.9_step` /
//! `r0.95_step` are the units that train in the `slimfit_step` bench (the highest
//! `54 − floor(54·r)` = 11 / 6 / 3 indices: last layer, pooler, classifier);
//! `r0.8_largest` / `r0.9_largest` / `r0.95_largest` are the worst case, the 11 / 6 / 3
//! largest units (the 30522 × 384 word-embedding table first); `all_54` is every unit.
//! One step's overhead is `ils_pick + 2 × snapshot + score_record` for one set; compare it
//! with `slimfit_step` at the same rate.
//!
//! Run: `nice -n 0 cargo bench -p slimfit-benches --bench overhead` (about 1 minute).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::collections::HashMap;
use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use criterion::{Criterion, criterion_group, criterion_main};
use slimfit_data::assets::MINILM_L6_V2;
use slimfit_dynamics::{ScoreFormula, UnitScores};
use slimfit_models::{
    BertConfig, BertForSequenceClassification, CheckpointDir, HasUnits, InitSource, SequenceTask,
    Unit,
};
use slimfit_scheduler::{FreezePolicy, FreezeRate, Ils};

type B = Autodiff<Flex>;

const RATES: [f64; 3] = [0.8, 0.9, 0.95];

fn task() -> SequenceTask {
    SequenceTask::Classification { num_labels: 2 }
}

fn ils_pick(c: &mut Criterion) {
    let device = Default::default();
    let ckpt = CheckpointDir::new(MINILM_L6_V2.resolve(None).expect("MiniLM checkpoint"));
    let minilm = BertForSequenceClassification::<Flex>::load(
        &mut ckpt.weights(&device).unwrap(),
        &ckpt.config().unwrap(),
        task(),
    )
    .unwrap()
    .units()
    .len();
    let bert_base = BertForSequenceClassification::<Flex>::load(
        &mut InitSource::new(&device),
        &BertConfig::bert_base(),
        task(),
    )
    .unwrap()
    .units()
    .len();
    assert_eq!((minilm, bert_base), (54, 102));

    let mut group = c.benchmark_group("overhead/ils_pick");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, t) in [("minilm_54", minilm), ("bert_base_102", bert_base)] {
        let scores = UnitScores::new(t, ScoreFormula::RelativeL1, 1e10, 0);
        for r in RATES {
            let mut ils = Ils::new(FreezeRate::new(r).unwrap(), vec![true; t]);
            group.bench_function(format!("{name}/r{r}"), |b| {
                b.iter(|| ils.trainable(0, scores.scores()))
            });
        }
    }
    group.finish();
}

/// Copies the values of chosen parameters to the host (what the training loop does).
struct Snapshot<'a> {
    wanted: &'a HashMap<ParamId, usize>,
    values: HashMap<usize, Vec<f32>>,
}

impl<Bk: burn::tensor::backend::Backend> ModuleVisitor<Bk> for Snapshot<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
        if let Some(&unit) = self.wanted.get(&param.id) {
            let data = param.val().into_data().convert::<f32>();
            self.values
                .insert(unit, data.into_vec().expect("f32 values"));
        }
    }
}

fn snapshot<M: Module<B>>(model: &M, wanted: &HashMap<ParamId, usize>) -> HashMap<usize, Vec<f32>> {
    let mut visitor = Snapshot {
        wanted,
        values: HashMap::new(),
    };
    model.visit(&mut visitor);
    visitor.values
}

/// The named sets of trainable unit indices (see the header).
fn unit_sets(units: &[Unit]) -> Vec<(String, Vec<usize>)> {
    let t = units.len();
    let mut by_size: Vec<usize> = (0..t).collect();
    by_size.sort_by_key(|&i| std::cmp::Reverse(units[i].numel()));
    let mut sets = Vec::new();
    for r in RATES {
        let k = t - FreezeRate::new(r).unwrap().frozen_of(t);
        sets.push((format!("r{r}_step"), (t - k..t).collect()));
        sets.push((format!("r{r}_largest"), by_size[..k].to_vec()));
    }
    sets.push((format!("all_{t}"), (0..t).collect()));
    sets
}

fn score_update(c: &mut Criterion) {
    let device = Default::default();
    let ckpt = CheckpointDir::new(MINILM_L6_V2.resolve(None).expect("MiniLM checkpoint"));
    let model = BertForSequenceClassification::<B>::load(
        &mut ckpt.weights(&device).unwrap(),
        &ckpt.config().unwrap(),
        task(),
    )
    .unwrap();
    let units = model.units();
    let sets = unit_sets(&units);

    let mut group = c.benchmark_group("overhead/snapshot/minilm");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, set) in &sets {
        let wanted: HashMap<ParamId, usize> = set.iter().map(|&i| (units[i].param_id, i)).collect();
        group.bench_function(name.as_str(), |b| b.iter(|| snapshot(&model, &wanted)));
    }
    group.finish();

    let all: HashMap<ParamId, usize> = units.iter().map(|u| (u.param_id, u.index)).collect();
    let before = snapshot(&model, &all);
    // A plausible AdamW step: every weight moves by ~1e-5 relative plus a small offset.
    let after: HashMap<usize, Vec<f32>> = before
        .iter()
        .map(|(&i, w)| (i, w.iter().map(|&x| x * (1.0 - 1e-5) + 1e-7).collect()))
        .collect();
    let mut scores = UnitScores::new(units.len(), ScoreFormula::RelativeL1, 1e10, 0);
    let mut group = c.benchmark_group("overhead/score_record/minilm");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, set) in &sets {
        group.bench_function(name.as_str(), |b| {
            b.iter(|| {
                for &i in set {
                    scores.record(i, &before[&i], &after[&i]).unwrap();
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ils_pick, score_update);
criterion_main!(benches);
