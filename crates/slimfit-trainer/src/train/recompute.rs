//! Activation checkpointing for BERT: each encoder layer's activations are recomputed in
//! backward instead of being kept from the forward pass.
//!
//! The forward pass runs without a tape, keeping only each layer's input; backward then
//! walks the layers from the top, re-running one layer at a time with autodiff and
//! back-propagating the gradient that reached its output into its parameters and its input.
//! At any moment one layer's activations are alive, plus the layers' inputs (one
//! `[batch, seq, hidden]` tensor per layer). The arithmetic is the same as a plain backward
//! pass — same ops, same order — and dropout draws the same masks in both passes, because
//! the generator is reseeded before every segment ([`segment_seed`]), in the plain pass too.
//! Frozen units and compressed storage work inside a recomputed layer as anywhere else.
//! Below the lowest layer with a trainable parameter nothing is recomputed.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, backend::Backend};
use slimfit_models::{BertForSequenceClassification, BertInput, SlimOps};

/// The seed of `segment` (0 the embeddings, `1 + l` layer `l`, then the head) in forward
/// pass `pass` of a run seeded `seed` (SplitMix64 of the three).
pub(super) fn segment_seed(seed: u64, pass: u64, segment: usize) -> u64 {
    let mut z = seed
        .wrapping_add(pass.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add((segment as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether any parameter of `module` trains.
fn trains<B: Backend, M: Module<B>>(module: &M) -> bool {
    struct Any(bool);
    impl<B: Backend> ModuleVisitor<B> for Any {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0 |= param.is_require_grad();
        }
    }
    let mut any = Any(false);
    module.visit(&mut any);
    any.0
}

/// Back-propagates `loss_of(logits)` of `input`, divided by `divide_by`, into `grads`,
/// recomputing each layer in backward; returns the (undivided) loss. `reseed(segment)` is
/// called before each segment runs, in the forward pass and again before its
/// recomputation.
pub(super) fn checkpointed_backward<B>(
    model: &BertForSequenceClassification<B>,
    input: BertInput<B>,
    loss_of: impl FnOnce(Tensor<B, 2>) -> Tensor<B, 1>,
    divide_by: usize,
    reseed: &mut dyn FnMut(usize),
    grads: &mut GradientsAccumulator<BertForSequenceClassification<B>>,
) -> Tensor<B, 1>
where
    B: AutodiffBackend + SlimOps,
    B::InnerBackend: SlimOps,
{
    let bert = &model.bert;
    let n = bert.layers.len();
    // Forward without a tape: the same model with nothing requiring a gradient.
    let untaped = model.clone().no_grad();
    let mask_bias = untaped.bert.mask_bias(input.attention_mask);
    reseed(0);
    let mut hidden = untaped
        .bert
        .embed(input.input_ids.clone(), input.token_type_ids.clone());
    let mut inputs = Vec::with_capacity(n);
    for (l, layer) in untaped.bert.layers.iter().enumerate() {
        inputs.push(hidden.clone());
        reseed(1 + l);
        hidden = layer.forward(hidden, mask_bias.clone(), &bert.compression);
    }
    drop(untaped);

    // The head and the loss, taped; the gradient at the last layer's output flows down.
    let top = hidden.require_grad();
    reseed(1 + n);
    let loss = loss_of(model.head(top.clone()));
    let value = loss.clone().detach();
    let scaled = if divide_by > 1 {
        loss.div_scalar(divide_by as f64)
    } else {
        loss
    };
    let mut tape = scaled.backward();
    let mut upstream = top.grad(&tape);
    grads.accumulate(model, GradientsParams::from_module(&mut tape, model));

    // Layer by layer from the top, while anything at or below trains.
    let embeddings_train = trains(&bert.embeddings);
    let trains_below: Vec<bool> = (0..=n)
        .map(|l| embeddings_train || bert.layers[..l].iter().any(trains))
        .collect();
    for l in (0..n).rev() {
        let Some(gradient) = upstream.take() else {
            break;
        };
        if !trains_below[l + 1] {
            break;
        }
        let x = inputs.pop().expect("one input per layer");
        let x = if trains_below[l] { x.require_grad() } else { x };
        reseed(1 + l);
        let y = bert.layers[l].forward(x.clone(), mask_bias.clone(), &bert.compression);
        let mut tape = (y * Tensor::from_inner(gradient)).sum().backward();
        upstream = x.grad(&tape);
        grads.accumulate(model, GradientsParams::from_module(&mut tape, model));
    }
    if let (true, Some(gradient)) = (embeddings_train, upstream) {
        reseed(0);
        let e = bert.embed(input.input_ids, input.token_type_ids);
        let mut tape = (e * Tensor::from_inner(gradient)).sum().backward();
        grads.accumulate(model, GradientsParams::from_module(&mut tape, model));
    }
    value
}
