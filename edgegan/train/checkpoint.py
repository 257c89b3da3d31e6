"""Checkpoints: written atomically, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain nested dict of tensors, numbers, strings, lists and dicts, so loading
one never executes code from the file.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgegan.errors import EdgeganError, exception_line, format_mismatch
from edgegan.fileio import atomic_write

FORMAT_VERSION = 1


def lacks(path: str | Path, exc: KeyError, use: str) -> EdgeganError:
    """The one line for a checkpoint without a key that ``use`` (resumed, sampled, ...)
    needs: a KeyError's traceback said no more."""
    return EdgeganError(
        f"{path} lacks {exc} (written by another edgegan version, or edited); it cannot be {use}"
    )


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over it.

    A crash (or Ctrl-C) mid-write leaves the previous file intact. ``obj`` must be plain data
    (:func:`check_plain`): a value that ``torch.load(weights_only=True)`` would refuse is one
    error now, not a run whose every checkpoint cannot be resumed, exported or sampled.
    """
    check_plain(obj)
    return atomic_write(path, lambda f: torch.save(obj, f))


def keep_snapshot(path: Path, step: int, keep: int) -> list[str]:
    """Keep the checkpoint just written at ``path`` as ``step_NNNNNNN.pt`` beside it (a hard
    link: no copy, and the next checkpoint's rename over ``path`` leaves it; a copy where
    links fail), then remove the oldest beyond ``keep``. Best effort, as ``path`` is written
    already: a snapshot that cannot be written or removed (a full disk; on Windows a file
    another process holds open) is returned as a line, and removal is tried again next time."""
    import os
    import shutil

    from edgegan.fileio import replace, temp_path

    problems = []
    snapshot = path.with_name(f"step_{step:07d}.pt")
    temp = temp_path(snapshot)  # a kill's: removed (remove_dead_temps)
    try:
        try:
            os.link(path, temp)
        except OSError:
            shutil.copyfile(path, temp)
        replace(temp, snapshot)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        problems.append(f"cannot keep {snapshot.name}: {exception_line(exc)}")
    kept = sorted(
        (p for p in path.parent.glob("step_*.pt") if p.stem[5:].isdigit()),
        key=lambda p: int(p.stem[5:]),  # by number: step 10,000,000 has eight digits
    )
    for old in kept[:-keep] if keep > 0 else []:
        try:
            old.unlink(missing_ok=True)
        except OSError as exc:
            problems.append(f"cannot remove {old.name} yet: {exception_line(exc)}")
    return problems


_PLAIN = (str, int, float, bool, bytes, type(None), torch.Size, torch.dtype, torch.device)


def check_plain(obj: Any, where: str = "checkpoint") -> None:
    """Raise :class:`EdgeganError` naming the first value in ``obj`` that is not a tensor,
    plain Python data or a container of them (NumPy scalars and strings are not: they
    unpickle only with ``weights_only=False``)."""
    if isinstance(obj, torch.Tensor) or type(obj) in _PLAIN:
        return
    if isinstance(obj, dict) and type(obj) in (dict, OrderedDict):
        for key, value in obj.items():
            if type(key) not in _PLAIN:
                raise EdgeganError(f"cannot save {where}: a key is a {_type_name(key)}")
            check_plain(value, f"{where}.{key}")
        return
    if type(obj) in (list, tuple):
        for i, value in enumerate(obj):
            check_plain(value, f"{where}[{i}]")
        return
    raise EdgeganError(
        f"cannot save {where}: it is a {_type_name(obj)}, which torch.load(weights_only=True) "
        "would refuse (a plugin's dataset or network gave a value that is not plain data, "
        "such as a NumPy number: convert it with int(), float() or str())"
    )


def _type_name(obj: Any) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) with a clear error if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise EdgeganError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise EdgeganError(f"cannot load checkpoint {path}: {why_unloadable(path, exc)}") from None
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise EdgeganError(f"{path} is not an edgegan checkpoint (format {FORMAT_VERSION})")
    if ckpt["format"] != FORMAT_VERSION:
        raise format_mismatch(
            "checkpoint",
            path,
            ckpt["format"],
            FORMAT_VERSION,
            ckpt.get("edgegan_version"),
            "use the edgegan that wrote it",
        )
    return ckpt


def why_unloadable(path: Path, exc: Exception) -> str:
    """One line on why ``torch.load`` refused a file (its own messages run to paragraphs,
    and for unsafe files advise ``weights_only=False``, which edgegan never does)."""
    if path.stat().st_size == 0:
        return "the file is empty"
    # torch's wording: "Unsupported global: GLOBAL x.Y ..." for a class, "unsupported GLOBAL
    # posix.system whose module posix is blocked" for a function such as os.system
    if isinstance(exc, pickle.UnpicklingError) and "unsupported global" in str(exc).lower():
        return (
            "it holds Python objects, not only tensors and plain data; edgegan loads checkpoints "
            "with weights_only=True and so never runs code from a file"
        )
    if isinstance(exc, OSError):  # unreadable (permissions, I/O): say so, not "damaged"
        return exception_line(exc)
    # Not a zip (torch's format since 1.6): the legacy unpickler reads garbage and fails in
    # any of several ways (KeyError, UnicodeDecodeError, ... for some random bytes).
    damaged = (EOFError, RuntimeError, IndexError, pickle.UnpicklingError)
    if isinstance(exc, damaged) or not zipfile.is_zipfile(path):
        return "the file is damaged or cut short (not a complete torch checkpoint)"
    return exception_line(exc)


def mismatch(exc: RuntimeError) -> str:
    """One line from ``load_state_dict``'s error: its first line names the network
    (``Error(s) in loading state_dict for G:``), the second what does not fit."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return " ".join(lines[:2])


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop touches, in a weights_only-safe form."""
    np_state: tuple[Any, ...] = np.random.get_state(legacy=True)  # type: ignore[assignment]
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
