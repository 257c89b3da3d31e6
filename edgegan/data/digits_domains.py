"""``cyclegan-digits``: an offline unpaired-translation demo made of the bundled MNIST digits.

Domain A: the bundled MNIST digits (``edgegan/data/assets/mnist10k``), grey, resized 28 -> 32
(``image_size``) as the ``mnist`` dataset does. Domain B: :func:`to_domain_b` of *other* digits,
a fixed transform applied to the A-style image (at ``image_size``, in [-1, 1]):

1. thicken: a 3x3 maximum filter (morphological dilation; the border counts as background);
2. colour-map the intensity ``t = (x + 1) / 2`` in [0, 1] to RGB:
   ``c(t) = bg + t * (fg(t) - bg)`` with ``bg`` dark blue ``(0.05, 0.08, 0.35)`` and
   ``fg(t)`` running from orange ``(1.0, 0.45, 0.0)`` at ``t = 0`` to yellow
   ``(1.0, 0.9, 0.2)`` at ``t = 1`` (linearly), so the background is dark blue and strokes go
   from orange at their soft edges to yellow at their core;
3. round to 8-bit levels (``round(255 c) / 127.5 - 1``), so B is exactly what a PNG of it
   holds, read back.

Train split: the bundled 8,000 training digits cut in two disjoint halves, the first 4,000 as
A and the other 4,000 (transformed) as B: no digit is in both domains. Item ``i`` takes
``A[i]`` and B at a random index (Python's ``random``), or ``B[i]`` with ``serial_batches``,
as the ``unpaired`` dataset. No flip or crop: digits are not mirror-symmetric and small.

Test split (``paired=True``): the 2,000 test digits as A, and as B their own transform — the
true translation ``B[i] = to_domain_b(A[i])``, for paired metrics (L1, PSNR, SSIM).

With ``paired=True`` the train split is paired the same way, for the ``pix2pix`` task: all
8,000 training digits as A, each with its own transform as B.

Items are dicts ``{"A": (C_a, S, S), "B": (3, S, S), "A_path": str, "B_path": str}`` (the paths
name the digit, e.g. ``mnist10k/train/4000``); ``images_a`` and ``images_b`` hold all of them
as float tensors, ``indices_a`` and ``indices_b`` the digits' indices in their IDX split.
:func:`write_cyclegan_digits_folder` (``tools/make_cyclegan_digits_folder.py``) writes the same
images as PNG folders in the ``unpaired`` layout.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from edgegan.data.base import check_image_params, check_limit, uint8_stack_to_tensor
from edgegan.data.idx import bundled_mnist_dir, load_idx_split
from edgegan.errors import DataError

SPLITS = ("train", "test")
_WHERE = "dataset 'cyclegan-digits'"

BACKGROUND = (0.05, 0.08, 0.35)
STROKE_EDGE = (1.0, 0.45, 0.0)
STROKE_CORE = (1.0, 0.9, 0.2)


def colour_map(t: torch.Tensor) -> torch.Tensor:
    """Intensities ``(N, 1, H, W)`` in [0, 1] -> RGB ``(N, 3, H, W)`` in [0, 1] (unrounded)."""
    bg = torch.tensor(BACKGROUND, dtype=t.dtype, device=t.device).view(1, 3, 1, 1)
    edge = torch.tensor(STROKE_EDGE, dtype=t.dtype, device=t.device).view(1, 3, 1, 1)
    core = torch.tensor(STROKE_CORE, dtype=t.dtype, device=t.device).view(1, 3, 1, 1)
    fg = edge + t * (core - edge)
    return bg + t * (fg - bg)


def dilate(x: torch.Tensor) -> torch.Tensor:
    """3x3 maximum filter of ``(N, C, H, W)`` images (padding never wins the maximum)."""
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def to_domain_b(a: torch.Tensor) -> torch.Tensor:
    """The documented A -> B transform: grey ``(N, 1, H, W)`` (or ``(1, H, W)``) in [-1, 1]
    -> RGB ``(N, 3, H, W)`` in [-1, 1] on 8-bit levels. A 3-channel A uses its first channel."""
    single = a.ndim == 3
    x = a.unsqueeze(0) if single else a
    x = x[:, :1].float()
    t = (dilate(x) + 1.0) / 2.0
    levels = (colour_map(t.clamp(0.0, 1.0)) * 255.0).round_()
    rgb = levels.mul_(1.0 / 127.5).sub_(1.0)  # as to_tensor scales 8-bit pixels
    return rgb[0] if single else rgb


class CycleganDigits(Dataset):
    """Domains A (digits) and B (:func:`to_domain_b` of other digits) in memory."""

    num_classes = 0

    def __init__(
        self,
        images_a: torch.Tensor,
        images_b: torch.Tensor,
        indices_a: np.ndarray,
        indices_b: np.ndarray,
        split: str,
        paired: bool,
        serial_batches: bool,
    ) -> None:
        self.images_a = images_a.float().contiguous()
        self.images_b = images_b.float().contiguous()
        self.indices_a = indices_a
        self.indices_b = indices_b
        self.split = split
        self.paired = paired
        self.serial_batches = bool(serial_batches) or paired
        self.class_names: list[str] = []
        self.rng: random.Random | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images_a.shape[1:]
        return int(c), int(h), int(w)

    @property
    def image_shape_b(self) -> tuple[int, int, int]:
        c, h, w = self.images_b.shape[1:]
        return int(c), int(h), int(w)

    def __len__(self) -> int:
        return max(len(self.images_a), len(self.images_b))

    def _name(self, index: int) -> str:
        return f"mnist10k/{self.split}/{int(index)}"

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        size_a, size_b = len(self.images_a), len(self.images_b)
        ia = index % size_a
        if self.serial_batches:
            ib = index % size_b
        else:
            ib = (self.rng or random).randint(0, size_b - 1)
        return {
            "A": self.images_a[ia],
            "B": self.images_b[ib],
            "A_path": self._name(self.indices_a[ia]),
            "B_path": self._name(self.indices_b[ib]),
        }

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        return (
            f"CycleganDigits({len(self.images_a)} A {c}x{h}x{w}, {len(self.images_b)} B "
            f"3x{h}x{w}, {self.split} split{', paired' if self.paired else ''})"
        )


def build_cyclegan_digits(
    split: str = "train",
    image_size: int = 32,
    channels_a: int = 1,
    serial_batches: bool = False,
    limit: int = 0,
    paired: bool = False,
) -> CycleganDigits:
    """Offline CycleGAN demo: bundled MNIST digits (A) and thickened, colour-mapped other
    digits (B); the test split pairs each A with its true B, and so does the train split
    with ``paired`` (for pix2pix)."""
    if split not in SPLITS:
        raise DataError(f"{_WHERE}: unknown split {split!r}; splits: {', '.join(SPLITS)}")
    check_image_params(image_size, channels_a, _WHERE)
    check_limit(limit, _WHERE)
    if not isinstance(paired, bool):
        raise DataError(f"{_WHERE}: paired must be true or false, got {paired!r}")
    paired = paired or split == "test"
    images, _ = load_idx_split(bundled_mnist_dir(), split)
    n = len(images)
    if not paired:
        half = n // 2
        idx_a = np.arange(0, half)
        idx_b = np.arange(half, n)
    else:
        idx_a = idx_b = np.arange(n)
    if limit:
        idx_a, idx_b = idx_a[:limit], idx_b[:limit]
    grey_a = uint8_stack_to_tensor(images[idx_a], image_size, 1)
    grey_b = grey_a if paired else uint8_stack_to_tensor(images[idx_b], image_size, 1)
    images_b = to_domain_b(grey_b)
    images_a = grey_a.expand(-1, channels_a, -1, -1) if channels_a != 1 else grey_a
    return CycleganDigits(
        images_a,
        images_b,
        idx_a,
        idx_b,
        split,
        paired=paired,
        serial_batches=serial_batches,
    )


def write_cyclegan_digits_folder(
    root: str | Path, image_size: int = 32, limit: int = 0
) -> dict[str, int]:
    """Write the demo as PNG folders ``trainA/``, ``trainB/``, ``testA/``, ``testB/`` under
    ``root`` (the ``unpaired`` layout): grey A, RGB B, named by the digit's index in its split
    (``00042.png``), so ``testA`` and ``testB`` share names (paired). Returns the counts."""
    from edgegan.data.transforms import save_png

    root = Path(root)
    counts: dict[str, int] = {}
    for split in SPLITS:
        ds = build_cyclegan_digits(split=split, image_size=image_size, limit=limit)
        for domain, images, indices in (
            ("A", ds.images_a, ds.indices_a),
            ("B", ds.images_b, ds.indices_b),
        ):
            folder = root / f"{split}{domain}"
            folder.mkdir(parents=True, exist_ok=True)
            for image, index in zip(images, indices, strict=True):
                save_png(image, folder / f"{int(index):05d}.png", fsync=False)
            counts[f"{split}{domain}"] = len(images)
    return counts
