#!/usr/bin/env python3
"""PyTorch CPU anchor for benches/benches/bert.rs: same checkpoint, same shapes.

Times (median of N runs, after one warm-up) on `--threads` CPU threads:
- MiniLM forward, batch 32 x 128 tokens, inference mode;
- BertForSequenceClassification forward + cross-entropy + backward + AdamW step.

Usage: python tools/reference/bench_torch.py --model DIR [--threads 2] [--runs 10]
"""

import argparse
import json
import statistics
import time

import torch
from transformers import BertForSequenceClassification, BertModel

BATCH, SEQ = 32, 128


def ids(vocab: int) -> torch.Tensor:
    # The same id pattern as the Rust benchmark.
    flat = [1000 + (i * 7919 + 13) % (vocab - 1000) for i in range(BATCH * SEQ)]
    return torch.tensor(flat, dtype=torch.long).reshape(BATCH, SEQ)


def median_seconds(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    encoder = BertModel.from_pretrained(args.model).eval()
    input_ids = ids(encoder.config.vocab_size)
    mask = torch.ones_like(input_ids)

    def forward():
        with torch.inference_mode():
            encoder(input_ids=input_ids, attention_mask=mask)

    classifier = BertForSequenceClassification.from_pretrained(args.model, num_labels=2).train()
    labels = torch.arange(BATCH) % 2
    optim = torch.optim.AdamW(classifier.parameters(), lr=1e-5, eps=1e-6, weight_decay=0.01)

    def train_step():
        optim.zero_grad(set_to_none=True)
        out = classifier(input_ids=input_ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        optim.step()

    result = {
        "torch": torch.__version__,
        "threads": args.threads,
        "runs": args.runs,
        "minilm_forward_32x128_s": median_seconds(forward, args.runs),
        "minilm_train_step_32x128_s": median_seconds(train_step, args.runs),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
