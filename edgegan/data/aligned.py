"""Paired image folders for pix2pix: ``root/train/`` (``val/``, ``test/``), A and B side by side.

The layout of the public pix2pix datasets (facades, maps, edges2shoes, ...), read as the
reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix, ``data/aligned_dataset.py``
and ``get_params``/``get_transform`` of ``data/base_dataset.py``) reads it:

- each file of ``root/<split>/`` holds one pair: the A image on the left half and the B image
  on the right half (``2w x h`` for two ``w x h`` images); ``direction=BtoA`` (the reference's
  ``--direction``) swaps them, so item ``"A"`` is always the generator's input and
  ``channels_a`` its channels; the folder is searched recursively, paths sorted; ``limit``
  (the reference's ``max_dataset_size``) keeps the first ``limit`` files;
- the file is split into its halves first, then both are transformed with the same
  parameters (the reference's ``get_params``, drawn once per item): ``resize_and_crop``
  (``preprocess``, the default) resizes each half to ``load_size x load_size`` (bicubic,
  aspect ratio ignored), crops ``crop_size`` at one random position shared by A and B, and
  flips both left-right or neither (probability 1/2); ``scale_width_and_crop``: width
  ``load_size`` keeping the aspect ratio (height at least ``crop_size``), then the crop;
  ``crop``: the crop of the halves as they are. The draws are the reference's, in its order:
  ``randint`` for x, ``randint`` for y, then ``random() > 0.5`` for the flip, drawn even
  with ``flip=false`` (so the crops do not depend on it). Grey (``channels_*=1``) or RGB per
  half; scaled to [-1, 1].

The ``val`` and ``test`` splits as the reference's ``test.py`` at its defaults: each half
resized whole to ``crop_size`` (its ``load_size`` defaults to ``crop_size``), no crop, no
flip, nothing drawn, so they are deterministic (``scale_width_and_crop``: width
``load_size``, the training scale, then the centre ``crop_size`` square; ``crop``: the centre
square). Every split is paired (``paired=True``): item ``i``'s B is its A's ground truth.

Where it differs: a file of odd width is an error naming it (the reference gives B one
column more than A), found when the dataset is built; with ``preprocess=crop`` so is a half
smaller than ``crop_size`` (the reference would leave it uncropped, a size no batch takes).

Randomness comes from Python's ``random`` module (saved in checkpoints; in DataLoader workers
reseeded for each batch, see :mod:`edgegan.train.stream`), or from ``dataset.rng`` when set to
a ``random.Random`` (which a resumed run does not restore).

Every file's header is checked when the dataset is built; with ``skip_bad=true`` an unreadable
file is left out (or, found only when decoded, replaced by the next good file).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from edgegan.data.base import check_limit
from edgegan.data.folder import SkipWarnings
from edgegan.data.transforms import (
    BICUBIC,
    center_crop,
    convert_channels,
    hflip,
    load_image,
    resize,
    scale_width,
    to_tensor,
)
from edgegan.data.unpaired import ImageFiles, check_channels, check_scaling, data_root
from edgegan.errors import DataError

SPLITS = ("train", "val", "test")
#: ``direction``: the reference's; ``BtoA`` makes the right half the input (item ``"A"``)
DIRECTIONS = ("AtoB", "BtoA")
_WHERE = "dataset 'aligned'"


def split_pair(ab: Image.Image, path: str | Path) -> tuple[Image.Image, Image.Image]:
    """The left and right halves of an image holding a pair side by side (the file
    ``path``'s: an odd width is a :class:`DataError` naming it)."""
    w, h = ab.size
    if w % 2:
        raise DataError(f"{path} is {w}x{h}: an odd width does not split into A and B side by side")
    return ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h))


