"""Sampling a trained generator: latents from a seed, labels, and PNG/NPZ outputs.

Latents come from NumPy's PCG64 generator seeded by ``--seed``, not from torch, so that every
backend (torch now, exported runtimes later) draws the very same vectors for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgegan.errors import EdgeganError

FORMATS = ("png", "npz")


def make_latents(num: int, latent_dim: int, seed: int) -> np.ndarray:
    """``(num, latent_dim)`` float32 standard-normal latents, identical on every backend."""
    return np.random.default_rng(seed).standard_normal((num, latent_dim), dtype=np.float32)


def make_labels(num: int, num_classes: int, labels: list[int] | None) -> np.ndarray | None:
    """Labels for a conditional generator: the given ones, else 0, 1, ..., K-1, 0, ...

    ``labels`` shorter than ``num`` are repeated; each must be in ``[0, num_classes)``.
    """
    if num_classes == 0:
        if labels:
            raise EdgeganError("--labels needs a class-conditional generator; this one is not")
        return None
    if not labels:
        return np.arange(num, dtype=np.int64) % num_classes
    bad = [v for v in labels if not 0 <= v < num_classes]
    if bad:
        raise EdgeganError(
            f"label {bad[0]} is out of range: the generator has {num_classes} classes"
        )
    return np.resize(np.asarray(labels, dtype=np.int64), num)


def parse_labels(text: str | None) -> list[int] | None:
    """``"3,3,7"`` -> [3, 3, 7]; a clear error for anything else."""
    if text is None or not text.strip():
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EdgeganError(f"--labels must be comma-separated integers, got '{text}'") from None


@dataclass
class RunGenerator:
    """A run's sampled network (EMA weights when trained with them), in eval mode."""

    module: Any
    spec: dict[str, Any]
    run_dir: Path
    step: int


def load_run_generator(run_dir: str | Path, device: str = "cpu", ema: bool = True) -> RunGenerator:
    """Rebuild the generator of a run directory from its config and last checkpoint."""
    import torch

    from edgegan.config import config_from_dict
    from edgegan.plugins.manager import get_manager
    from edgegan.train.checkpoint import load_checkpoint
    from edgegan.train.trainer import CHECKPOINT

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EdgeganError(f"run directory not found: {run_dir}")
    state = load_checkpoint(run_dir / CHECKPOINT, map_location="cpu")
    config = config_from_dict(state["config"])
    spec = dict(state["spec"])
    if spec.get("task") != "gan":
        raise EdgeganError(f"{run_dir} is a '{spec.get('task')}' run; this command samples GANs")
    c, h, _ = spec["image_shape"]
    context = {
        "channels": c,
        "image_size": h,
        "latent_dim": spec["latent_dim"],
        "num_classes": spec["num_classes"],
    }
    g = config.model.generator
    module = get_manager().registry("models").build(g.name, g.params, context, role="generator")
    weights = (
        state["ema"] if ema and state.get("ema") is not None else state["networks"]["generator"]
    )
    module.load_state_dict(weights)
    module.to(torch.device(device)).eval()
    return RunGenerator(module, spec, run_dir, int(state["step"]))


def generate(
    gen: RunGenerator,
    num: int,
    seed: int = 0,
    labels: list[int] | None = None,
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """Sample ``num`` images: ``images`` float32 (N, C, H, W) in [-1, 1], ``latents``, and
    ``labels`` for conditional generators."""
    import torch

    if num <= 0:
        raise EdgeganError("--num must be a positive number of images")
    latents = make_latents(num, gen.spec["latent_dim"], seed)
    label_arr = make_labels(num, gen.spec["num_classes"], labels)
    device = next(gen.module.parameters()).device
    outs = []
    with torch.no_grad():
        for i in range(0, num, batch_size):
            z = torch.from_numpy(latents[i : i + batch_size]).to(device)
            y = (
                None
                if label_arr is None
                else torch.from_numpy(label_arr[i : i + batch_size]).to(device)
            )
            outs.append(gen.module(z, y).float().clamp(-1, 1).cpu().numpy())
    result = {"images": np.concatenate(outs), "latents": latents}
    if label_arr is not None:
        result["labels"] = label_arr
    return result


def to_uint8_nhwc(images: np.ndarray) -> np.ndarray:
    """[-1, 1] float (N, C, H, W) -> uint8 (N, H, W, C), rounding to nearest."""
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def prepare_out_dir(out: str | Path, overwrite: bool = False) -> Path:
    """``out`` must be new or empty, unless ``overwrite``: a run never clobbers earlier files."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdgeganError(f"--out {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise EdgeganError(f"--out {out} is not empty; choose another folder or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_outputs(result: dict[str, np.ndarray], out: Path, fmt: str) -> list[Path]:
    """Write ``images.npz`` (uint8 NHWC ``images``, float ``raw``, ``latents``, ``labels``) or
    one PNG per image (``000000.png``, or ``000000_label3.png`` when conditional)."""
    from PIL import Image

    if fmt not in FORMATS:
        raise EdgeganError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    images = to_uint8_nhwc(result["images"])
    if fmt == "npz":
        path = out / "images.npz"
        arrays = {"images": images, "raw": result["images"], "latents": result["latents"]}
        if "labels" in result:
            arrays["labels"] = result["labels"]
        np.savez_compressed(path, **arrays)
        return [path]
    paths = []
    labels = result.get("labels")
    for i, img in enumerate(images):
        suffix = f"_label{labels[i]}" if labels is not None else ""
        path = out / f"{i:06d}{suffix}.png"
        Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(path)
        paths.append(path)
    return paths


def infer(
    run_dir: str | Path,
    out: str | Path,
    num: int | None = None,
    labels: list[int] | None = None,
    seed: int = 0,
    fmt: str = "png",
    device: str = "cpu",
    overwrite: bool = False,
) -> list[Path]:
    """Sample a run's generator to ``out`` (the API behind ``edgegan infer``)."""
    if fmt not in FORMATS:
        raise EdgeganError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    if num is None:
        if not labels:
            raise EdgeganError("give --num N (or --labels, one image per label)")
        num = len(labels)
    gen = load_run_generator(run_dir, device=device)
    result = generate(gen, num, seed=seed, labels=labels)
    return write_outputs(result, prepare_out_dir(out, overwrite), fmt)
