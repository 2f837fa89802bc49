#!/usr/bin/env python3
"""Sanity anchor: full fine-tuning of the same BERT checkpoint with PyTorch + transformers.

It mirrors `slimfit-trainer train --policy full` (crates/slimfit-trainer/src/train.rs,
task.rs, slimfit-data's glue.rs / tokenizer.rs / batching.rs) as closely as a second
framework allows, so that the Rust numbers can be checked against an independent
implementation on the same data, checkpoint, batches and hyper-parameters:

- data: the GLUE TSV files read like glue.rs (UTF-8, BOM stripped, split on LF and TAB only,
  no quote handling, empty lines skipped, columns found by header name; CoLA has no header);
  `--max-train-examples` / `--max-dev-examples` keep the first N rows, as in Rust;
- tokens: the checkpoint's tokenizer.json (the same `tokenizers` library as the Rust crate),
  longest-first truncation to `--max-len` (128), right side, no padding; batches are padded
  to their longest row with [PAD] and token type 0;
- batches: a bit-exact port of `length_bucketed_batches` (xorshift64 seeded with
  seed + epoch, shuffle, stable sort by length in windows of 50 batches, shuffle batches),
  so both implementations see the same batches in the same order;
- model: `BertForSequenceClassification` from the checkpoint (its pooler included), a new
  classifier N(0, initializer_range) / zero bias, dropout 0.1 on hidden states, attention
  probabilities and the pooled output (the exact path of Rust's full policy: no activation
  compression, attention dropout on P);
- loss: mean cross-entropy; no gradient clipping; no gradient accumulation;
- optimizer: AdamW, betas (0.9, 0.999), eps 1e-6, decoupled weight decay 0.01,
  `W <- W * (1 - lr * wd)` before the Adam update, on every weight but LayerNorm weights;
  biases and LayerNorm weights/biases never decay (train.rs `decays`);
- schedule: per optimizer step s (0-based) of T = ceil(n / batch) * epochs, with
  W = round(warmup * T): lr = peak * (s + 1) / W for s < W, else peak * (T - s) / (T - W)
  (train.rs `learning_rate`: the first step after warm-up runs at the peak, the last at
  peak / (T - W); this differs from transformers' scheduler, which starts warm-up at 0);
- defaults: Task::defaults (MRPC lr 1.25e-4 batch 32, RTE lr 1.2e-4 batch 16, ...),
  3 epochs, warm-up 0, max_len 128, seed 42;
- evaluation after every epoch in eval mode, dev rows in file order, batches of 64,
  argmax; accuracy, F1 of class 1 (MRPC, QQP) or MCC (CoLA), all x100.

What cannot be mirrored: random streams (classifier initialisation and dropout masks come
from torch's generator seeded with --seed, not from burn's), kernel-level float summation
order, and the attention-mask fill value (transformers uses the dtype's minimum, Rust a
large negative constant; both give zero probability to padding).

Prints one JSON line (the report) on stdout; progress goes to stderr.

Usage:
  python tools/reference/anchor_full_ft.py --task mrpc --seed 43 \
      [--data-dir $SLIMFIT_GLUE_DIR] [--model ~/.cache/slimfit/models/all-MiniLM-L6-v2] \
      [--threads 1] [--report out.json]

Requirements: tools/reference/requirements.txt (torch, transformers; `tokenizers` comes
with transformers), e.g. the venv ~/.cache/slimfit/torch-venv.
"""

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from tokenizers import Tokenizer
from transformers import BertForSequenceClassification

