"""MNIST-format datasets held in memory: the bundled 10,000 digits and any IDX folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from edgegan.data.base import (
    TensorImageDataset,
    check_image_params,
    check_limit,
    resize_uint8_stack,
)
from edgegan.data.idx import bundled_mnist_dir, load_idx_split
from edgegan.errors import DataError

DIGIT_NAMES: list[str] = [str(i) for i in range(10)]

FASHION_MNIST_NAMES: list[str] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the four ``*-ubyte.gz`` files."""

SPLITS = ("train", "test")


class IdxDataset(TensorImageDataset):
    """An MNIST-format split in memory; ``root`` is the folder it was read from."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        class_names: Sequence[str],
        root: Path,
        split: str,
    ) -> None:
        super().__init__(images, labels, class_names)
        self.root = root
        self.split = split

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, {self.split} split of {self.root})"


def _check_split(split: str, where: str) -> None:
    if split not in SPLITS:
        raise DataError(f"{where}: unknown split {split!r}; splits: {', '.join(SPLITS)}")


def _build(
    root: Path,
    split: str,
    images: np.ndarray,
    labels: np.ndarray,
    image_size: int,
    channels: int,
    limit: int,
    class_names: list[str],
) -> IdxDataset:
    if len(images) == 0:
        raise DataError(f"no images in the {split} split of {root}")
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise DataError(
            f"labels of {root} ({split}) range over {labels.min()}..{labels.max()}, but "
            f"{len(class_names)} class names are set; set data.class_names to one name per class"
        )
    if limit:
        images, labels = images[:limit], labels[:limit]
    # Kept as 8-bit pixels, grey stored once for RGB: 60,000 images at 64x64 RGB hold 246 MB
    # instead of 3.9 GB as float32.
    pixels = resize_uint8_stack(images, image_size)
    if channels != 1:
        pixels = pixels.expand(-1, channels, -1, -1)
    return IdxDataset(
        pixels, torch.from_numpy(np.ascontiguousarray(labels)), class_names, root, split
    )


def build_mnist(
    split: str = "train", image_size: int = 32, channels: int = 1, limit: int = 0
) -> IdxDataset:
    """The 10,000 real MNIST digits bundled with edgegan (8,000 train / 2,000 test)."""
    where = "dataset 'mnist'"
    _check_split(split, where)
    check_image_params(image_size, channels, where)
    check_limit(limit, where)
    root = bundled_mnist_dir()
    images, labels = load_idx_split(root, split)
    return _build(root, split, images, labels, image_size, channels, limit, DIGIT_NAMES)


def _class_names(value: object, root: Path, labels_max: int) -> list[str]:
    if value is None:
        # the folder's own name (its parent's for torchvision's FashionMNIST/raw): not where
        # it lies, which an absolute root (kept so in the run's config) would bring in
        named = root.parent if root.name.lower() in ("raw", "processed") else root
        if "fashion" in named.name.lower():
            return list(FASHION_MNIST_NAMES)
        return [str(i) for i in range(max(10, labels_max + 1))]
    if isinstance(value, str):  # "a,b,c" from a command-line override
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, (list, tuple)) or not value:
        raise DataError(f"dataset 'idx': class_names must be a non-empty list, got {value!r}")
    names = [str(v) for v in value]
    if len(set(names)) != len(names):
        raise DataError(f"dataset 'idx': class_names has duplicates: {names}")
    return names


def build_idx(
    root: str | None = None,
    split: str = "train",
    image_size: int = 28,
    channels: int = 1,
    limit: int = 0,
    class_names: list | None = None,
) -> IdxDataset:
    """Any MNIST-format folder (MNIST, Fashion-MNIST, ...); by default Debian's Fashion-MNIST."""
    where = "dataset 'idx'"
    _check_split(split, where)
    check_image_params(image_size, channels, where)
    check_limit(limit, where)
    if root is None or root == "":
        if not DEBIAN_FASHION_MNIST.is_dir():
            raise DataError(
                f"dataset 'idx' needs a folder of MNIST-format files: set data.root=DIR "
                f"(the default, {DEBIAN_FASHION_MNIST}, from Debian's dataset-fashion-mnist "
                "package, is not installed)"
            )
        folder = DEBIAN_FASHION_MNIST
    elif not isinstance(root, (str, Path)):
        raise DataError(f"{where}: root must be a folder path, got {root!r}")
    else:
        folder = Path(root).expanduser()
    images, labels = load_idx_split(folder, split)
    names = _class_names(class_names, folder, int(labels.max()) if len(labels) else 0)
    return _build(folder, split, images, labels, image_size, channels, limit, names)


def label_counts(dataset: TensorImageDataset) -> np.ndarray:
    """How many items each class holds (handy for reports and stratified checks)."""
    labels = dataset.labels[dataset.labels >= 0]
    return np.bincount(labels.numpy(), minlength=dataset.num_classes)
