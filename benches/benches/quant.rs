//! Throughput of SlimFit's activation-compression kernels (`slimfit_models::slim::quant`)
//! on the flex CPU backend — the inner backend on which the autodiff ops compress what they
//! save for backward — at realistic sizes:
//! - `act_32x128x384`: a MiniLM hidden activation (batch 32 × 128 tokens × 384, N(0, 1));
//! - `attn_32x12x128x128`: an attention-probability map (row-wise softmax of N(0, 2) logits).
//!
//! Kernels (each quantizer includes its rescaling, rounding, clamping, cast and — for 4 bits —
//! packing two codes per byte):
//! - `q8_signed/{paper,scaled}` + `dq8_signed/…`: int8, Q3.4 or per-row absmax (Q, K, V,
//!   FFN2 input, scaled LayerNorm state);
//! - `q8_unsigned/{paper,scaled}` + `dq8_unsigned/…`: uint8, Q0.8 or per-row max (softmax P);
//! - `q4_signed/{paper,scaled}` + `dq4_signed/…`: 4-bit Q2.1 or per-row absmax/7, packed
//!   (paper GELU input);
//! - `q8_affine` + `dq8_affine`: 256 fixed levels over GELU′'s range [−0.129, 1.129]
//!   (scaled GELU derivative): no per-row scale;
//! - `q4_affine` + `dq4_affine`: the same range in 16 levels, packed (the scaled GELU
//!   derivative before it moved to 8 bits): mostly packing / unpacking;
//! - `topk10` + `densify10`: the top 10 % of each row by magnitude (paper frozen LayerNorm);
//! - `bitmask_pack` + `bitmask_unpack`: a dropout keep mask (p = 0.1) at one bit per value
//!   (`scaled` attention and hidden dropout), against `bitmask_unpack_float`, the unpacking
//!   this replaced (the bits recovered with fp32 divide / floor arithmetic).
//!
//! Throughput is the fp32 size of the activation (input of a quantizer, output of a
//! dequantizer) per second, in decimal GB/s.
//!
//! Run: `nice -n 0 cargo bench -p slimfit-benches --bench quant` (about 2 minutes of
//! measurement; twice that on a loaded machine).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::Duration;

use burn::backend::Flex;
use burn::tensor::activation::softmax;
use burn::tensor::{Distribution, Tensor, backend::Backend};
use burn::tensor::{FloatDType, Int, TensorData};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use slimfit_models::Compression;
use slimfit_models::slim::quant::{BitMask, Quant4, Quant8, TopK};

type B = Flex;

fn group<'a>(c: &'a mut Criterion, name: &str, numel: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::BytesDecimal((numel * 4) as u64));
    group
}

fn sync() {
    B::sync(&Default::default()).unwrap();
}

fn activation(c: &mut Criterion) {
    let device = Default::default();
    let x = Tensor::<B, 3>::random([32, 128, 384], Distribution::Normal(0.0, 1.0), &device);
    let mut g = group(c, "quant/act_32x128x384", x.shape().num_elements());
    for mode in [Compression::Paper, Compression::Scaled] {
        g.bench_function(format!("q8_signed/{mode}"), |b| {
            b.iter(|| {
                let q = Quant8::signed(x.clone(), mode);
                sync();
                q
            })
        });
        let q = Quant8::signed(x.clone(), mode);
        g.bench_function(format!("dq8_signed/{mode}"), |b| {
            b.iter(|| {
                let y = q.dequantize::<3>();
                sync();
                y
            })
        });
        g.bench_function(format!("q4_signed/{mode}"), |b| {
            b.iter(|| {
                let q = Quant4::signed(x.clone(), mode);
                sync();
                q
            })
        });
        let q = Quant4::signed(x.clone(), mode);
        g.bench_function(format!("dq4_signed/{mode}"), |b| {
            b.iter(|| {
                let y = q.dequantize::<3>();
                sync();
                y
            })
        });
    }
    g.bench_function("q8_affine", |b| {
        b.iter(|| {
            let q = Quant8::affine(x.clone(), -0.129, 1.129);
            sync();
            q
        })
    });
    let q = Quant8::affine(x.clone(), -0.129, 1.129);
    g.bench_function("dq8_affine", |b| {
        b.iter(|| {
            let y = q.dequantize::<3>();
            sync();
            y
        })
    });
    g.bench_function("q4_affine", |b| {
        b.iter(|| {
            let q = Quant4::affine(x.clone(), -0.129, 1.129);
            sync();
            q
        })
    });
    let q = Quant4::affine(x.clone(), -0.129, 1.129);
    g.bench_function("dq4_affine", |b| {
        b.iter(|| {
            let y = q.dequantize::<3>();
            sync();
            y
        })
    });
    g.bench_function("topk10", |b| {
        b.iter(|| {
            let q = TopK::new(x.clone(), 0.1);
            sync();
            q
        })
    });
    let q = TopK::new(x.clone(), 0.1);
    g.bench_function("densify10", |b| {
        b.iter(|| {
            let y = q.densify::<3>();
            sync();
            y
        })
    });
    g.finish();
}