# name: (directory, first column, second column or None, label column, label names or None
#        for "0"/"1", metrics (main first), (freezing rate, lr, batch) of Task::defaults).
# CoLA has no header: its columns are indices (sentence 3, label 1).
TASKS = {
    "cola": ("CoLA", 3, None, 1, None, ["mcc"], (0.90, 8e-5, 32)),
    "sst2": ("SST-2", "sentence", None, "label", None, ["accuracy"], (0.95, 8e-5, 32)),
    "mrpc": (
        "MRPC",
        "#1 String",
        "#2 String",
        "Quality",
        None,
        ["f1", "accuracy"],
        (0.90, 1.25e-4, 32),
    ),
    "qnli": (
        "QNLI",
        "question",
        "sentence",
        "label",
        ["entailment", "not_entailment"],
        ["accuracy"],
        (0.95, 5e-5, 32),
    ),
    "rte": (
        "RTE",
        "sentence1",
        "sentence2",
        "label",
        ["entailment", "not_entailment"],
        ["accuracy"],
        (0.90, 1.2e-4, 16),
    ),
    "wnli": ("WNLI", "sentence1", "sentence2", "label", None, ["accuracy"], (0.90, 1e-4, 32)),
}

EVAL_BATCH = 64
BETAS = (0.9, 0.999)
EPS = 1e-6
MASK64 = (1 << 64) - 1


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- data


def load_glue(task: str, data_dir: Path, split: str):
    """Rows `(text, text_pair or None, label index)` of `split` ("train" / "dev"), as glue.rs."""
    dirname, first, second, label_col, names, _, _ = TASKS[task]
    path = data_dir / dirname / f"{split}.tsv"
    text = path.read_bytes().decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = [(i, line) for i, line in enumerate(text.split("\n")) if line]
    if isinstance(first, str):
        _, header = lines.pop(0)
        cols = header.split("\t")

        def find(name):
            if name not in cols:
                raise SystemExit(f"{path}: header has no column {name!r}")
            return cols.index(name)

        first, label_col = find(first), find(label_col)
        second = find(second) if second is not None else None
    needed = max(first, second or 0, label_col) + 1
    rows = []
    for i, line in lines:
        fields = line.split("\t")
        if len(fields) < needed:
            raise SystemExit(
                f"{path}:{i + 1}: expected at least {needed} fields, found {len(fields)}"
            )
        raw = fields[label_col].strip()
        if names is None:
            label = int(raw)
            if label not in (0, 1):
                raise SystemExit(f"{path}:{i + 1}: label {raw!r} is not 0 or 1")
        else:
            if raw not in names:
                raise SystemExit(f"{path}:{i + 1}: label {raw!r} is not one of {names}")
            label = names.index(raw)
        rows.append((fields[first], fields[second] if second is not None else None, label))
    return rows


def make_tokenizer(model_dir: Path, max_len: int) -> Tokenizer:
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_len, stride=0, strategy="longest_first", direction="right")
    tok.no_padding()
    return tok


def encode(tok: Tokenizer, rows):
    encs = []
    for a, b, _ in rows:
        e = tok.encode(a, b, add_special_tokens=True) if b is not None else tok.encode(a)
        encs.append((e.ids, e.type_ids))
    return encs


