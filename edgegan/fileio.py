"""Atomic file writes: a crash or Ctrl-C mid-write never leaves a half-written file behind;
and output folders that a failed run takes back."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, then rename it over
    ``path``. The file gets the usual permissions (umask), unlike ``tempfile.mkstemp``'s 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def missing_dirs(path: str | Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first: the folders
    ``path.mkdir(parents=True)`` will make, to take back if the work that needs them fails."""
    path, out = Path(path), []
    while not path.exists() and path != path.parent:
        out.append(path)
        path = path.parent
    return out


def remove_empty_dirs(dirs: list[Path] | list[str]) -> None:
    """Remove each of ``dirs`` that is an empty folder, deepest first (so a folder emptied by
    removing a deeper one goes too); anything else stays."""
    for d in sorted({Path(d) for d in dirs}, key=lambda p: -len(p.parts)):
        try:
            d.rmdir()
        except OSError:
            pass


@contextmanager
def undo_new_files(root: str | Path) -> Iterator[Path]:
    """A block that writes under ``root``: if it raises (Ctrl-C included), the files and
    folders it created there are removed, ``root`` too when the block made it, and the error
    goes on. Files that were there before stay (``--overwrite`` may have replaced them), so
    a failed run neither loses earlier files nor leaves a partial result that looks whole."""
    root = Path(root)
    made = missing_dirs(root)
    before = set(root.rglob("*")) if root.is_dir() else set()
    try:
        yield root
    except BaseException:
        new = [p for p in root.rglob("*") if p not in before] if root.is_dir() else []
        for p in new:
            if not p.is_dir():
                p.unlink(missing_ok=True)
        remove_empty_dirs([p for p in new if p.is_dir()] + made)
        raise
