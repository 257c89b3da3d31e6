"""A folder of image files, read lazily: recursive, sorted, optionally labelled by subfolder.

Layout rules (``root`` is ``data.root``):

- if ``root`` has a ``train/`` or ``test/`` subfolder, the split's subfolder is used (a split
  that is missing falls back to the other one, with a warning); otherwise ``root`` serves
  every split;
- images are found recursively by extension (case-insensitive); hidden files and folders
  (``.name``) are ignored; paths are sorted, so the order is the same on every machine;
- with ``labels=true``, when no image lies directly in the folder and at least two of its
  immediate subfolders hold images, those subfolders are the classes (sorted by name);
  otherwise the dataset is unlabelled (label -1, ``num_classes`` 0).

Every file's header is checked when the dataset is built (cheap: no pixel decoding); pixels
are decoded when an item is read. An unreadable file is a :class:`DataError` naming it; with
``skip_bad=true`` it is left out instead (or, found only when decoded, replaced by the next
good item), listed in ``skipped`` and reported by one warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch.utils.data import Dataset

from edgegan.data.base import DataWarning, check_image_params, check_limit
from edgegan.data.files import list_images, probe_headers, unreadable_line
from edgegan.data.transforms import (
    BICUBIC,
    center_crop,
    load_image,
    resize_shorter,
    to_tensor,
)
from edgegan.errors import DataError, caller_stacklevel

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SPLITS = ("train", "test")
_WHERE = "dataset 'folder'"


def _extensions(value: object) -> tuple[str, ...]:
    if value is None:
        return IMAGE_EXTENSIONS
    if isinstance(value, str):  # "png,jpg" from a command-line override
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not value:
        raise DataError(f"{_WHERE}: extensions must be a list such as [png, jpg], got {value!r}")
    out = []
    for ext in value:
        ext = str(ext).strip().lower()
        if not ext:
            continue
        out.append(ext if ext.startswith(".") else "." + ext)
    if not out:
        raise DataError(f"{_WHERE}: extensions is empty")
    return tuple(sorted(set(out)))


#: Added to an unreadable file's error when ``skip_bad`` is off.
SKIP_BAD_HINT = "(set data.skip_bad=true to skip unreadable files)"

T = TypeVar("T")


class SkipWarnings:
    """Datasets that skip files failing only when decoded (skip_bad) warn of the first, once
    a dataset. ``_skipping`` is the ``on_skip`` of :meth:`edgegan.data.unpaired.ImageFiles.load`."""

    _warned_lazy = False

    def _warn_skipped(self, exc: DataError) -> None:
        """The warning, once."""
        if not self._warned_lazy:
            self._warned_lazy = True
            warnings.warn(
                f"{exc}; skipping it and any further unreadable image (skip_bad)",
                DataWarning,
                stacklevel=caller_stacklevel(),
            )

    def _skipping(self, exc: DataError) -> None:
        self._warn_skipped(exc)


def read_or_next(
    index: int,
    n: int,
    read: Callable[[int], T],
    skip_bad: bool,
    bad: set[int],
    on_skip: Callable[[int, DataError], None],
    folder: Path,
) -> T:
    """``read(index)`` of a dataset's ``n`` files. Without ``skip_bad`` its error (pixels
    that fail only when decoded, mid-training) says how to skip such files; with it, the
    read of the next file that reads, wrapping around: each that fails goes into ``bad``
    (never read again) and to ``on_skip(i, error)``."""
    if not skip_bad:
        try:
            return read(index)
        except DataError as exc:
            raise DataError(f"{exc} {SKIP_BAD_HINT}") from None
    for step in range(n):
        i = (index + step) % n
        if i in bad:
            continue
        try:
            return read(i)
        except DataError as exc:
            bad.add(i)
            on_skip(i, exc)
    raise DataError(f"no readable images left in {folder}")


def readable_images(
    paths: list[Path], folder: Path, skip_bad: bool, size: int = 0
) -> dict[int, tuple[int, int]]:
    """The indices of ``paths`` whose headers read, checked once when a dataset is built,
    each with its image's ``(w, h)`` (for checks of sizes that would read them again).

    An unreadable file is an error naming it, unless ``skip_bad``: then it is left out with one
    warning for the folder. No readable file at all is always an error. Images whose shorter
    side is under half the ``size`` they are scaled to get one warning: they train blurred.
    """
    from PIL import Image

    ok: dict[int, tuple[int, int]] = {}
    skipped, small, huge = [], [], []
    bad: list[str] = []  # the errors, without skip_bad
    limit = Image.MAX_IMAGE_PIXELS
    for i, (path, probed) in enumerate(zip(paths, probe_headers(paths), strict=True)):
        if not isinstance(probed, str):  # its size: the header reads
            ok[i] = probed
            if 2 * min(probed) < size:
                small.append((min(probed), probed, path))
            if limit and probed[0] * probed[1] > limit:
                huge.append((probed[0] * probed[1], probed, path))
        elif skip_bad:
            skipped.append(str(path))
        else:
            bad.append(probed)
    if bad:
        raise DataError(f"{unreadable_line(bad, f'{len(paths)} images')} {SKIP_BAD_HINT}")
    if huge:  # Pillow's own warning of each names no file
        _, (w, h), path = max(huge)
        warnings.warn(
            f"{len(huge)} image(s) in {folder} are over Pillow's limit of {limit:,} pixels "
            f"(largest {w}x{h}: {path}): each is decoded whole before it is resized (slow, "
            "and memory in every DataLoader worker); shrink them once, beforehand",
            DataWarning,
            stacklevel=caller_stacklevel(),
        )
    if not ok:
        raise DataError(f"no readable images in {folder} ({len(skipped)} unreadable)")
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} unreadable image(s) in {folder} (first: {skipped[0]})",
            DataWarning,
            stacklevel=caller_stacklevel(),
        )
    if small:
        _, (w, h), path = min(small)
        warnings.warn(
            f"{len(small)} of {len(ok)} images in {folder} are upscaled more than 2x to "
            f"{size} px (shorter side under {size // 2 + size % 2}; smallest {w}x{h}: {path}): "
            "they train blurred (a smaller image size suits them)",
            DataWarning,
            stacklevel=caller_stacklevel(),
        )
    return ok


def _warn_beside_splits(root: Path, present: list[str]) -> None:
    """A ``train/`` or ``test/`` folder makes the split folders the data: folders beside them
    (the other classes, when one class is called ``train``) and images in ``root`` itself are
    left out, which dropped most of the data and its classes without a word."""
    try:
        entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
    except OSError:
        return
    # a validation split beside train/ and test/ is a layout of its own, not lost classes
    other_splits = {"val", "valid", "validation"}
    folders = sorted(
        e.name for e in entries if e.is_dir() and e.name not in SPLITS + tuple(other_splits)
    )
    images = [e for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)]
    if not folders and not images:
        return
    left = [f"folder{'s' if len(folders) > 1 else ''} {', '.join(folders)}"] if folders else []
    left += [f"{len(images)} image{'s' if len(images) > 1 else ''} in it"] if images else []
    one = (len(folders) == 1 and not images) or (not folders and len(images) == 1)
    splits = " and ".join(f"{s}/" for s in present)
    warnings.warn(
        f"{root} has {splits}, which hold the splits: its {' and '.join(left)} "
        f"{'is' if one else 'are'} not read (a class folder named {present[0]!r}? rename it; "
        "SPLIT/CLASS/ is the layout of labelled splits)",
        DataWarning,
        stacklevel=caller_stacklevel(),
    )


def _split_folder(root: Path, split: str) -> Path:
    if split not in SPLITS:
        raise DataError(f"{_WHERE}: unknown split {split!r}; splits: {', '.join(SPLITS)}")
    present = [s for s in SPLITS if (root / s).is_dir()]
    if not present:
        return root
    _warn_beside_splits(root, present)
    if split in present:
        return root / split
    other = present[0]
    warnings.warn(
        f"{root} has no '{split}' folder; using '{other}' for the {split} split",
        DataWarning,
        stacklevel=caller_stacklevel(),
    )
    return root / other


class ImageFolderDataset(SkipWarnings, Dataset):
    """Images under a folder, decoded, resized and center-cropped on access."""

    def __init__(
        self,
        root: str | Path = "",
        split: str = "train",
        image_size: int = 64,
        channels: int = 3,
        labels: bool = True,
        skip_bad: bool = False,
        extensions: list | tuple | str | None = None,
        limit: int = 0,
    ) -> None:
        check_image_params(image_size, channels, _WHERE)
        check_limit(limit, _WHERE)
        if not isinstance(root, (str, Path)) or str(root) == "":
            raise DataError(f"{_WHERE} needs a folder of images: set data.root=DIR")
        base = Path(root).expanduser()
        if not base.exists():
            raise DataError(f"image folder not found: {base}")
        if not base.is_dir():
            raise DataError(f"not a folder: {base} (data.root must be a folder of images)")
        folder = _split_folder(base, split)
        exts = _extensions(extensions)
        # Only with the default kinds: a narrowed data.extensions leaves the rest out on purpose.
        where = _WHERE if extensions is None else None
        rel_paths = list_images(folder, exts, where, "data.extensions adds kinds")
        if not rel_paths:
            raise DataError(
                f"no images in {folder} (looked recursively for {', '.join(exts)} files)"
            )

        top = [p.split("/", 1)[0] if "/" in p else None for p in rel_paths]
        classes = sorted({t for t in top if t is not None})
        labelled = bool(labels) and None not in top and len(classes) >= 2
        if labels and not labelled and None in top and classes:
            warnings.warn(
                f"{folder} holds images both directly and in subfolders: treating it as "
                "unlabelled (put every image in a class subfolder for labels)",
                DataWarning,
                stacklevel=caller_stacklevel(),
            )
        index: dict[str | None, int] = {c: i for i, c in enumerate(classes)}
        self.class_names: list[str] = classes if labelled else []
        self.root = folder
        self.split = split
        self.image_size = image_size
        self.channels = channels
        self.skip_bad = bool(skip_bad)
        self.skipped: list[str] = []
        self._bad: set[int] = set()
        self._warned_lazy = False

        limited = bool(limit) and limit < len(rel_paths)
        if limited:
            # Evenly spaced over the sorted files, so each class (subfolder) keeps its share:
            # the first N held the first classes alone (a conditional run then learnt one
            # class of its ten labels).
            keep = [i * len(rel_paths) // limit for i in range(limit)]
            rel_paths, top = [rel_paths[i] for i in keep], [top[i] for i in keep]
        paths = [folder / p for p in rel_paths]
        ok = list(readable_images(paths, folder, self.skip_bad, size=image_size))
        kept = set(ok)
        self.skipped = [str(p) for i, p in enumerate(paths) if i not in kept]
        self.samples = [(str(paths[i]), index[top[i]] if labelled else -1) for i in ok]
        if labelled:
            held = {label for _, label in self.samples}
            empty = [c for c in classes if index[c] not in held]
            if empty:
                why = [f"data.limit={limit}"] if limited else []
                why += ["unreadable files skipped: skip_bad"] if self.skipped else []
                warnings.warn(
                    f"{folder}: class{'es' if len(empty) > 1 else ''} {', '.join(empty)} "
                    f"{'hold' if len(empty) > 1 else 'holds'} no image that is read "
                    f"({' or '.join(why) or 'none left'}): "
                    f"{'their labels train' if len(empty) > 1 else 'its label trains'} on "
                    "nothing (raise data.limit, or mend or remove the folder)",
                    DataWarning,
                    stacklevel=caller_stacklevel(),
                )

    # -- the dataset contract ------------------------------------------------------------
    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.channels, self.image_size, self.image_size

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def paths(self) -> list[str]:
        return [p for p, _ in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> torch.Tensor:
        """Decode, resize (shorter side, bicubic, antialiased), center-crop, scale to [-1, 1]."""
        path, _ = self.samples[index]
        img = load_image(path, self.channels, draft_size=self.image_size)
        img = center_crop(resize_shorter(img, self.image_size, BICUBIC), self.image_size)
        return to_tensor(img)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        n = len(self.samples)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")

        def read(i: int) -> tuple[torch.Tensor, int]:
            return self.load(i), self.samples[i][1]

        return read_or_next(index, n, read, self.skip_bad, self._bad, self._skip, self.root)

    def _skip(self, i: int, exc: DataError) -> None:
        self.skipped.append(self.samples[i][0])
        self._warn_skipped(exc)

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        return (
            f"ImageFolderDataset({len(self)} images {c}x{h}x{w}, {self.num_classes} classes, "
            f"{self.split} split of {self.root})"
        )


#: The dataset's factory (the class itself: its parameters are the factory's).
build_folder = ImageFolderDataset