def pad_batch(encs, indices, pad_id: int):
    width = max(len(encs[i][0]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(indices), width), dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for r, i in enumerate(indices):
        t_ids, t_types = encs[i]
        n = len(t_ids)
        ids[r, :n] = torch.tensor(t_ids)
        types[r, :n] = torch.tensor(t_types)
        mask[r, :n] = 1
    return ids, types, mask


# ------------------------------------------------------------ batching (batching.rs)


class XorShift:
    def __init__(self, seed: int):
        self.state = ((seed * 0x9E3779B97F4A7C15) & MASK64) | 1

    def next(self) -> int:
        s = self.state
        s ^= (s << 13) & MASK64
        s ^= s >> 7
        s ^= (s << 17) & MASK64
        self.state = s
        return s

    def shuffle(self, items: list) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self.next() % (i + 1)
            items[i], items[j] = items[j], items[i]


def length_bucketed_batches(lengths, batch_size: int, seed: int):
    rng = XorShift(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])  # stable
        batches.extend(chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def learning_rate(step: int, total: int, peak: float, warmup: float) -> float:
    warm = math.floor(warmup * total + 0.5)  # Rust's f64::round (half away from zero)
    if step < warm:
        return peak * (step + 1) / warm
    return peak * max(total - step, 0) / max(total - warm, 1)


# ------------------------------------------------------------------------- metrics


def confusion(pred, gold):
    tp = sum(1 for p, g in zip(pred, gold) if p == 1 and g == 1)
    tn = sum(1 for p, g in zip(pred, gold) if p == 0 and g == 0)
    fp = sum(1 for p, g in zip(pred, gold) if p == 1 and g == 0)
    fn = sum(1 for p, g in zip(pred, gold) if p == 0 and g == 1)
    return tp, tn, fp, fn


def metric(name: str, pred, gold) -> float:
    if name == "accuracy":
        return 100.0 * sum(p == g for p, g in zip(pred, gold)) / len(gold)
    tp, tn, fp, fn = confusion(pred, gold)
    if name == "f1":
        d = 2 * tp + fp + fn
        return 100.0 * (2 * tp / d if d else 0.0)
    if name == "mcc":
        d = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return 100.0 * ((tp * tn - fp * fn) / d if d else 0.0)
    raise ValueError(name)


@torch.no_grad()
def evaluate(model, encs, labels, pad_id: int, metrics):
    model.eval()
    pred = []
    for start in range(0, len(encs), EVAL_BATCH):
        idx = list(range(start, min(start + EVAL_BATCH, len(encs))))
        ids, types, mask = pad_batch(encs, idx, pad_id)
        logits = model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
        pred.extend(logits.argmax(dim=-1).tolist())
    model.train()
    out = {m: metric(m, pred, labels) for m in metrics}
    out.setdefault("accuracy", metric("accuracy", pred, labels))
    return out


# ---------------------------------------------------------------------------- main


def default_model_dir() -> Path:
    home = os.environ.get("SLIMFIT_HOME")
    root = Path(home) if home else Path.home() / ".cache" / "slimfit"
    return root / "models" / "all-MiniLM-L6-v2"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ["SLIMFIT_GLUE_DIR"]) if os.environ.get("SLIMFIT_GLUE_DIR") else None,
        required=not os.environ.get("SLIMFIT_GLUE_DIR"),
        help="GLUE root holding <TASK>/train.tsv and dev.tsv (default: $SLIMFIT_GLUE_DIR)",
    )
    p.add_argument("--model", type=Path, default=default_model_dir())
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, help="default: the task's (Task::defaults)")
    p.add_argument("--lr", type=float, help="peak learning rate; default: the task's")
    p.add_argument("--warmup", type=float, default=0.0, help="fraction of steps warming up")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-train-examples", type=int)
    p.add_argument("--max-dev-examples", type=int)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument(
        "--attn-implementation",
        default="eager",
        choices=["eager", "sdpa"],
        help="transformers attention kernel (eager: softmax, dropout on P, as Rust's exact path)",
    )
    p.add_argument("--report", type=Path, help="also write the JSON report here")
    p.add_argument("--log-every", type=int, default=20, help="progress line every N steps")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    _, _, _, _, names, metrics, (_, default_lr, default_batch) = TASKS[args.task]
    lr = args.lr if args.lr is not None else default_lr
    batch = args.batch if args.batch is not None else default_batch
    if batch <= 0 or args.epochs <= 0:
        raise SystemExit("--batch and --epochs must be positive")

    train_rows = load_glue(args.task, args.data_dir, "train")
    dev_rows = load_glue(args.task, args.data_dir, "dev")
    if args.max_train_examples is not None:
        train_rows = train_rows[: args.max_train_examples]
    if args.max_dev_examples is not None:
        dev_rows = dev_rows[: args.max_dev_examples]
    tok = make_tokenizer(args.model, args.max_len)
    pad_id = tok.token_to_id("[PAD]")
    pad_id = 0 if pad_id is None else pad_id
    train_enc, dev_enc = encode(tok, train_rows), encode(tok, dev_rows)
    train_labels = [r[2] for r in train_rows]
    dev_labels = [r[2] for r in dev_rows]
    lengths = [len(e[0]) for e in train_enc]

    torch.manual_seed(args.seed)
    model = BertForSequenceClassification.from_pretrained(
        str(args.model), num_labels=2, attn_implementation=args.attn_implementation
    )
    cfg = model.config
    dropout = {
        "hidden": cfg.hidden_dropout_prob,
        "attention_probs": cfg.attention_probs_dropout_prob,
        "classifier": cfg.classifier_dropout
        if cfg.classifier_dropout is not None
        else cfg.hidden_dropout_prob,
    }
    model.train()

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if name.endswith(".bias") or "LayerNorm" in name:
            no_decay.append(name)
        else:
            decay.append(name)
    params = dict(model.named_parameters())
    optim = torch.optim.AdamW(
        [
            {"params": [params[n] for n in decay], "weight_decay": args.weight_decay},
            {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
        ],
        lr=lr,
        betas=BETAS,
        eps=EPS,
        foreach=False,
    )

    steps_per_epoch = math.ceil(len(train_enc) / batch)
    total = steps_per_epoch * args.epochs
    log(
        f"{args.task}: {len(train_enc)} train / {len(dev_enc)} dev, batch {batch}, lr {lr}, "
        f"{total} steps, {args.threads} thread(s)"
    )
    dev_metrics, loss_curve, epoch_seconds = [], [], []
    step = 0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        for indices in length_bucketed_batches(lengths, batch, args.seed + epoch):
            ids, types, mask = pad_batch(train_enc, indices, pad_id)
            labels = torch.tensor([train_labels[i] for i in indices], dtype=torch.long)
            logits = model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
            loss = F.cross_entropy(logits, labels)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            current = learning_rate(step, total, lr, args.warmup)
            for group in optim.param_groups:
                group["lr"] = current
            optim.step()
            loss_curve.append(loss.item())
            step += 1
            if step % args.log_every == 0 or step == total:
                recent = loss_curve[-args.log_every :]
                log(
                    f"step {step}/{total} loss {sum(recent) / len(recent):.4f} "
                    f"lr {current:.3e} {time.perf_counter() - start:.0f} s"
                )
        train_s = time.perf_counter() - t0
        m = evaluate(model, dev_enc, dev_labels, pad_id, metrics)
        epoch_seconds.append({"train": train_s, "total": time.perf_counter() - t0})
        dev_metrics.append({"epoch": epoch + 1, "metrics": m})
        log(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(m.items())))

    report = {
        "implementation": "pytorch+transformers",
        "config": {
            "task": args.task,
            "data_dir": str(args.data_dir),
            "model": str(args.model),
            "policy": "full",
            "epochs": args.epochs,
            "batch": batch,
            "lr": lr,
            "warmup": args.warmup,
            "warmup_steps": math.floor(args.warmup * total + 0.5),
            "schedule": "linear decay to 0 (slimfit learning_rate)",
            "max_len": args.max_len,
            "seed": args.seed,
            "max_train_examples": args.max_train_examples,
            "max_dev_examples": args.max_dev_examples,
            "optimizer": {
                "name": "AdamW",
                "betas": list(BETAS),
                "eps": EPS,
                "weight_decay": args.weight_decay,
                "decay_excludes": "biases, LayerNorm weights and biases",
                "decayed_tensors": len(decay),
                "undecayed_tensors": len(no_decay),
                "grad_clipping": None,
            },
            "dropout": dropout,
            "attn_implementation": args.attn_implementation,
            "labels": names or ["0", "1"],
            "batching": "length_bucketed_batches(seed + epoch)",
            "eval_batch": EVAL_BATCH,
            "threads": args.threads,
        },
        "dev_metrics": dev_metrics,
        "final": dev_metrics[-1]["metrics"],
        "loss_curve": loss_curve,
        "train_examples": len(train_enc),
        "dev_examples": len(dev_enc),
        "longest_train_sequence": max(lengths) if lengths else 0,
        "total_steps": total,
        "epoch_seconds": epoch_seconds,
        "wall_seconds": time.perf_counter() - start,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": __import__("tokenizers").__version__,
        },
    }
    line = json.dumps(report)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(line + "\n")
    print(line, flush=True)


if __name__ == "__main__":
    main()
