"""Built-in datasets and image helpers.

Importing this package is cheap (no torch); the names below load their module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgegan.lazy import lazy_attribute

if TYPE_CHECKING:  # the real types for type checkers (at run time: loaded on first use)
    from edgegan.data.base import TensorImageDataset
    from edgegan.data.digits_domains import CycleganDigits, build_cyclegan_digits
    from edgegan.data.files import DataWarning
    from edgegan.data.folder import ImageFolderDataset, build_folder
    from edgegan.data.idx import bundled_mnist_dir, load_idx_split, read_idx
    from edgegan.data.mnist import IdxDataset, build_idx, build_mnist
    from edgegan.data.unpaired import UnpairedImageDataset, build_unpaired

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

__all__ = [
    "CycleganDigits",
    "DataWarning",
    "IdxDataset",
    "ImageFolderDataset",
    "TensorImageDataset",
    "UnpairedImageDataset",
    "build_cyclegan_digits",
    "build_folder",
    "build_idx",
    "build_mnist",
    "build_unpaired",
    "bundled_mnist_dir",
    "load_idx_split",
    "read_idx",
]


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _EXPORTS.get(name), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
