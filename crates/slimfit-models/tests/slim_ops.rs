//! Gradients of the SlimFit ops: exact mode against burn's own autodiff of the plain
//! composition and against finite differences; compressed modes against exact within bounds
//! derived from the quantization step.

use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, TensorData};
use slimfit_models::slim::{self, Compression, CompressionConfig};

type I = Flex;
type A = Autodiff<Flex>;

fn dev() -> burn::tensor::Device<I> {
    Default::default()
}

/// Standard-normal test data from a seed, without the backend's global RNG (tests run in
/// parallel threads and would race on it).
fn random<const D: usize>(shape: [usize; D], seed: u64) -> TensorData {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let values: Vec<f32> = (0..n)
        .map(|_| {
            let (u1, u2) = (uniform(), uniform());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect();
    TensorData::new(values, shape)
}

fn leaf<const D: usize>(data: &TensorData, grad: bool) -> Tensor<A, D> {
    let t = Tensor::<A, D>::from_data(data.clone(), &dev());
    if grad { t.require_grad() } else { t }
}

fn values(data: TensorData) -> Vec<f32> {
    data.convert::<f32>().into_vec().unwrap()
}

fn grad_of<const D: usize>(
    t: &Tensor<A, D>,
    grads: &<A as burn::tensor::backend::AutodiffBackend>::Gradients,
) -> Option<Vec<f32>> {
    t.grad(grads).map(|g| values(g.into_data()))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
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

// ----------------------------------------------------------------------------- linear

struct LinearGrads {
    dx: Option<Vec<f32>>,
    dw: Option<Vec<f32>>,
    db: Option<Vec<f32>>,
}

const X: [usize; 3] = [3, 7, 16];
const W: [usize; 2] = [5, 16];

fn linear_grads(mode: Option<Compression>, w_trains: bool) -> LinearGrads {
    let (x, w, b, r) = (
        leaf::<3>(&random(X, 1), true),
        leaf::<2>(&random(W, 2), w_trains),
        leaf::<1>(&random([5], 3), true),
        leaf::<3>(&random([3, 7, 5], 4), false),
    );
    let y = match mode {
        Some(m) => slim::linear(x.clone(), w.clone(), b.clone(), m),
        None => x.clone().matmul(w.clone().transpose().unsqueeze()) + b.clone().unsqueeze(),
    };
    let grads = (y * r).sum().backward();
    LinearGrads {
        dx: grad_of(&x, &grads),
        dw: grad_of(&w, &grads),
        db: grad_of(&b, &grads),
    }
}

#[test]
fn linear_exact_matches_burn_autodiff() {
    let ours = linear_grads(Some(Compression::Exact), true);
    let burn = linear_grads(None, true);
    for (a, b) in [(ours.dx, burn.dx), (ours.dw, burn.dw), (ours.db, burn.db)] {
        assert!(max_abs_diff(&a.unwrap(), &b.unwrap()) < 1e-5);
    }
}

#[test]
fn linear_exact_matches_finite_differences() {
    let ours = linear_grads(Some(Compression::Exact), true);
    let dw = ours.dw.unwrap();
    let (x, b, r) = (random(X, 1), random([5], 3), random([3, 7, 5], 4));
    let w = values(random(W, 2));
    let loss = |w: &[f32]| -> f64 {
        let w = Tensor::<I, 2>::from_data(TensorData::new(w.to_vec(), W), &dev());
        let x = Tensor::<I, 3>::from_data(x.clone(), &dev());
        let y = x.matmul(w.transpose().unsqueeze())
            + Tensor::<I, 1>::from_data(b.clone(), &dev()).unsqueeze();
        f64::from(
            (y * Tensor::<I, 3>::from_data(r.clone(), &dev()))
                .sum()
                .into_scalar(),
        )
    };
    let eps = 1e-2;
    for idx in [0, 17, 42, 79] {
        let (mut plus, mut minus) = (w.clone(), w.clone());
        plus[idx] += eps;
        minus[idx] -= eps;
        let fd = (loss(&plus) - loss(&minus)) / (2.0 * f64::from(eps));
        assert!(
            (fd - f64::from(dw[idx])).abs() < 1e-2 * (1.0 + fd.abs()),
            "w[{idx}]: fd {fd} vs {}",
            dw[idx]
        );
    }
}

#[test]
fn frozen_linear_weight_gets_no_gradient_but_input_does() {
    let ours = linear_grads(Some(Compression::Paper), false);
    let exact = linear_grads(None, false);
    assert!(ours.dw.is_none());
    assert!(max_abs_diff(&ours.dx.unwrap(), &exact.dx.unwrap()) < 1e-5);
    assert!(max_abs_diff(&ours.db.unwrap(), &exact.db.unwrap()) < 1e-5);
}

/// dW̃ − dW = gᵀ (x̃ − x) with |x̃ − x| ≤ Δ_row / 2, so |dW̃ − dW|_oi ≤ Σ_rows |g_ro| Δ_r / 2.
/// Here g = r (the loss is Σ y ⊙ r).
#[test]
fn compressed_linear_weight_gradient_within_quantization_bound() {
    let exact = linear_grads(None, true);
    let r = values(random([3, 7, 5], 4));
    let x = values(random(X, 1));
    let rows = 21;
    for mode in [Compression::Paper, Compression::Scaled] {
        let ours = linear_grads(Some(mode), true);
        // dx and db do not depend on the compressed input.
        assert!(max_abs_diff(ours.dx.as_ref().unwrap(), exact.dx.as_ref().unwrap()) < 1e-5);
        let step: Vec<f32> = (0..rows)
            .map(|row| match mode {
                Compression::Paper => 1.0 / 16.0,
                _ => {
                    x[row * 16..(row + 1) * 16]
                        .iter()
                        .fold(0f32, |m, v| m.max(v.abs()))
                        / 127.0
                }
            })
            .collect();
        let (dw, dw_exact) = (ours.dw.unwrap(), exact.dw.clone().unwrap());
        for o in 0..5 {
            let bound: f32 = (0..rows)
                .map(|row| r[row * 5 + o].abs() * step[row] / 2.0)
                .sum();
            for i in 0..16 {
                let err = (dw[o * 16 + i] - dw_exact[o * 16 + i]).abs();
                assert!(
                    err <= bound * 1.001 + 1e-6,
                    "{mode}: dW[{o},{i}] error {err} > bound {bound}"
                );
            }
        }
    }
}

// -------------------------------------------------------------------------- attention

const QKV: [usize; 4] = [2, 3, 9, 8];

struct AttnGrads {
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
}

fn attention_grads(mode: Option<Compression>) -> AttnGrads {
    let (q, k, v) = (
        leaf::<4>(&random(QKV, 11), true),
        leaf::<4>(&random(QKV, 12), true),
        leaf::<4>(&random(QKV, 13), true),
    );
    let r = leaf::<4>(&random(QKV, 14), false);
    // Mask the last two keys of the second sequence.
    let mut mask = vec![0f32; 2 * 3 * 9 * 9];
    for h in 0..3 {
        for t in 0..9 {
            for key in 7..9 {
                mask[((3 + h) * 9 + t) * 9 + key] = -1e9;
            }
        }
    }
    let mask = leaf::<4>(&TensorData::new(mask, [2, 3, 9, 9]), false);
    let scale = 1.0 / 8f64.sqrt();
    let o = match mode {
        Some(m) => slim::attention(
            q.clone(),
            k.clone(),
            v.clone(),
            mask,
            scale,
            0.0,
            &CompressionConfig::uniform(m),
        ),
        None => softmax(
            q.clone().matmul(k.clone().transpose()).mul_scalar(scale) + mask,
            3,
        )
        .matmul(v.clone()),
    };
    let grads = (o * r).sum().backward();
    AttnGrads {
        dq: grad_of(&q, &grads).unwrap(),
        dk: grad_of(&k, &grads).unwrap(),
        dv: grad_of(&v, &grads).unwrap(),
    }
}

#[test]
fn attention_exact_matches_burn_autodiff() {
    let (ours, burn) = (
        attention_grads(Some(Compression::Exact)),
        attention_grads(None),
    );
    let d = max_abs_diff(&ours.dq, &burn.dq);
    assert!(d < 1e-5, "dq diff {d} cos {}", cosine(&ours.dq, &burn.dq));
    assert!(max_abs_diff(&ours.dk, &burn.dk) < 1e-5);
    assert!(max_abs_diff(&ours.dv, &burn.dv) < 1e-5);
}

/// dṼ − dV = (P̃ − P)ᵀ g with |P̃ − P| ≤ 1/512 (Q0.8, paper) or max_row(P)/510 (scaled):
/// elementwise |dṼ − dV|_sj ≤ Σ_t |g_tj| · Δ/2 ≤ Σ_t |g_tj| / 510 in both modes.
/// dQ, dK combine the errors of Q, K (Δ = 1/16 or absmax/127), V and P through the softmax
/// Jacobian; we require them to keep their direction (cosine > 0.99) and their error small.
#[test]
fn compressed_attention_gradients_close_to_exact() {
    let exact = attention_grads(None);
    let g = values(random(QKV, 14));
    for mode in [Compression::Paper, Compression::Scaled] {
        let ours = attention_grads(Some(mode));
        for bh in 0..6 {
            for j in 0..8 {
                let bound: f32 = (0..9).map(|t| g[(bh * 9 + t) * 8 + j].abs() / 510.0).sum();
                for s in 0..9 {
                    let i = (bh * 9 + s) * 8 + j;
                    let err = (ours.dv[i] - exact.dv[i]).abs();
                    assert!(err <= bound + 1e-6, "{mode}: dV error {err} > {bound}");
                }
            }
        }
        for (name, a, b) in [("dQ", &ours.dq, &exact.dq), ("dK", &ours.dk, &exact.dk)] {
            let c = cosine(a, b);
            assert!(c > 0.99, "{mode}: {name} cosine {c}");
        }
    }
}

/// Dropout on P inside the fused op (BERT's attention dropout). With V the identity, the
/// output *is* the dropped probabilities, so the mask the op drew can be read back and the
/// reference — burn's autodiff of `(softmax(s) ⊙ mask / (1 − p))·V` — built with it. Exact
/// operands: the same gradients whether the mask is kept in bytes or bits; scaled operands:
/// the same directions.
#[test]
fn attention_dropout_on_p_matches_burn_autodiff_with_the_same_mask() {
    const PROB: f64 = 0.3;
    let (q, k) = (random(QKV, 31), random(QKV, 32));
    let identity: Vec<f32> = (0..6 * 81)
        .map(|i| ((i % 81) / 9 == i % 9) as u8 as f32)
        .collect();
    let v = TensorData::new(identity, [2, 3, 9, 9]);
    let r = random([2, 3, 9, 9], 33);
    let scale = 1.0 / 8f64.sqrt();
    let grads_of = |o: Tensor<A, 4>, (q, k, v): (&Tensor<A, 4>, &Tensor<A, 4>, &Tensor<A, 4>)| {
        let grads = (o * Tensor::from_data(r.clone(), &dev())).sum().backward();
        [
            grad_of(q, &grads).unwrap(),
            grad_of(k, &grads).unwrap(),
            grad_of(v, &grads).unwrap(),
        ]
    };
    let zero_mask = || {
        leaf::<4>(
            &Tensor::<I, 4>::zeros([2, 3, 9, 9], &dev()).into_data(),
            false,
        )
    };
    for (operands, mask) in [
        (Compression::Exact, Compression::Exact),
        (Compression::Exact, Compression::Scaled),
        (Compression::Scaled, Compression::Scaled),
    ] {
        let config = CompressionConfig {
            dropout_mask: mask,
            ..CompressionConfig::uniform(operands)
        };
        let (ql, kl, vl) = (
            leaf::<4>(&q, true),
            leaf::<4>(&k, true),
            leaf::<4>(&v, true),
        );
        let o = slim::attention(
            ql.clone(),
            kl.clone(),
            vl.clone(),
            zero_mask(),
            scale,
            PROB,
            &config,
        );
        let dropped = o.clone().into_data();
        let ours = grads_of(o, (&ql, &kl, &vl));

        let keep: Vec<f32> = values(dropped.clone())
            .iter()
            .map(|x| (*x != 0.0) as u8 as f32)
            .collect();
        let kept = keep.iter().sum::<f32>() / keep.len() as f32;
        assert!((kept - 0.7).abs() < 0.1, "kept fraction {kept}");
        let keep = Tensor::<A, 4>::from_data(TensorData::new(keep, [2, 3, 9, 9]), &dev());
        let (qr, kr, vr) = (
            leaf::<4>(&q, true),
            leaf::<4>(&k, true),
            leaf::<4>(&v, true),
        );
        let p = softmax(
            qr.clone().matmul(kr.clone().transpose()).mul_scalar(scale),
            3,
        );
        let o_ref = (p * keep).div_scalar(1.0 - PROB).matmul(vr.clone());
        let forward = max_abs_diff(&values(dropped), &values(o_ref.clone().into_data()));
        assert!(forward < 1e-6, "forward differs by {forward}");
        let reference = grads_of(o_ref, (&qr, &kr, &vr));
        for (name, a, b) in ["dQ", "dK", "dV"]
            .iter()
            .zip(&ours)
            .zip(&reference)
            .map(|((n, a), b)| (n, a, b))
        {
            if operands == Compression::Exact {
                let d = max_abs_diff(a, b);
                assert!(d < 1e-5, "{mask} mask: {name} differs by {d}");
            } else {
                let c = cosine(a, b);
                assert!(c > 0.99, "scaled: {name} cosine {c}");
            }
        }
    }
}

// ------------------------------------------------------------------------------- gelu

fn gelu_input() -> TensorData {
    // Inside Q2.1's range so that the bound below is about rounding, not clipping.
    let x = Tensor::<I, 2>::from_data(random([6, 40], 21), &dev()).clamp(-3.5, 3.5);
    x.into_data()
}

fn gelu_grad(mode: Compression) -> Vec<f32> {
    let x = leaf::<2>(&gelu_input(), true);
    let r = leaf::<2>(&random([6, 40], 22), false);
    let grads = (slim::gelu(x.clone(), mode) * r).sum().backward();
    grad_of(&x, &grads).unwrap()
}

#[test]
fn gelu_exact_matches_finite_differences_and_erf_forward() {
    let dx = gelu_grad(Compression::Exact);
    let x = values(gelu_input());
    let r = values(random([6, 40], 22));
    let gelu = |v: f64| 0.5 * v * (1.0 + libm_erf(v / std::f64::consts::SQRT_2));
    for i in (0..240).step_by(7) {
        let h = 1e-3;
        let fd =
            (gelu(f64::from(x[i]) + h) - gelu(f64::from(x[i]) - h)) / (2.0 * h) * f64::from(r[i]);
        assert!(
            (fd - f64::from(dx[i])).abs() < 1e-4,
            "x={}: fd {fd} vs {}",
            x[i],
            dx[i]
        );
    }
    let y = values(
        slim::gelu(
            Tensor::<I, 2>::from_data(gelu_input(), &dev()),
            Compression::Exact,
        )
        .into_data(),
    );
    for i in 0..240 {
        assert!((f64::from(y[i]) - gelu(f64::from(x[i]))).abs() < 1e-5);
    }
}

/// Paper keeps x in Q2.1: |GELU″| ≤ 2φ(0) ≈ 0.798, so |dx̃ − dx| ≤ |g| · 0.798 · 0.25.
/// Scaled keeps GELU′ itself in 8 bits over its range [−0.1290, 1.1290]: |dx̃ − dx| ≤
/// |g| · (1.2578 / 255) / 2.
#[test]
fn compressed_gelu_gradient_within_quantization_bound() {
    let exact = gelu_grad(Compression::Exact);
    let (x, g) = (values(gelu_input()), values(random([6, 40], 22)));
    for mode in [Compression::Paper, Compression::Scaled] {
        let ours = gelu_grad(mode);
        let per_g = match mode {
            Compression::Paper => 0.7979 * 0.5 / 2.0,
            _ => 1.2578 / 255.0 / 2.0,
        };
        for i in 0..240 {
            let bound = g[i].abs() * per_g;
            let err = (ours[i] - exact[i]).abs();
            assert!(
                err <= bound * 1.001 + 1e-6,
                "{mode}: x={} error {err} > {bound}",
                x[i]
            );
        }
    }
}

/// erf by its Taylor/continued-fraction-free series (enough for |x| ≤ 4 in f64).
fn libm_erf(x: f64) -> f64 {
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    while term.abs() > 1e-17 * sum.abs().max(1e-300) {
        n += 1.0;
        term *= -x * x / n;
        sum += term / (2.0 * n + 1.0);
        if n > 200.0 {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

// -------------------------------------------------------------------------- layernorm

struct LnGrads {
    dx: Vec<f32>,
    dgamma: Option<Vec<f32>>,
    dbeta: Vec<f32>,
}

fn layer_norm_grads(mode: Option<Compression>, gamma_trains: bool, keep: f32) -> LnGrads {
    let x = leaf::<2>(&random([10, 32], 31), true);
    let gamma_data = Tensor::<I, 1>::from_data(random([32], 32), &dev())
        .add_scalar(1.0)
        .into_data();
    let gamma = leaf::<1>(&gamma_data, gamma_trains);
    let beta = leaf::<1>(&random([32], 33), true);
    let r = leaf::<2>(&random([10, 32], 34), false);
    let y = match mode {
        Some(m) => {
            let mut config = CompressionConfig::uniform(m);
            config.layer_norm_keep = keep;
            slim::layer_norm(x.clone(), gamma.clone(), beta.clone(), 1e-12, &config)
        }
        None => {
            let (var, mean) = x.clone().var_mean_bias(1);
            (x.clone() - mean) / var.add_scalar(1e-12).sqrt() * gamma.clone().unsqueeze()
                + beta.clone().unsqueeze()
        }
    };
    let grads = (y * r).sum().backward();
    LnGrads {
        dx: grad_of(&x, &grads).unwrap(),
        dgamma: grad_of(&gamma, &grads),
        dbeta: grad_of(&beta, &grads).unwrap(),
    }
}

#[test]
fn layer_norm_exact_matches_burn_autodiff() {
    for gamma_trains in [true, false] {
        let (ours, burn) = (
            layer_norm_grads(Some(Compression::Exact), gamma_trains, 0.1),
            layer_norm_grads(None, gamma_trains, 0.1),
        );
        assert!(max_abs_diff(&ours.dx, &burn.dx) < 1e-4);
        assert!(max_abs_diff(&ours.dbeta, &burn.dbeta) < 1e-5);
        assert_eq!(ours.dgamma.is_some(), gamma_trains);
        if gamma_trains {
            assert!(max_abs_diff(&ours.dgamma.unwrap(), &burn.dgamma.unwrap()) < 1e-4);
        }
    }
}

/// A trainable γ keeps the full normalised input, so compression changes nothing; a frozen
/// γ keeps its top 10 %: dx is then approximate, β's gradient stays exact.
#[test]
fn frozen_layer_norm_keeps_top_k_and_stays_close() {
    let exact = layer_norm_grads(None, false, 0.1);
    let trainable = layer_norm_grads(Some(Compression::Paper), true, 0.1);
    assert!(max_abs_diff(&trainable.dx, &layer_norm_grads(None, true, 0.1).dx) < 1e-4);
    let full = layer_norm_grads(Some(Compression::Paper), false, 1.0);
    assert!(max_abs_diff(&full.dx, &exact.dx) < 1e-4);
    let sparse = layer_norm_grads(Some(Compression::Paper), false, 0.1);
    assert!(max_abs_diff(&sparse.dbeta, &exact.dbeta) < 1e-5);
    let c = cosine(&sparse.dx, &exact.dx);
    assert!(c > 0.9, "top-10% LayerNorm dx cosine {c}");
    assert!(
        max_abs_diff(&sparse.dx, &exact.dx) > 1e-4,
        "top-k must be an approximation here"
    );
}

// ---------------------------------------------------------------------------- dropout

#[test]
fn dropout_gradient_uses_the_forward_mask() {
    let x = leaf::<2>(&Tensor::<I, 2>::ones([64, 64], &dev()).into_data(), true);
    let y = slim::dropout(x.clone(), 0.25, Compression::Scaled);
    let y_values = values(y.clone().into_data());
    let grads = y.sum().backward();
    let dx = grad_of(&x, &grads).unwrap();
    let kept = y_values.iter().filter(|v| **v != 0.0).count() as f64 / 4096.0;
    assert!((kept - 0.75).abs() < 0.05, "kept fraction {kept}");
    for (y, d) in y_values.iter().zip(&dx) {
        // x = 1, so y and dx are both mask / (1 − p).
        assert!((y - d).abs() < 1e-6);
        assert!(*y == 0.0 || (y - 1.0 / 0.75).abs() < 1e-6);
    }
}

#[test]
fn quantizers_round_half_to_even_and_clip() {
    use slim::quant::FixedPoint;
    let x = Tensor::<I, 1>::from_floats([0.03125, 0.09375, -8.5, 8.5, 1.0 / 3.0], &dev());
    let y = values(FixedPoint::Q3_4.round_trip(x).into_data());
    // 0.5 and 1.5 steps round to even codes 0 and 2; ±8.5 clip to the code range.
    assert_eq!(y, vec![0.0, 0.125, -8.0, 7.9375, 0.3125]);
}

/// Values on the formats' grids come back exactly: 4-bit Q2.1 codes packed two per byte
/// (odd row length: one padding code), and a 0/1 mask packed eight per byte (row length not
/// a multiple of 8). Each of the 16 codes and both bit values appear in every position.
#[test]
fn packed_formats_round_trip_exactly() {
    use slim::quant::{BitMask, Quant4};
    let (rows, n) = (4usize, 37usize);
    let codes: Vec<f32> = (0..rows * n)
        .map(|i| ((i * 5 + i / n) % 16) as f32 * 0.5 - 4.0)
        .collect();
    let x = Tensor::<I, 2>::from_data(TensorData::new(codes.clone(), [rows, n]), &dev());
    let q = Quant4::signed(x, Compression::Paper);
    assert_eq!(q.bytes(), rows * n.div_ceil(2));
    assert_eq!(values(q.dequantize::<2>().into_data()), codes);

    let bits: Vec<f32> = (0..rows * n)
        .map(|i| ((i * 7 + i / 3) % 3 == 0) as u8 as f32)
        .collect();
    let keep = Tensor::<I, 2>::from_data(TensorData::new(bits.clone(), [rows, n]), &dev());
    let mask = BitMask::pack(keep);
    assert_eq!(mask.bytes(), rows * n.div_ceil(8));
    assert_eq!(values(mask.unpack().into_data()), bits);
}
