#!/usr/bin/env python3
"""Produce the BERT parity fixture with PyTorch + transformers (the independent reference).

For each input, the *pure-Python* WordPiece tokenizer of transformers (BertTokenizerLegacy,
not the Rust `tokenizers` library our crate uses) gives the ids, and transformers' BertModel
gives the last hidden state and pooler output. Each input is run alone (no padding), so the
Rust side, which batches with padding, also tests its attention mask.

Usage:
    python tools/reference/make_fixtures.py --model DIR \
        --out crates/slimfit-trainer/tests/fixtures/minilm_parity.json
"""

import argparse
import hashlib
import json
from pathlib import Path

import torch
import transformers
from transformers import BertModel
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

LONG = (
    "The quick brown fox jumps over the lazy dog while the committee, meeting for the "
    "seventeenth time since 1998, debated whether the municipal budget of $4.2 million "
    "should fund libraries, parks, or the long-delayed renovation of the central station; "
    "after hours of argument, amendments, counter-amendments and procedural objections, "
    "nobody could remember what the original motion had proposed, so the chair adjourned "
    "the session and promised, once again, that next month would surely bring a decision "
    "everyone could accept without further delay or complaint from the neighbourhood."
) * 2  # about 220 WordPiece tokens: truncated at 128

CASES = [
    {"text": "Hello world"},
    {"text": "A man is playing a guitar.", "text_pair": "Someone plays an instrument."},
    {"text": "Café crème brûlée à la Zoë — naïve façade."},
    {"text": 'Wait... what?! (Really) -- yes; "quoted" [brackets] & more #tags @you'},
    {"text": "In 2024, 3.14159 × 10^6 items cost $1,234.56 (about 42%)."},
    {"text": LONG},
    {"text": LONG, "text_pair": "Was a decision made at the meeting about the budget?"},
    {"text": "Transformers"},
    {"text": "東京 is big 🙂 and Ünïcödé"},
    {"text": "THE QUICK BROWN FOX", "text_pair": "the quick brown fox"},
    {"text": "Short.", "text_pair": LONG},
]


def rounded(values) -> list:
    """float32 values with 8 significant digits: exact enough, half the bytes."""
    return [float(f"{v:.8g}") for v in values.tolist()]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="HF checkpoint directory")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-len", type=int, default=128)
    args = parser.parse_args()

    torch.manual_seed(0)
    tokenizer = BertTokenizerLegacy(str(args.model / "vocab.txt"), do_lower_case=True)
    model = BertModel.from_pretrained(str(args.model)).eval()

    cases = []
    for case in CASES:
        enc = tokenizer(
            case["text"],
            case.get("text_pair"),
            truncation="longest_first",
            max_length=args.max_len,
            return_token_type_ids=True,
            return_tensors="pt",
        )
        with torch.no_grad():
            out = model(**enc)
        hidden = out.last_hidden_state[0]
        cases.append(
            {
                "text": case["text"],
                "text_pair": case.get("text_pair"),
                "input_ids": enc["input_ids"][0].tolist(),
                "token_type_ids": enc["token_type_ids"][0].tolist(),
                "cls": rounded(hidden[0]),
                "mean": rounded(hidden.mean(dim=0)),
                "pooled": rounded(out.pooler_output[0]),
            }
        )

    fixture = {
        "generator": "tools/reference/make_fixtures.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "model_sha256": sha256(args.model / "model.safetensors"),
        "max_len": args.max_len,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
