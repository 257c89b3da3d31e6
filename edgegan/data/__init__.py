"""Built-in datasets and image helpers.

Importing this package is cheap (no torch); the names below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TensorImageDataset": "edgegan.data.base",
    "DataWarning": "edgegan.data.files",
    "IdxDataset": "edgegan.data.mnist",
    "build_mnist": "edgegan.data.mnist",
    "build_idx": "edgegan.data.mnist",
    "ImageFolderDataset": "edgegan.data.folder",
    "build_folder": "edgegan.data.folder",
    "UnpairedImageDataset": "edgegan.data.unpaired",
    "build_unpaired": "edgegan.data.unpaired",
    "CycleganDigits": "edgegan.data.digits_domains",
    "build_cyclegan_digits": "edgegan.data.digits_domains",
    "read_idx": "edgegan.data.idx",
    "load_idx_split": "edgegan.data.idx",
    "bundled_mnist_dir": "edgegan.data.idx",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgegan.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
