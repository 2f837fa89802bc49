//! [`SlimOps`] for `Autodiff<B>`: custom backward steps with compressed saved state.
//!
//! Each op prepares a node whose parents are its differentiable inputs, computes the forward
//! pass on the inner backend, and stores only the state its backward needs — decided from
//! which parents are tracked, so a frozen weight costs no saved input.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, Tensor, TensorMetadata, backend::Backend};

use super::attention::{self, AttentionForward, AttentionOptions, AttentionState};
use super::gelu::{self, SavedGelu};
use super::layer_norm::{self, SavedNormalised};
use super::linear::{self, SavedInput};
use super::{Compression, SlimOps, dropout, prim, rows_cols, tensor};

fn as_rows<B: Backend>(p: FloatTensor<B>) -> Tensor<B, 2> {
    let (rows, cols) = rows_cols(&p.shape().to_vec());
    tensor(B::float_reshape(p, Shape::new([rows, cols])))
}

fn to_shape<B: Backend, const D: usize>(t: Tensor<B, D>, shape: &Shape) -> FloatTensor<B> {
    B::float_reshape(prim(t), shape.clone())
}

// ---------------------------------------------------------------------------------------
// Linear

#[derive(Debug)]
struct LinearBackward;

#[derive(Debug, Clone)]
struct LinearState<B: Backend> {
    input: Option<SavedInput<B>>,
    weight: Option<Tensor<B, 2>>,
    x_shape: Shape,
}

