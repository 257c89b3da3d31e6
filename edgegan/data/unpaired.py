"""Unpaired image folders for CycleGAN: ``root/trainA``, ``root/trainB`` (``testA``/``testB``).

The layout of the public CycleGAN datasets (horse2zebra, ...), read as the reference
implementation (junyanz/pytorch-CycleGAN-and-pix2pix, ``data/unaligned_dataset.py`` and
``data/base_dataset.py``) reads it:

- each domain folder is searched recursively for images, paths sorted; ``limit`` (the
  reference's ``max_dataset_size``) keeps the first ``limit`` of each domain;
- the length is ``max(len(A), len(B))``; item ``i`` takes ``A[i % len(A)]`` and ``B`` at a
  uniformly random index (``random.randint``), or ``B[i % len(B)]`` with ``serial_batches``;
- preprocessing ``resize_and_crop`` (``preprocess``, the default): resize to ``load_size x
  load_size`` (bicubic, aspect ratio ignored), crop ``crop_size``, flip left-right with
  probability 1/2; A and B draw their crop and flip independently. ``scale_width_and_crop``:
  resize to width ``load_size`` keeping the aspect ratio (height at least ``crop_size``), then
  crop, for datasets of wide images (Cityscapes, GTA); ``crop``: crop the image as it is. Grey
  (``channels_*=1``) or RGB per domain; scaled to [-1, 1].

The ``test`` split as the reference's ``test.py`` at its defaults: each image resized whole to
``crop_size`` (its ``load_size`` defaults to ``crop_size``), no crop, no flip, B taken
serially, so the test split is deterministic (``scale_width_and_crop``: width ``load_size``,
the training scale, then the centre ``crop_size`` square; ``crop``: the centre square). When
every file in ``testB`` has the name (path without extension) of a file in ``testA`` and
vice versa, the split is *paired* (``paired=True``): item ``i`` is ``A[i]`` with the B of the
same name, the ground truth for paired metrics (L1, PSNR, SSIM).

Randomness comes from Python's ``random`` module (saved in checkpoints; in DataLoader workers
reseeded for each batch, see :mod:`edgegan.train.stream`), or from ``dataset.rng`` when set to
a ``random.Random`` (which a resumed run does not restore).

Every file's header is checked when the dataset is built; with ``skip_bad=true`` an unreadable
file is left out (or, found only when decoded, replaced by the next good file of its domain).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import torch
from torch.utils.data import Dataset

from edgegan.data.base import MAX_IMAGE_SIZE, check_limit
from edgegan.data.files import READ_EXTENSIONS
from edgegan.data.folder import SkipWarnings, list_images, read_or_next, readable_images
from edgegan.data.transforms import (
    BICUBIC,
    center_crop,
    hflip,
    load_image,
    random_crop,
    resize,
    scale_width,
    to_tensor,
)
from edgegan.errors import DataError

T = TypeVar("T")

SPLITS = ("train", "test")
#: ``preprocess`` modes: the reference's that give every image one size (its ``scale_width``
#: and ``none`` give sizes that cannot share a batch).
PREPROCESS = ("resize_and_crop", "scale_width_and_crop", "crop")
_WHERE = "dataset 'unpaired'"


def check_int(where: str, name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DataError(f"{where}: {name} must be an integer in {low}..{high}, got {value!r}")
    return value


def check_channels(where: str, name: str, value: object) -> int:
    if isinstance(value, bool) or value not in (1, 3):
        raise DataError(f"{where}: {name} must be 1 (grey) or 3 (RGB), got {value!r}")
    return int(value)


def check_scaling(where: str, preprocess: object, load_size: object, crop_size: object) -> None:
    """The reference's ``preprocess`` mode and sizes (``crop_size`` at most ``load_size``)."""
    if preprocess not in PREPROCESS:
        raise DataError(
            f"{where}: preprocess must be one of {', '.join(PREPROCESS)}, got {preprocess!r}"
        )
    load = check_int(where, "load_size", load_size, 1, MAX_IMAGE_SIZE)
    crop = check_int(where, "crop_size", crop_size, 1, MAX_IMAGE_SIZE)
    if crop > load:
        raise DataError(f"{where}: crop_size ({crop}) must not exceed load_size ({load})")


