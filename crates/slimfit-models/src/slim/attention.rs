//! `O = dropout(softmax(Q·Kᵀ·s + mask))·V`, fused so that backward needs only compressed
//! Q, K, P, V and the dropout mask.

use burn::tensor::activation::softmax;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Distribution, Tensor, backend::Backend};

use super::dropout::SavedMask;
use super::quant::Quant8;
use super::{Compression, tensor};

/// How the fused attention op scales, drops and stores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionOptions {
    /// Multiplies `Q·Kᵀ` (`1/√head_dim`).
    pub scale: f64,
    /// How Q and K are kept (see [`CompressionConfig::attention_scores`](super::CompressionConfig)).
    pub scores: Compression,
    /// How P and V are kept.
    pub context: Compression,
    /// Dropout probability on P, as BERT applies attention dropout; 0 for none (and always
    /// 0 outside training).
    pub dropout: f64,
    /// How P's dropout mask is kept: a bit per value for `Scaled`, a byte otherwise.
    pub dropout_mask: Compression,
}

/// The forward pass: P (before dropout), P's keep mask when dropout applies, and O.
pub(super) struct AttentionForward<B: Backend> {
    pub p: Tensor<B, 4>,
    pub keep: Option<Tensor<B, 4>>,
    pub out: Tensor<B, 4>,
}

/// Gradients `(input(s)…)`, each present only when asked for.
pub(super) type AttentionGrads<B> = (
    Option<Tensor<B, 4>>,
    Option<Tensor<B, 4>>,
    Option<Tensor<B, 4>>,
);

/// Forward on any backend; `dropout` is P's dropout probability (0: none).
pub(super) fn forward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    mask_bias: FloatTensor<B>,
    scale: f64,
    dropout: f64,
) -> AttentionForward<B> {
    let (q, k, v): (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) = (tensor(q), tensor(k), tensor(v));
    let scores = q.matmul(k.transpose()).mul_scalar(scale) + tensor::<B, 4>(mask_bias);
    let p = softmax(scores, 3);
    if dropout == 0.0 {
        let out = p.clone().matmul(v);
        return AttentionForward { p, keep: None, out };
    }
    let keep = p.random_like(Distribution::Bernoulli(1.0 - dropout));
    let out = (p.clone() * keep.clone())
        .div_scalar(1.0 - dropout)
        .matmul(v);
    AttentionForward {
        p,
        keep: Some(keep),
        out,
    }
}

/// P's dropout as kept for backward.
#[derive(Debug, Clone)]
pub(super) struct SavedDropout<B: Backend> {
    mask: SavedMask<B>,
    prob: f64,
}

impl<B: Backend> SavedDropout<B> {
    /// `keep ⊙ 1/(1 − p)`, P's shape.
    fn restore(self, dims: [usize; 4]) -> Tensor<B, 4> {
        self.mask
            .restore()
            .reshape(dims)
            .div_scalar(1.0 - self.prob)
    }
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
    pub dropout: Option<SavedDropout<B>>,
    pub scale: f64,
}

impl<B: Backend> AttentionState<B> {
    /// Keeps exactly what the tracked parents' gradients need.
    pub(super) fn new(
        [q, k, v]: [Tensor<B, 4>; 3],
        (p, keep): (Tensor<B, 4>, Option<Tensor<B, 4>>),
        (q_tracked, k_tracked, v_tracked): (bool, bool, bool),
        options: &AttentionOptions,
    ) -> Self {
        let qk = q_tracked || k_tracked;
        let needs_p = qk || v_tracked;
        let dropout = keep.filter(|_| needs_p).map(|keep| {
            let [b, h, s, t] = keep.dims();
            SavedDropout {
                mask: SavedMask::new(keep.reshape([b * h * s, t]), options.dropout_mask),
                prob: options.dropout,
            }
        });
        Self {
            // dK = s·dSᵀ·Q, dQ = s·dS·K
            q: k_tracked.then(|| Saved4::signed(q, options.scores)),
            k: q_tracked.then(|| Saved4::signed(k, options.scores)),
            // dP = g·Vᵀ (⊙ the dropout mask) feeds dS
            v: qk.then(|| Saved4::signed(v, options.context)),
            // dV = dropout(P)ᵀ·g ; dS = P ⊙ (dP − Σ dP⊙P)
            p: needs_p.then(|| Saved4::probabilities(p, options.context)),
            dropout,
            scale: options.scale,
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
        // keep ⊙ 1/(1 − p), P's shape
        let keep = match (&p, self.dropout) {
            (Some(p), Some(saved)) => Some(saved.restore(p.dims())),
            _ => None,
        };
        let dv = if want_v {
            let p = p.clone().expect("P saved for dV");
            let dropped = match &keep {
                Some(keep) => p * keep.clone(),
                None => p,
            };
            Some(dropped.transpose().matmul(grad.clone()))
        } else {
            None
        };
        if !(want_q || want_k) {
            return (None, None, dv);
        }
        let p = p.expect("P saved for dS");
        let v = self.v.expect("V saved for dP").restore();
        let dp = grad.matmul(v.transpose());
        let dp = match keep {
            Some(keep) => dp * keep,
            None => dp,
        };
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