impl<B: Backend> Backward<B, 3> for LinearBackward {
    type State = LinearState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = as_rows::<B>(grads.consume::<B>(&ops.node));
        let state = ops.state;
        let input = node_w.as_ref().and(state.input).map(SavedInput::restore);
        let weight = node_x.as_ref().and(state.weight);
        let (dx, dw, db) = linear::backward(grad, input, weight, node_b.is_some());
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<B>(node.id, to_shape(dx, &state.x_shape));
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<B>(node.id, prim(dw));
        }
        if let (Some(node), Some(db)) = (node_b, db) {
            grads.register::<B>(node.id, prim(db));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Attention

#[derive(Debug)]
struct AttentionBackward;

impl<B: Backend> Backward<B, 3> for AttentionBackward {
    type State = AttentionState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad: Tensor<B, 4> = tensor(grads.consume::<B>(&ops.node));
        let want = (node_q.is_some(), node_k.is_some(), node_v.is_some());
        let (dq, dk, dv) = ops.state.backward(grad, want);
        for (node, g) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
            if let (Some(node), Some(g)) = (node, g) {
                grads.register::<B>(node.id, prim(g));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// GELU

#[derive(Debug)]
struct GeluBackward;

#[derive(Debug, Clone)]
struct GeluState<B: Backend> {
    saved: SavedGelu<B>,
    shape: Shape,
}

impl<B: Backend> Backward<B, 1> for GeluBackward {
    type State = GeluState<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = as_rows::<B>(grads.consume::<B>(&ops.node));
        if let Some(node) = node_x {
            let dx = grad * ops.state.saved.derivative();
            grads.register::<B>(node.id, to_shape(dx, &ops.state.shape));
        }
    }
}

// ---------------------------------------------------------------------------------------
// LayerNorm

#[derive(Debug)]
struct LayerNormBackward;

#[derive(Debug, Clone)]
struct LayerNormState<B: Backend> {
    normalised: Option<SavedNormalised<B>>,
    inv_std: Option<Tensor<B, 2>>,
    gamma: Option<Tensor<B, 1>>,
    shape: Shape,
}

impl<B: Backend> Backward<B, 3> for LayerNormBackward {
    type State = LayerNormState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = as_rows::<B>(grads.consume::<B>(&ops.node));
        let state = ops.state;
        let want = (node_x.is_some(), node_gamma.is_some(), node_beta.is_some());
        let x_hat = match state.normalised {
            Some(saved) => saved.restore(),
            // Only β trains: its gradient does not involve x̂.
            None => grad.clone(),
        };
        let (dx, dgamma, dbeta) =
            layer_norm::backward(grad, x_hat, state.inv_std, state.gamma, want);
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<B>(node.id, to_shape(dx, &state.shape));
        }
        if let (Some(node), Some(g)) = (node_gamma, dgamma) {
            grads.register::<B>(node.id, prim(g));
        }
        if let (Some(node), Some(g)) = (node_beta, dbeta) {
            grads.register::<B>(node.id, prim(g));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Dropout

#[derive(Debug)]
struct DropoutBackward;

#[derive(Debug, Clone)]
struct DropoutState<B: Backend> {
    mask: dropout::SavedMask<B>,
    prob: f64,
    shape: Shape,
}

impl<B: Backend> Backward<B, 1> for DropoutBackward {
    type State = DropoutState<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = as_rows::<B>(grads.consume::<B>(&ops.node));
        if let Some(node) = node_x {
            let dx = dropout::backward(grad, ops.state.mask, ops.state.prob);
            grads.register::<B>(node.id, to_shape(dx, &ops.state.shape));
        }
    }
}

// ---------------------------------------------------------------------------------------

impl<B: SlimOps, C: CheckpointStrategy> SlimOps for Autodiff<B, C> {
    fn slim_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        save: Compression,
    ) -> FloatTensor<Self> {
        let (x_tracked, w_tracked) = (x.is_tracked(), weight.is_tracked());
        let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
        match <LinearBackward as Backward<B, 3>>::prepare::<C>(LinearBackward, nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = LinearState::<B> {
                    input: w_tracked
                        .then(|| SavedInput::new(as_rows::<B>(x.primitive.clone()), save)),
                    weight: x_tracked.then(|| tensor(weight.primitive.clone())),
                    x_shape: x.primitive.shape(),
                };
                let out = linear::forward::<B>(x.primitive, weight.primitive, bias.primitive);
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(linear::forward::<B>(
                x.primitive,
                weight.primitive,
                bias.primitive,
            )),
        }
    }

    fn slim_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask_bias: FloatTensor<Self>,
        options: AttentionOptions,
    ) -> FloatTensor<Self> {
        let tracked = (q.is_tracked(), k.is_tracked(), v.is_tracked());
        let nodes = [q.node.clone(), k.node.clone(), v.node.clone()];
        let (qp, kp, vp) = (q.primitive, k.primitive, v.primitive);
        let prepared =
            <AttentionBackward as Backward<B, 3>>::prepare::<C>(AttentionBackward, nodes)
                .compute_bound()
                .stateful();
        let AttentionForward { p, keep, out } = attention::forward::<B>(
            qp.clone(),
            kp.clone(),
            vp.clone(),
            mask_bias.primitive,
            options.scale,
            options.dropout,
        );
        match prepared {
            OpsKind::Tracked(prep) => {
                let operands = [tensor(qp), tensor(kp), tensor(vp)];
                let state = AttentionState::new(operands, (p, keep), tracked, &options);
                prep.finish(state, prim(out))
            }
            OpsKind::UnTracked(prep) => prep.finish(prim(out)),
        }
    }

    fn slim_gelu(x: FloatTensor<Self>, save: Compression) -> FloatTensor<Self> {
        match <GeluBackward as Backward<B, 1>>::prepare::<C>(GeluBackward, [x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = GeluState::<B> {
                    saved: SavedGelu::new(as_rows::<B>(x.primitive.clone()), save),
                    shape: x.primitive.shape(),
                };
                prep.finish(state, gelu::forward::<B>(x.primitive))
            }
            OpsKind::UnTracked(prep) => prep.finish(gelu::forward::<B>(x.primitive)),
        }
    }

    fn slim_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        frozen_save: Compression,
        keep: f32,
    ) -> FloatTensor<Self> {
        let (x_tracked, gamma_tracked) = (x.is_tracked(), gamma.is_tracked());
        let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
        let shape = x.primitive.shape();
        let gamma_inner = gamma.primitive.clone();
        let (out, x_hat, inv_std) =
            layer_norm::forward::<B>(x.primitive, gamma.primitive, beta.primitive, epsilon);
        match <LayerNormBackward as Backward<B, 3>>::prepare::<C>(LayerNormBackward, nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let needs_x_hat = x_tracked || gamma_tracked;
                let state = LayerNormState::<B> {
                    normalised: needs_x_hat
                        .then(|| SavedNormalised::new(x_hat, gamma_tracked, frozen_save, keep)),
                    inv_std: x_tracked.then_some(inv_std),
                    gamma: x_tracked.then(|| tensor(gamma_inner)),
                    shape,
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn slim_dropout(x: FloatTensor<Self>, prob: f64, mask: Compression) -> FloatTensor<Self> {
        let shape = x.primitive.shape();
        let (y, mask) = dropout::forward(as_rows::<B>(x.primitive), prob, mask);
        let out = to_shape(y, &shape);
        match <DropoutBackward as Backward<B, 1>>::prepare::<C>(DropoutBackward, [x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(DropoutState { mask, prob, shape }, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}
