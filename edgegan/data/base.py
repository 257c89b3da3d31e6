"""The dataset contract shared by the built-in datasets, and the in-memory base class.

Every dataset factory returns a ``torch.utils.data.Dataset`` of ``(image, label)`` pairs:
``image`` float32 ``(C, H, W)`` in [-1, 1], ``label`` an int (-1 when unlabelled), with the
attributes ``image_shape`` (C, H, W), ``num_classes`` (0 when unlabelled) and ``class_names``.
In-memory datasets (:class:`TensorImageDataset`) also expose ``images`` ``(N, C, H, W)`` and
``labels`` ``(N,)`` tensors so the trainer can slice whole batches. Datasets never shuffle.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from edgegan.data.files import DataWarning  # noqa: F401 - its home before files.py
from edgegan.data.transforms import BILINEAR
from edgegan.errors import DataError

MAX_IMAGE_SIZE = 4096


def check_image_params(image_size: int, channels: int, where: str) -> None:
    """Reject sizes and channel counts no built-in dataset can produce (``where`` names it)."""
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise DataError(f"{where}: image_size must be an integer, got {image_size!r}")
    if not 1 <= image_size <= MAX_IMAGE_SIZE:
        raise DataError(f"{where}: image_size must be in 1..{MAX_IMAGE_SIZE}, got {image_size}")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise DataError(f"{where}: channels must be 1 (grey) or 3 (RGB), got {channels!r}")


def check_limit(limit: int, where: str) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise DataError(f"{where}: limit must be an integer >= 0 (0: all), got {limit!r}")


class TensorImageDataset(Dataset):
    """A dataset held in memory as tensors, preprocessed once.

    ``images``: float32 ``(N, C, H, W)`` in [-1, 1]; ``labels``: int64 ``(N,)`` (-1 for
    unlabelled items, or ``None`` for all -1); ``class_names``: one name per class (empty when
    unlabelled, so ``num_classes`` is 0).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(
                f"images must be an (N, C, H, W) tensor, got {type(images).__name__}"
                f" {tuple(getattr(images, 'shape', ()))}"
            )
        images = images.float().contiguous()
        n = images.shape[0]
        if labels is None:
            labels = torch.full((n,), -1, dtype=torch.int64)
        labels = torch.as_tensor(labels).to(torch.int64).reshape(-1)
        if labels.shape[0] != n:
            raise ValueError(f"{labels.shape[0]} labels for {n} images")
        self.images = images
        self.labels = labels
        self.class_names: list[str] = [str(c) for c in (class_names or [])]
        if n and self.class_names and int(labels.max()) >= len(self.class_names):
            raise ValueError(
                f"label {int(labels.max())} out of range for {len(self.class_names)} classes"
            )
        if not self.class_names and n and int(labels.max()) >= 0:
            raise ValueError("labelled images need class_names")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        return f"{type(self).__name__}({len(self)} images {c}x{h}x{w}, {self.num_classes} classes)"


@functools.lru_cache(maxsize=32)
def _resize_matrix(n_in: int, n_out: int, resample: int) -> np.ndarray:
    """The (n_out, n_in) linear map that Pillow's ``resize`` applies along one axis.

    Read off Pillow itself: resizing the identity (in float mode, so without 8-bit rounding)
    along one axis gives that axis's weights, antialiasing included.
    """
    eye = Image.fromarray(np.eye(n_in, dtype=np.float32))  # mode F
    return np.asarray(eye.resize((n_out, n_in), resample), dtype=np.float32).T.copy()


def uint8_stack_to_tensor(
    images: np.ndarray,
    image_size: int,
    channels: int,
    resample: Image.Resampling = BILINEAR,
    chunk: int = 8192,
) -> torch.Tensor:
    """Greyscale uint8 images ``(N, H, W)`` -> float32 ``(N, channels, S, S)`` in [-1, 1].

    Images already ``S x S`` are kept as they are. Others are resized as Pillow's ``resize``
    does (antialiased; square ones directly, others by the shorter side and center-cropped),
    rounded to 8 bits like a resized image file, but in batched matrix products: fast for
    60,000 images. Grey is repeated to 3 channels when ``channels`` is 3.
    """
    if images.ndim != 3:
        raise ValueError(f"expected (N, H, W) images, got {images.shape}")
    n, h, w = images.shape
    out = torch.empty((n, channels, image_size, image_size), dtype=torch.float32)
    if n == 0:
        return out
    resize = (h, w) != (image_size, image_size)
    if resize:
        if h == w:
            new_h = new_w = image_size
        elif w < h:
            new_w, new_h = image_size, max(image_size, round(h * image_size / w))
        else:
            new_w, new_h = max(image_size, round(w * image_size / h)), image_size
        top = int(round((new_h - image_size) / 2.0))
        left = int(round((new_w - image_size) / 2.0))
        ry = torch.from_numpy(_resize_matrix(h, new_h, int(resample))[top : top + image_size])
        rx = torch.from_numpy(_resize_matrix(w, new_w, int(resample))[left : left + image_size])
        rxt, ryt = rx.T.contiguous(), ry.T.contiguous()
    src = torch.from_numpy(np.ascontiguousarray(images))
    for i in range(0, n, chunk):
        x = src[i : i + chunk].float()
        if resize:  # two large GEMMs: rows then columns
            m = x.shape[0]
            x = (x.reshape(m * h, w) @ rxt).reshape(m, h, image_size).transpose(1, 2)
            x = (x.reshape(m * image_size, h) @ ryt).reshape(m, image_size, image_size)
            x = x.transpose(1, 2).round_().clamp_(0.0, 255.0)
        x = x.mul_(1.0 / 127.5).sub_(1.0).unsqueeze(1)
        out[i : i + chunk] = x  # broadcasts grey over 3 channels
    return out
