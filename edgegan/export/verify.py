"""Parity: every exported graph is run with ONNX Runtime against the torch generator.

The reference is the generator as trained (eval mode, FP32, on the CPU, BatchNorm unfolded),
fed fresh seeded inputs: a GAN's latents at several batch sizes (1 and 7 among them, so the
dynamic batch axis is exercised), a translator's random images at two batch sizes and two
image sizes (:func:`edgegan.export.signature.parity_sizes`: dynamic height and width too).
The errors go into ``edgegan.json``; :func:`check_parity` fails an export whose
FP32 graph is off by more than :data:`FP32_MAX_ABS`, or whose reduced-precision graphs fall
below their PSNR floor.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgegan.export.bundle import ExportError
from edgegan.export.signature import is_translator, make_feed, parity_sizes

PARITY_BATCH_SIZES: tuple[int, ...] = (1, 7, 56)  # 64 samples in all
PARITY_SEED = 20240917  # not the calibration seed: parity inputs are never seen in calibration
FP32_MAX_ABS = 1e-4
MIN_PSNR: dict[str, float] = {"fp16": 30.0, "int8": 20.0}
PSNR_CAP = 200.0  # identical outputs would be +inf, which JSON cannot hold


def psnr(reference: np.ndarray, output: np.ndarray, peak: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB, over a value range of ``peak`` (2.0 for [-1, 1])."""
    mse = float(np.mean((reference.astype(np.float64) - output.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_CAP
    if not math.isfinite(mse):
        return 0.0
    return min(PSNR_CAP, 10.0 * math.log10(peak * peak / mse))


def parity_inputs(
    spec: dict[str, Any],
    batch_sizes: tuple[int, ...] = PARITY_BATCH_SIZES,
    seed: int = PARITY_SEED,
) -> list[dict[str, np.ndarray]]:
    """Seeded feeds: for a GAN one per batch size (``z`` from the latent prior, ``labels``
    uniform); for a translator one per (batch, H, W) of ``parity_sizes`` (uniform images)."""
    if is_translator(spec):
        return [
            make_feed(spec, n, seed + i, (h, w)) for i, (n, h, w) in enumerate(parity_sizes(spec))
        ]
    rng = np.random.default_rng(seed)
    k = int(spec.get("num_classes") or 0)
    feeds = []
    for n in batch_sizes:
        feed: dict[str, np.ndarray] = {
            "z": rng.standard_normal((n, int(spec["latent_dim"])), dtype=np.float32)
        }
        if k > 0:
            feed["labels"] = rng.integers(0, k, size=n, dtype=np.int64)
        feeds.append(feed)
    return feeds


def torch_outputs(generator: Any, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """The reference: the torch generator, FP32 on the CPU, for each feed (its arrays are
    the positional arguments, in the graph's input order)."""
    import torch

    module = generator.module if hasattr(generator, "module") else generator
    params = next(module.parameters(), None)
    device = params.device if params is not None else torch.device("cpu")
    outs = []
    with torch.no_grad():
        for feed in feeds:
            args = [torch.from_numpy(v).to(device) for v in feed.values()]
            outs.append(module(*args).float().cpu().numpy())
    return outs


def ort_session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with full graph optimisation."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
    opts.log_severity_level = 3
    # the bytes: a path whose name the locale could not decode is no str onnxruntime takes
    data = Path(path).read_bytes()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def onnx_outputs(path: str | Path, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """Run the graph at ``path`` on each feed (only the inputs the graph declares)."""
    session = ort_session(path)
    names = {i.name for i in session.get_inputs()}
    output = session.get_outputs()[0].name
    return [
        session.run([output], {k: v for k, v in feed.items() if k in names})[0] for feed in feeds
    ]


def compare(
    references: list[np.ndarray], outputs: list[np.ndarray], peak: float = 2.0
) -> dict[str, Any]:
    """``max_abs``, ``mean_abs``, ``psnr`` (over the value range's width ``peak``) and
    ``samples``."""
    for r, o in zip(references, outputs, strict=True):
        if r.shape != o.shape:
            raise ExportError(f"the ONNX graph returned shape {o.shape}; torch gave {r.shape}")
    ref = np.concatenate([r.ravel() for r in references])  # the feeds may differ in size
    out = np.concatenate([o.ravel() for o in outputs])
    diff = np.abs(ref.astype(np.float64) - out.astype(np.float64))
    finite = bool(np.isfinite(out).all())
    return {
        "max_abs": float(diff.max()) if finite else float("nan"),
        "mean_abs": float(diff.mean()) if finite else float("nan"),
        "psnr": round(psnr(ref, out, peak), 2) if finite else 0.0,
        "samples": sum(len(r) for r in references),
        "batch_sizes": [len(r) for r in references],
    }


def measure_parity(
    generator: Any,
    spec: dict[str, Any],
    path: str | Path,
    batch_sizes: tuple[int, ...] = PARITY_BATCH_SIZES,
    seed: int = PARITY_SEED,
) -> dict[str, Any]:
    """Parity of the ONNX graph at ``path`` against the torch generator (FP32)."""
    feeds = parity_inputs(spec, batch_sizes, seed)
    low, high = spec.get("value_range") or (-1.0, 1.0)
    parity = compare(torch_outputs(generator, feeds), onnx_outputs(path, feeds), high - low)
    # Where the graph ran: the CPU provider runs an FP16 graph's convolutions in FP32 (it
    # has no FP16 kernels for them), so this is not FP16-arithmetic parity on a GPU.
    parity["provider"] = "CPUExecutionProvider"
    if is_translator(spec):
        parity["sizes"] = [list(next(iter(f.values())).shape[-2:]) for f in feeds]
    return parity


def check_parity(precision: str, parity: dict[str, Any], file: str = "") -> None:
    """Raise :class:`ExportError` when a graph's parity is out of tolerance."""
    what = f"{precision} graph {file}".strip()
    max_abs = parity["max_abs"]
    if not math.isfinite(max_abs):
        raise ExportError(f"the {what} produced NaN or infinite values")
    if precision == "fp32" and max_abs > FP32_MAX_ABS:
        raise ExportError(
            f"the {what} does not match the torch generator: max abs error {max_abs:.3g} > "
            f"{FP32_MAX_ABS:g} (PSNR {parity['psnr']:.1f} dB); nothing was written"
        )
    floor = MIN_PSNR.get(precision)
    if floor is not None and parity["psnr"] < floor:
        raise ExportError(
            f"the {what} is too far from the torch generator: PSNR {parity['psnr']:.1f} dB < "
            f"{floor:g} dB (max abs error {max_abs:.3g}); export without it, or report the model"
        )


def sanitize(parity: dict[str, Any]) -> dict[str, Any]:
    """Parity as stored in ``edgegan.json`` (finite numbers only, rounded)."""
    out = dict(parity)
    for key in ("max_abs", "mean_abs"):
        value = out.get(key)
        if value is not None:
            out[key] = float(f"{value:.4g}") if math.isfinite(value) else None
    return out