def data_root(root: object, where: str, needs: str, holds: str) -> Path:
    """``data.root`` as a folder that exists, else one line: unset (``{where} needs a folder
    holding {needs}``), a file (``must hold {holds}``) or missing."""
    if not isinstance(root, (str, Path)) or str(root) == "":
        raise DataError(f"{where} needs a folder holding {needs}: set data.root=DIR")
    base = Path(root).expanduser()
    if base.exists() and not base.is_dir():
        raise DataError(f"not a folder: {base} (data.root must hold {holds})")
    if not base.is_dir():
        raise DataError(f"image folder not found: {base}")
    return base


def _stem(rel: str) -> str:
    return str(PurePosixPath(rel).with_suffix(""))


class ImageFiles:
    """The image files of one folder (searched recursively, sorted, the first ``limit``),
    header-checked: with ``skip_bad`` the unreadable ones are left out (``skipped``), and
    :meth:`load` passes over files that fail only when decoded."""

    def __init__(self, folder: Path, limit: int, skip_bad: bool, where: str, size: int = 0) -> None:
        if not folder.is_dir():
            raise DataError(f"{where}: domain folder not found: {folder}")
        rel = list_images(folder, READ_EXTENSIONS, where, "convert them to read them")
        if not rel:
            raise DataError(
                f"no images in {folder} (looked recursively for {', '.join(READ_EXTENSIONS)} files)"
            )
        if limit:
            rel = rel[:limit]
        paths = [folder / r for r in rel]
        ok = readable_images(paths, folder, skip_bad, size=size)
        self.folder = folder
        self.skip_bad = skip_bad
        self.rel: list[str] = [r for i, r in enumerate(rel) if i in ok]
        #: each file's ``(w, h)`` as its header said, in the order of ``rel``
        self.sizes: list[tuple[int, int]] = [ok[i] for i in range(len(rel)) if i in ok]
        self.skipped: list[str] = [str(folder / r) for i, r in enumerate(rel) if i not in ok]
        self.bad: set[int] = set()

    @property
    def paths(self) -> list[str]:
        return [str(self.folder / r) for r in self.rel]

    def __len__(self) -> int:
        return len(self.rel)

    def load(
        self, index: int, read: Callable[[str], T], on_skip: Callable[[DataError], None]
    ) -> tuple[T, str]:
        """``read(path)`` of file ``index`` and its path; with ``skip_bad``, of the next file
        that reads (``on_skip`` told of each that does not, which is left out from then on)."""

        def read_path(i: int) -> tuple[T, str]:
            path = str(self.folder / self.rel[i])
            return read(path), path

        def skip(i: int, exc: DataError) -> None:
            self.skipped.append(str(self.folder / self.rel[i]))
            on_skip(exc)

        return read_or_next(
            index, len(self.rel), read_path, self.skip_bad, self.bad, skip, self.folder
        )