fn attention_map(c: &mut Criterion) {
    let device = Default::default();
    let logits =
        Tensor::<B, 4>::random([32, 12, 128, 128], Distribution::Normal(0.0, 2.0), &device);
    let p = softmax(logits, 3);
    let mut g = group(c, "quant/attn_32x12x128x128", p.shape().num_elements());
    for mode in [Compression::Paper, Compression::Scaled] {
        g.bench_function(format!("q8_unsigned/{mode}"), |b| {
            b.iter(|| {
                let q = Quant8::unsigned(p.clone(), mode);
                sync();
                q
            })
        });
        let q = Quant8::unsigned(p.clone(), mode);
        g.bench_function(format!("dq8_unsigned/{mode}"), |b| {
            b.iter(|| {
                let y = q.dequantize::<4>();
                sync();
                y
            })
        });
    }
    g.finish();
}

/// The unpacking `BitMask::unpack` replaced (kept here as the baseline it was measured
/// against): bit k = floor(byte / 2^(7−k)) mod 2, in fp32.
fn unpack_with_float_arithmetic(packed: Tensor<B, 2, Int>, rows: usize, n: usize) -> Tensor<B, 2> {
    let bytes: Tensor<B, 2> = packed.cast(FloatDType::F32);
    let weights = Tensor::<B, 2>::from_data(
        TensorData::new(vec![128.0f32, 64.0, 32.0, 16.0, 8.0, 4.0, 2.0, 1.0], [1, 8]),
        &bytes.device(),
    );
    let shifted = bytes.repeat_dim(1, 8).div(weights).floor();
    let bits = shifted.clone() - shifted.div_scalar(2.0).floor().mul_scalar(2.0);
    bits.reshape([rows, n])
}

fn dropout_mask(c: &mut Criterion) {
    let device = Default::default();
    let [rows, n] = [32 * 12 * 128, 128];
    let keep = Tensor::<B, 2>::random([rows, n], Distribution::Bernoulli(0.9), &device);
    let mut g = group(c, "quant/mask_32x12x128x128", rows * n);
    g.bench_function("bitmask_pack", |b| {
        b.iter(|| {
            let m = BitMask::pack(keep.clone());
            sync();
            m
        })
    });
    let mask = BitMask::pack(keep.clone());
    g.bench_function("bitmask_unpack", |b| {
        b.iter(|| {
            let y = mask.clone().unpack();
            sync();
            y
        })
    });
    // The same packed bytes, unpacked the old way (checked equal first).
    let packed = mask.packed().clone();
    let old = unpack_with_float_arithmetic(packed.clone(), rows, n);
    old.to_data()
        .assert_eq(&mask.clone().unpack().into_data(), true);
    g.bench_function("bitmask_unpack_float", |b| {
        b.iter(|| {
            let y = unpack_with_float_arithmetic(packed.clone(), rows, n);
            sync();
            y
        })
    });
    g.finish();
}

criterion_group!(benches, activation, attention_map, dropout_mask);
criterion_main!(benches);
