//! `O = softmax(Q·Kᵀ·s + mask)·V`, fused so that backward needs only compressed Q, K, P, V.

use burn::tensor::activation::softmax;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, backend::Backend};

use super::quant::Quant8;
use super::{Compression, tensor};

/// Gradients `(input(s)…)`, each present only when asked for.
pub(super) type AttentionGrads<B> = (
    Option<Tensor<B, 4>>,
    Option<Tensor<B, 4>>,
    Option<Tensor<B, 4>>,
);

/// Forward on any backend: `(P, O)`.
pub(super) fn forward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    mask_bias: FloatTensor<B>,
    scale: f64,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let (q, k, v): (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) = (tensor(q), tensor(k), tensor(v));
    let scores = q.matmul(k.transpose()).mul_scalar(scale) + tensor::<B, 4>(mask_bias);
    let p = softmax(scores, 3);
    let o = p.clone().matmul(v);
    (p, o)
}

/// An attention operand as kept for backward.
#[derive(Debug, Clone)]
pub(super) enum Saved4<B: Backend> {
    Full(Tensor<B, 4>),
    Quantized(Quant8<B>),
}

impl<B: Backend> Saved4<B> {
    /// Signed operand (Q, K, V): int8 Q3.4 (`Paper`) or per-row absmax (`Scaled`).
    pub(super) fn signed(x: Tensor<B, 4>, mode: Compression) -> Self {
        match mode {
            Compression::Exact => Self::Full(x),
            mode => Self::Quantized(Quant8::signed(x, mode)),
        }
    }

    /// Probabilities: uint8 Q0.8 (`Paper`) or per-row max scaling (`Scaled`).
    pub(super) fn probabilities(p: Tensor<B, 4>, mode: Compression) -> Self {
        match mode {
            Compression::Exact => Self::Full(p),
            mode => Self::Quantized(Quant8::unsigned(p, mode)),
        }
    }

    pub(super) fn restore(self) -> Tensor<B, 4> {
        match self {
            Self::Full(x) => x,
            Self::Quantized(q) => q.dequantize(),
        }
    }
}

/// What backward needs; each part only when some gradient depends on it.
#[derive(Debug, Clone)]
pub(super) struct AttentionState<B: Backend> {
    pub q: Option<Saved4<B>>,
    pub k: Option<Saved4<B>>,
    pub v: Option<Saved4<B>>,
    pub p: Option<Saved4<B>>,
    pub scale: f64,
}

impl<B: Backend> AttentionState<B> {
    /// Keeps exactly what the tracked parents' gradients need.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        (q, k, v, p): (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>),
        (q_tracked, k_tracked, v_tracked): (bool, bool, bool),
        scale: f64,
        scores: Compression,
        context: Compression,
    ) -> Self {
        let qk = q_tracked || k_tracked;
        Self {
            // dK = s·dSᵀ·Q, dQ = s·dS·K
            q: k_tracked.then(|| Saved4::signed(q, scores)),
            k: q_tracked.then(|| Saved4::signed(k, scores)),
            // dP = g·Vᵀ feeds dS
            v: qk.then(|| Saved4::signed(v, context)),
            // dV = Pᵀ·g ; dS = P ⊙ (dP − Σ dP⊙P)
            p: (qk || v_tracked).then(|| Saved4::probabilities(p, context)),
            scale,
        }
    }

    /// `(dQ, dK, dV)` from `g = dL/dO`, each `None` unless its operand was saved for it.
    pub(super) fn backward(
        self,
        grad: Tensor<B, 4>,
        want: (bool, bool, bool),
    ) -> AttentionGrads<B> {
        let (want_q, want_k, want_v) = want;
        let p = self.p.map(Saved4::restore);
        let dv = if want_v {
            let p = p.clone().expect("P saved for dV");
            Some(p.transpose().matmul(grad.clone()))
        } else {
            None
        };
        if !(want_q || want_k) {
            return (None, None, dv);
        }
        let p = p.expect("P saved for dS");
        let v = self.v.expect("V saved for dP").restore();
        let dp = grad.matmul(v.transpose());
        let row_dot = (dp.clone() * p.clone()).sum_dim(3);
        let ds = (p * (dp - row_dot)).mul_scalar(self.scale);
        let dq = want_q.then(|| ds.clone().matmul(self.k.expect("K saved for dQ").restore()));
        let dk = want_k.then(|| {
            ds.transpose()
                .matmul(self.q.expect("Q saved for dK").restore())
        });
        (dq, dk, dv)
    }
}