class UnpairedImageDataset(SkipWarnings, Dataset):
    """Two folders of images, A and B, for unpaired translation; items are dicts
    ``{"A": (C_a, S, S), "B": (C_b, S, S), "A_path": str, "B_path": str}`` in [-1, 1]."""

    num_classes = 0

    def __init__(
        self,
        root: str | Path = "",
        split: str = "train",
        load_size: int = 286,
        crop_size: int = 256,
        channels_a: int = 3,
        channels_b: int = 3,
        flip: bool = True,
        serial_batches: bool = False,
        skip_bad: bool = False,
        limit: int = 0,
        preprocess: str = "resize_and_crop",
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"{_WHERE}: unknown split {split!r}; splits: {', '.join(SPLITS)}")
        check_scaling(_WHERE, preprocess, load_size, crop_size)
        self.preprocess, self.load_size, self.crop_size = preprocess, load_size, crop_size
        self.channels_a = check_channels(_WHERE, "channels_a", channels_a)
        self.channels_b = check_channels(_WHERE, "channels_b", channels_b)
        check_limit(limit, _WHERE)
        holds = "trainA/ and trainB/"
        base = data_root(root, _WHERE, f"{holds} (testA/, testB/)", holds)
        self.root = base
        self.split = split
        self.train = split == "train"
        self.flip = bool(flip) and self.train
        self.serial_batches = bool(serial_batches) or not self.train
        self.skip_bad = bool(skip_bad)
        self.rng: random.Random | None = None
        self.class_names: list[str] = []
        self._warned_lazy = False
        # the size images are resized to (load_size, or the test split's crop_size): from a
        # 100 px image, a 286 px resize is blurred; "crop" resizes nothing
        size = 0 if preprocess == "crop" else (load_size if self.train else crop_size)
        self.domain_a = ImageFiles(base / f"{split}A", limit, self.skip_bad, _WHERE, size)
        self.domain_b = ImageFiles(base / f"{split}B", limit, self.skip_bad, _WHERE, size)
        if preprocess == "crop":  # now, not at the step that first draws a small one
            for domain in (self.domain_a, self.domain_b):
                _check_crop(domain, self.crop_size)
        self.paired = False
        if not self.train:
            stems_a = [_stem(r) for r in self.domain_a.rel]
            by_stem_b = {_stem(r): r for r in self.domain_b.rel}
            if len(set(stems_a)) == len(stems_a) == len(by_stem_b) == len(
                self.domain_b.rel
            ) and set(stems_a) == set(by_stem_b):
                self.paired = True
                sizes_b = dict(zip(self.domain_b.rel, self.domain_b.sizes, strict=True))
                self.domain_b.rel = [by_stem_b[s] for s in stems_a]  # B in A's order
                self.domain_b.sizes = [sizes_b[r] for r in self.domain_b.rel]

    # -- the dataset contract ------------------------------------------------------------
    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.channels_a, self.crop_size, self.crop_size

    @property
    def image_shape_b(self) -> tuple[int, int, int]:
        return self.channels_b, self.crop_size, self.crop_size

    @property
    def paths_a(self) -> list[str]:
        return self.domain_a.paths

    @property
    def paths_b(self) -> list[str]:
        return self.domain_b.paths

    @property
    def skipped(self) -> list[str]:
        return self.domain_a.skipped + self.domain_b.skipped

    def __len__(self) -> int:
        return max(len(self.domain_a), len(self.domain_b))

    def transform(self, path: str, channels: int) -> torch.Tensor:
        """The reference's ``preprocess`` (+ flip) of one file, as a tensor in [-1, 1]."""
        rng = self.rng or random
        # The test split as the reference's test.py, whose load_size defaults to crop_size:
        # the whole image resized to crop_size, no crop (nothing cut off the borders).
        size = self.load_size if self.train else self.crop_size
        if self.preprocess == "crop":
            img = load_image(path, channels)
            if min(img.size) < self.crop_size:
                w, h = img.size
                raise DataError(
                    f"{path} is {w}x{h}, smaller than crop_size {self.crop_size} "
                    "(preprocess=crop does not resize)"
                )
        elif self.preprocess == "scale_width_and_crop":
            # at the training scale in both splits (the test split's centre crop of it)
            size = self.load_size
            img = scale_width(load_image(path, channels, draft_size=size), size, self.crop_size)
        else:
            img = resize(load_image(path, channels, draft_size=size), size, BICUBIC)
        if self.train:
            img = random_crop(img, self.crop_size, self.rng)  # None: the global stream
        elif self.preprocess != "resize_and_crop":
            img = center_crop(img, self.crop_size)
        if self.flip and rng.random() < 0.5:
            img = hflip(img)
        return to_tensor(img)

    def _load(self, domain: ImageFiles, index: int, channels: int) -> tuple[torch.Tensor, str]:
        return domain.load(index, lambda path: self.transform(path, channels), self._skipping)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        size_a, size_b = len(self.domain_a), len(self.domain_b)
        if self.serial_batches:
            index_b = index % size_b
        else:
            index_b = (self.rng or random).randint(0, size_b - 1)
        a, path_a = self._load(self.domain_a, index % size_a, self.channels_a)
        b, path_b = self._load(self.domain_b, index_b, self.channels_b)
        return {"A": a, "B": b, "A_path": path_a, "B_path": path_b}

    def __repr__(self) -> str:
        ca, h, w = self.image_shape
        return (
            f"UnpairedImageDataset({len(self.domain_a)} A {ca}x{h}x{w}, "
            f"{len(self.domain_b)} B {self.channels_b}x{h}x{w}, {self.split} split of "
            f"{self.root}{', paired' if self.paired else ''})"
        )


def _check_crop(domain: ImageFiles, crop_size: int) -> None:
    """``preprocess=crop`` takes crops of the images as they are: each must hold one."""
    small = [(r, s) for r, s in zip(domain.rel, domain.sizes, strict=True) if min(s) < crop_size]
    if small:
        w, h = small[0][1]
        raise DataError(
            f"{len(small)} image(s) in {domain.folder} are smaller than crop_size {crop_size} "
            f"(first: {small[0][0]}, {w}x{h}); preprocess=crop does not resize: use "
            "resize_and_crop or scale_width_and_crop, or a smaller crop_size"
        )


#: The dataset's factory (the class itself: its parameters are the factory's).
build_unpaired = UnpairedImageDataset
