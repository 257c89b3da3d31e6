"""Checkpoints: written atomically, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain nested dict of tensors, numbers, strings, lists and dicts, so loading
one never executes code from the file.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgegan.errors import EdgeganError
from edgegan.fileio import atomic_write

FORMAT_VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over it.

    A crash (or Ctrl-C) mid-write leaves the previous file intact.
    """
    return atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) with a clear error if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise EdgeganError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise EdgeganError(f"cannot load checkpoint {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_VERSION:
        raise EdgeganError(f"{path} is not an edgegan checkpoint (format {FORMAT_VERSION})")
    return ckpt


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop touches, in a weights_only-safe form."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