class AlignedImageDataset(SkipWarnings, Dataset):
    """Image files each holding an A|B pair side by side, for paired translation (pix2pix);
    items are dicts ``{"A": (C_a, S, S), "B": (C_b, S, S), "A_path": str, "B_path": str}`` in
    [-1, 1], both paths the pair's file."""

    num_classes = 0
    #: item ``i``'s B is the translation of its A, in every split
    paired = True

    def __init__(
        self,
        root: str | Path = "",
        split: str = "train",
        load_size: int = 286,
        crop_size: int = 256,
        channels_a: int = 3,
        channels_b: int = 3,
        direction: str = "AtoB",
        flip: bool = True,
        skip_bad: bool = False,
        limit: int = 0,
        preprocess: str = "resize_and_crop",
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"{_WHERE}: unknown split {split!r}; splits: {', '.join(SPLITS)}")
        if direction not in DIRECTIONS:
            raise DataError(
                f"{_WHERE}: direction must be AtoB (A on the left half is the input) or BtoA, "
                f"got {direction!r}"
            )
        check_scaling(_WHERE, preprocess, load_size, crop_size)
        self.preprocess, self.load_size, self.crop_size = preprocess, load_size, crop_size
        self.channels_a = check_channels(_WHERE, "channels_a", channels_a)
        self.channels_b = check_channels(_WHERE, "channels_b", channels_b)
        check_limit(limit, _WHERE)
        needs = "train/ (test/, val/) of A|B images side by side"
        base = data_root(root, _WHERE, needs, "train/ and test/")
        folder = base / split
        if not folder.is_dir():
            present = [f"{s}/" for s in SPLITS if (base / s).is_dir()]
            raise DataError(
                f"{_WHERE}: no {split}/ folder in {base} for the {split} split (it has "
                f"{', '.join(present) if present else 'none of train/, val/, test/'})"
            )
        self.root = base
        self.folder = folder
        self.split = split
        self.train = split == "train"
        self.direction = direction
        #: which domain each file holds on its left and right (``infer --split-pairs``)
        self.halves = "AB" if direction == "AtoB" else "BA"
        self.flip = bool(flip) and self.train
        self.skip_bad = bool(skip_bad)
        self.rng: random.Random | None = None
        self.class_names: list[str] = []
        self._warned_lazy = False
        self.files = ImageFiles(folder, limit, self.skip_bad, _WHERE)
        self._check_sizes()

    def _check_sizes(self) -> None:
        """Every pair splits in two equal halves, and (``preprocess=crop``) each half holds a
        crop: found now, not at the step that first draws the file (headers only)."""
        known = list(zip(self.rel, self.files.sizes, strict=True))
        odd = [(r, s) for r, s in known if s[0] % 2]
        if odd:
            (first, (w, h)) = odd[0]
            raise DataError(
                f"{_WHERE}: {len(odd)} image(s) in {self.folder} have an odd width (first: "
                f"{first}, {w}x{h}); each must hold A and B side by side, two halves of equal "
                "width"
            )
        if self.preprocess == "crop":
            small = [(r, s) for r, s in known if min(s[0] // 2, s[1]) < self.crop_size]
            if small:
                (first, (w, h)) = small[0]
                raise DataError(
                    f"{_WHERE}: {len(small)} image(s) in {self.folder} have halves smaller "
                    f"than crop_size {self.crop_size} (first: {first}, {w}x{h}: halves "
                    f"{w // 2}x{h}); preprocess=crop does not resize: use resize_and_crop or "
                    "scale_width_and_crop, or a smaller crop_size"
                )

    # -- the dataset contract ------------------------------------------------------------
    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.channels_a, self.crop_size, self.crop_size

    @property
    def image_shape_b(self) -> tuple[int, int, int]:
        return self.channels_b, self.crop_size, self.crop_size

    @property
    def rel(self) -> list[str]:
        return self.files.rel

    @property
    def paths(self) -> list[str]:
        return self.files.paths

    @property
    def skipped(self) -> list[str]:
        return self.files.skipped

    def __len__(self) -> int:
        return len(self.files)

    def _scale(self, img: Image.Image) -> Image.Image:
        """The reference's resize of one half (``preprocess``), before the crop."""
        if self.preprocess == "crop":
            if min(img.size) < self.crop_size:
                w, h = img.size
                raise DataError(
                    f"a half is {w}x{h}, smaller than crop_size {self.crop_size} "
                    "(preprocess=crop does not resize)"
                )
            return img
        if self.preprocess == "scale_width_and_crop":  # the training scale in every split
            return scale_width(img, self.load_size, self.crop_size)
        # The test splits as the reference's test.py, whose load_size defaults to crop_size:
        # the whole half resized to crop_size, no crop (nothing cut off the borders).
        return resize(img, self.load_size if self.train else self.crop_size, BICUBIC)

    def transform(self, path: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair in the file ``path``: its halves split, swapped for ``BtoA``, and
        preprocessed alike (one crop position, one flip), as tensors in [-1, 1]."""
        size = self.crop_size
        if self.train or self.preprocess == "scale_width_and_crop":
            size = self.load_size
        grey = self.channels_a == self.channels_b == 1
        # draft: JPEG decoded at a reduced scale whose halves stay >= the size they take
        draft = None if self.preprocess == "crop" else 2 * size
        ab = load_image(path, 1 if grey else 3, draft_size=draft)
        w, h = ab.size
        if w % 2 and draft is not None:  # the draft's scale rounded an even width up
            ab = load_image(path, 1 if grey else 3)
            w, h = ab.size
        left, right = split_pair(ab, path)  # odd: a file whose EXIF orientation turns it
        a, b = (left, right) if self.direction == "AtoB" else (right, left)
        try:
            a = self._scale(convert_channels(a, self.channels_a))
            b = self._scale(convert_channels(b, self.channels_b))
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        if self.train:
            # The reference's get_params, once for both halves (which have one size).
            rng = self.rng or random
            cw, ch = a.size
            x = rng.randint(0, cw - self.crop_size)
            y = rng.randint(0, ch - self.crop_size)
            flip = rng.random() > 0.5
            box = (x, y, x + self.crop_size, y + self.crop_size)
            a, b = a.crop(box), b.crop(box)
            if self.flip and flip:
                a, b = hflip(a), hflip(b)
        elif self.preprocess != "resize_and_crop":
            a, b = center_crop(a, self.crop_size), center_crop(b, self.crop_size)
        return to_tensor(a), to_tensor(b)

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        (a, b), path = self.files.load(index, self.transform, self._skipping)
        return a, b, path

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        a, b, path = self._load(index)
        return {"A": a, "B": b, "A_path": path, "B_path": path}

    def __repr__(self) -> str:
        ca, h, w = self.image_shape
        n = len(self)
        return (
            f"AlignedImageDataset({n} pair{'' if n == 1 else 's'}, A {ca}x{h}x{w}, "
            f"B {self.channels_b}x{h}x{w}, {self.direction}, {self.split} split of {self.root})"
        )


#: The dataset's factory (the class itself: its parameters are the factory's).
build_aligned = AlignedImageDataset
