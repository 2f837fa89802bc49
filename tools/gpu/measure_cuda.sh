#!/usr/bin/env bash
# Measure SlimFit's step memory on a CUDA machine with a binary built here:
#   CARGO_TARGET_DIR=target/cuda cargo build --release -p slimfit-trainer \
#       --no-default-features --features cuda
#   tools/gpu/measure_cuda.sh target/cuda/release/slimfit-trainer OUT_DIR
# Writes gpu.txt, bert_base_cuda.jsonl (one measure-step JSON per line) and log.txt.
set -uo pipefail
bin=${1:-target/cuda/release/slimfit-trainer}
out=${2:-.}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
# First use compiles the CubeCL kernels: warm up on a small shape.
timeout 300 "$bin" measure-step --model-config minilm-l6 --batch 8 --seq 64 --freeze-rate 0.9 \
    --compression scaled --json >> "$out/log.txt" 2>&1
for c in exact paper; do
  timeout 120 "$bin" measure-step --model-config minilm-l6 --batch 8 --seq 64 --freeze-rate 0.9 \
      --compression $c --json >> "$out/log.txt" 2>&1
done
for cfg in "exact 0" "exact 0.9" "paper 0.9" "scaled 0.9" "paper 0.95" "scaled 0.95"; do
  set -- $cfg
  timeout 150 "$bin" measure-step --model-config bert-base --batch 32 --seq 128 \
      --freeze-rate "$2" --compression "$1" --json >> "$out/bert_base_cuda.jsonl" 2>> "$out/log.txt"
  echo "bert-base $1 $2 rc=$?" >> "$out/log.txt"
done
