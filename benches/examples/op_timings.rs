//! Times the individual tensor ops of a MiniLM layer at batch 32 × 128 on flex, to find
//! where the forward pass spends its time: `cargo run --release -p slimfit-benches --example op_timings`.

use std::time::Instant;

use burn::backend::Flex;
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Distribution, Tensor};

type B = Flex;

fn time<T>(name: &str, mut f: impl FnMut() -> T) {
    f();
    let runs = 5;
    let start = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(f());
    }
    println!(
        "{name:40} {:8.2} ms",
        start.elapsed().as_secs_f64() * 1e3 / runs as f64
    );
}

fn main() {
    let d = Default::default();
    let (b, t, h, nh, f) = (32, 128, 384, 12, 1536);
    let hd = h / nh;
    let x = Tensor::<B, 3>::random([b, t, h], Distribution::Normal(0.0, 1.0), &d);
    let w = Tensor::<B, 2>::random([h, h], Distribution::Normal(0.0, 0.02), &d);
    let w1 = Tensor::<B, 2>::random([f, h], Distribution::Normal(0.0, 0.02), &d);
    let bias = Tensor::<B, 1>::zeros([h], &d);
    let bias1 = Tensor::<B, 1>::zeros([f], &d);
    let x1 = Tensor::<B, 3>::random([b, t, f], Distribution::Normal(0.0, 1.0), &d);
    let q = x.clone().reshape([b, t, nh, hd]).swap_dims(1, 2);
    let qc = Tensor::<B, 4>::random([b, nh, t, hd], Distribution::Normal(0.0, 1.0), &d);
    let s = Tensor::<B, 4>::random([b, nh, t, t], Distribution::Normal(0.0, 1.0), &d);
    let mask = Tensor::<B, 4>::zeros([b, 1, 1, t], &d);

    time("linear H->H, W^T view", || {
        burn::tensor::module::linear(x.clone(), w.clone().transpose(), Some(bias.clone()))
    });
    time("linear H->F, W^T view", || {
        burn::tensor::module::linear(x.clone(), w1.clone().transpose(), Some(bias1.clone()))
    });
    let w1t = w1.clone().transpose().reshape([h, f]);
    time("linear H->F, W^T contiguous", || {
        burn::tensor::module::linear(x.clone(), w1t.clone(), Some(bias1.clone()))
    });
    time("matmul 2D x·W^T view", || {
        x.clone().reshape([b * t, h]).matmul(w1.clone().transpose())
    });
    time("matmul 2D x·W^T contiguous", || {
        x.clone().reshape([b * t, h]).matmul(w1t.clone())
    });
    time("split heads (reshape+swap)", || {
        x.clone().reshape([b, t, nh, hd]).swap_dims(1, 2)
    });
    time("merge heads (swap+reshape)", || {
        qc.clone().swap_dims(1, 2).reshape([b, t, h])
    });
    time("QK^T (strided q)", || {
        q.clone().matmul(q.clone().transpose())
    });
    time("QK^T (contiguous q)", || {
        qc.clone().matmul(qc.clone().transpose())
    });
    time("scores + mask (broadcast)", || s.clone() + mask.clone());
    time("scores * scalar", || s.clone().mul_scalar(0.1));
    time("softmax", || softmax(s.clone(), 3));
    time("P·V", || s.clone().matmul(qc.clone()));
    time("gelu [b,t,F]", || gelu(x1.clone()));
    time("erf [b,t,F]", || x1.clone().erf());
    time("var_mean_bias [b,t,H]", || x.clone().var_mean_bias(2));
    time("x - mean (broadcast)", || {
        let m = x.clone().mean_dim(2);
        x.clone() - m
    });
    time("x * gamma (broadcast)", || {
        x.clone() * bias.clone().unsqueeze::<3>()
    });
    time("x + y", || x.clone() + x.clone());
    let x2 = x.clone().reshape([b * t, h]);
    time("bias repeat to [rows,H]", || {
        bias.clone().unsqueeze::<2>().repeat_dim(0, b * t)
    });
    time("x2 + bias.repeat", || {
        x2.clone() + bias.clone().unsqueeze::<2>().repeat_dim(0, b * t)
    });
    time("x2 + bias broadcast", || {
        x2.clone() + bias.clone().unsqueeze::<2>()
    });
    let col = x2.clone().mean_dim(1);
    time("x2 - col broadcast", || x2.clone() - col.clone());
    time("x2 - col.repeat", || {
        x2.clone() - col.clone().repeat_dim(1, h)
    });
    time("mask expand+contiguous", || {
        mask.clone().expand([b, nh, t, t]) + Tensor::<B, 4>::zeros([b, nh, t, t], &d)
    });
    time("mask repeat", || {
        mask.clone().repeat_dim(1, nh).repeat_dim(2, t)
    });
    let mfull = mask.clone().repeat_dim(1, nh).repeat_dim(2, t);
    time("scores + full mask", || s.clone() + mfull.clone());
    let m3 = mask.clone().reshape([b, 1, t]);
    time("scores3 + mask3 broadcast", || {
        s.clone().reshape([b, nh * t, t]) + m3.clone()
    });
    let x3 = x.clone();
    time("x3 * gamma3 broadcast", || {
        x3.clone() * bias.clone().unsqueeze::<3>()
    });
    time("x2 * gamma2 broadcast", || {
        x2.clone() * bias.clone().unsqueeze::<2>()
    });
}
