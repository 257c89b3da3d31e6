"""The dataset contract shared by the built-in datasets, and the in-memory base class.

Every dataset factory returns a ``torch.utils.data.Dataset`` of ``(image, label)`` pairs:
``image`` float32 ``(C, H, W)`` in [-1, 1], ``label`` an int (-1 when unlabelled), with the
attributes ``image_shape`` (C, H, W), ``num_classes`` (0 when unlabelled) and ``class_names``.
In-memory datasets (:class:`TensorImageDataset`) also expose ``images`` ``(N, C, H, W)`` and
``labels`` ``(N,)`` tensors so the trainer can slice whole batches: ``images`` float32 in
[-1, 1], or uint8 pixels (0 is -1, 255 is 1; converted per item and per batch), which hold
8-bit sources in a quarter of the memory. Datasets never shuffle.
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


def unit_from_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> a new float32 tensor in [-1, 1] (0 -> -1, 255 -> 1), as 8-bit images
    are scaled everywhere in edgegan (the same operations, so the same floats)."""
    if pixels.dtype != torch.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    return pixels.float().mul_(1.0 / 127.5).sub_(1.0)


def channel_base(images: torch.Tensor) -> torch.Tensor:
    """The stored part of ``(N, C, H, W)`` images: ``images[:, :1]`` when the channels are
    one plane repeated as a view (``expand``, stride 0), else ``images`` itself."""
    if images.ndim == 4 and images.shape[1] > 1 and images.stride(1) == 0:
        return images[:, :1]
    return images


class TensorImageDataset(Dataset):
    """A dataset held in memory as tensors, preprocessed once.

    ``images``: ``(N, C, H, W)``, float32 in [-1, 1] or uint8 pixels (kept 8-bit: a quarter of
    the memory; items come out as float32 in [-1, 1]). uint8 grey images repeated to 3
    channels may be an ``expand`` view of ``(N, 1, H, W)``: one plane is stored. ``labels``:
    int64 ``(N,)`` (-1 for unlabelled items, or ``None`` for all -1); ``class_names``: one name
    per class (empty when unlabelled, so ``num_classes`` is 0).
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
        if images.dtype != torch.uint8:
            images = images.float().contiguous()
        elif not channel_base(images).is_contiguous():
            images = images.contiguous()
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
        image = self.images[index]
        if image.dtype == torch.uint8:
            image = unit_from_uint8(image)
        return image, int(self.labels[index])

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


def resize_uint8_stack(
    images: np.ndarray,
    image_size: int,
    resample: Image.Resampling = BILINEAR,
    chunk: int = 2048,
) -> torch.Tensor:
    """Greyscale uint8 images ``(N, H, W)`` -> uint8 ``(N, 1, S, S)``.

    Images already ``S x S`` are kept as they are (copied). Others are resized as Pillow's
    ``resize`` does (antialiased; square ones directly, others by the shorter side and
    center-cropped) and rounded to 8 bits like a resized image file, but in batched matrix
    products: fast for 60,000 images.
    """
    if images.ndim != 3:
        raise ValueError(f"expected (N, H, W) images, got {images.shape}")
    n, h, w = images.shape
    src = torch.from_numpy(np.array(images, dtype=np.uint8, order="C"))
    if (h, w) == (image_size, image_size):
        return src.unsqueeze(1)
    out = torch.empty((n, 1, image_size, image_size), dtype=torch.uint8)
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
    for i in range(0, n, chunk):
        x = src[i : i + chunk].float()
        m = x.shape[0]  # two large GEMMs: rows then columns
        x = (x.reshape(m * h, w) @ rxt).reshape(m, h, image_size).transpose(1, 2)
        x = (x.reshape(m * image_size, h) @ ryt).reshape(m, image_size, image_size)
        out[i : i + chunk, 0] = x.transpose(1, 2).round_().clamp_(0.0, 255.0)
    return out


def uint8_stack_to_tensor(
    images: np.ndarray,
    image_size: int,
    channels: int,
    resample: Image.Resampling = BILINEAR,
    chunk: int = 2048,
) -> torch.Tensor:
    """Greyscale uint8 images ``(N, H, W)`` -> float32 ``(N, channels, S, S)`` in [-1, 1]:
    :func:`resize_uint8_stack`, then scaled; grey is repeated to 3 channels when
    ``channels`` is 3. In-memory datasets keep the uint8 pixels instead (a quarter of the
    memory, a twelfth for RGB)."""
    pixels = resize_uint8_stack(images, image_size, resample, chunk)
    out = torch.empty((len(pixels), channels, image_size, image_size), dtype=torch.float32)
    for i in range(0, len(pixels), chunk):
        out[i : i + chunk] = unit_from_uint8(pixels[i : i + chunk])  # broadcasts grey
    return out
