//! SlimFit's units: one per weight tensor and LayerNorm γ, frozen by name without rebuilding.

use burn::backend::{Autodiff, Flex};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use slimfit_models::{
    BertConfig, BertForQuestionAnswering, BertForSequenceClassification, BertInput, HasUnits,
    InitSource, SequenceTask, UnitKind,
};

type A = Autodiff<Flex>;

fn classifier(config: &BertConfig) -> BertForSequenceClassification<A> {
    let device = Default::default();
    BertForSequenceClassification::load(
        &mut InitSource::new(&device),
        config,
        SequenceTask::Classification { num_labels: 2 },
    )
    .unwrap()
}

#[test]
fn unit_counts_match_the_paper() {
    // SLIMFIT.md §1: BERT-base classification t = 102, QA t = 101; MiniLM-L6 t = 54.
    let device = Default::default();
    let base = BertConfig::bert_base();
    assert_eq!(classifier(&base).units().len(), 102);
    let qa = BertForQuestionAnswering::<A>::load(&mut InitSource::new(&device), &base).unwrap();
    assert_eq!(qa.units().len(), 101);
    let units = classifier(&BertConfig::minilm_l6()).units();
    assert_eq!(units.len(), 54);
    assert_eq!(units[0].name, "embeddings.word_embeddings.weight");
    assert_eq!(units[0].shape, vec![30522, 384]);
    assert_eq!(units[4].name, "encoder.layer.0.attention.self.query.weight");
    assert_eq!(units[4].kind, UnitKind::Query);
    assert_eq!(units[10].kind, UnitKind::Ffn2);
    assert_eq!(units[10].shape, vec![384, 1536]);
    assert_eq!(units[53].name, "classifier.weight");
    let kinds = |k: UnitKind| units.iter().filter(|u| u.kind == k).count();
    assert_eq!(kinds(UnitKind::LayerNorm), 13);
    assert_eq!(kinds(UnitKind::Embedding), 3);
    assert!(units.iter().all(|u| !u.name.ends_with("bias")));
    assert!(units.iter().enumerate().all(|(i, u)| u.index == i));
}

#[test]
fn frozen_units_get_no_gradient_and_unfreeze_again() {
    let config = BertConfig::with_shape(100, 16, 2, 2, 32);
    let model = classifier(&config);
    let units = model.units();
    let device = Default::default();
    let ids = Tensor::<A, 2, Int>::from_data(TensorData::new(vec![1i64, 5, 7, 2], [1, 4]), &device);
    let input = BertInput {
        input_ids: ids.clone(),
        token_type_ids: ids.zeros_like(),
        attention_mask: ids.ones_like(),
    };
    let grads_with = |trainable: &[bool]| {
        let m = model.clone().with_trainable(&units, trainable);
        let loss = m.forward(input.clone()).sum();
        GradientsParams::from_grads(loss.backward(), &m)
    };
    let has_grad = |grads: &GradientsParams, i: usize| match units[i].shape.len() {
        1 => grads.get::<Flex, 1>(units[i].param_id).is_some(),
        _ => grads.get::<Flex, 2>(units[i].param_id).is_some(),
    };
    let only_even: Vec<bool> = (0..units.len()).map(|i| i % 2 == 0).collect();
    let grads = grads_with(&only_even);
    for i in 0..units.len() {
        assert_eq!(has_grad(&grads, i), only_even[i], "{}", units[i].name);
    }
    // Biases are not units and always train.
    let bias_id = model.classifier.bias.id;
    assert!(grads.get::<Flex, 1>(bias_id).is_some());
    // Unfreezing restores every gradient.
    let all = vec![true; units.len()];
    let grads = grads_with(&all);
    assert!((0..units.len()).all(|i| has_grad(&grads, i)));
}
