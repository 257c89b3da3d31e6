"""Reading the IDX format of MNIST and Fashion-MNIST (plain or gzip-compressed)."""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgegan.errors import DataError

# IDX type codes -> numpy dtypes (big-endian where it matters).
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or not) into an array of its stored shape. The header is
    read first and at most the bytes it declares (and one more) after it: a small gzip file
    that expands to gigabytes is refused without being expanded."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _DTYPES:
                raise DataError(f"not an IDX file (bad magic number): {path}")
            ndim = magic[3]
            if ndim == 0:
                raise DataError(
                    f"IDX file {path} declares 0 dimensions (a data set has at least 1)"
                )
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise DataError(f"truncated IDX header: {path}")
            shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
            dtype = np.dtype(_DTYPES[magic[2]])
            expected = math.prod(shape) * dtype.itemsize  # Python ints: no int64 wrap
            raw = _read_at_most(f.read, expected + 1)
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a corrupt gzip stream
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) != expected:
        held = f"more than {expected}" if len(raw) > expected else str(len(raw))
        raise DataError(
            f"IDX file {path} holds {held} bytes of data, expected {expected} for shape {shape}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _read_at_most(read: Callable[[int], bytes], n: int, chunk: int = 64 << 20) -> bytes:
    """Up to ``n`` bytes from ``read``, in chunks: a header declaring petabytes must not
    make one read allocate them."""
    parts, left = [], n
    while left > 0:
        part = read(min(chunk, left))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


# File-name stems of the two splits; the bundled 10k subset uses "train"/"test", the
# original distribution "train"/"t10k".
_SPLIT_STEMS = {"train": ("train",), "test": ("test", "t10k")}


def find_split_files(root: str | Path, split: str) -> tuple[Path, Path]:
    """Locate ``<stem>-images-idx3-ubyte[.gz]`` and ``<stem>-labels-idx1-ubyte[.gz]``."""
    root = Path(root)
    if split not in _SPLIT_STEMS:
        raise DataError(f"unknown split '{split}'; splits: train, test")
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    for stem in _SPLIT_STEMS[split]:
        for sep in ("-", "."):  # "t10k-images-idx3-ubyte" and the "t10k-images.idx3-ubyte" copies
            for suffix in (".gz", ""):
                images = root / f"{stem}-images{sep}idx3-ubyte{suffix}"
                labels = root / f"{stem}-labels{sep}idx1-ubyte{suffix}"
                if images.is_file() and labels.is_file():
                    return images, labels
    stem = _SPLIT_STEMS[split][0]
    raise DataError(
        f"no IDX files for split '{split}' in {root} (expected e.g. "
        f"{stem}-images-idx3-ubyte.gz and {stem}-labels-idx1-ubyte.gz)"
    )


def load_idx_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W)`` uint8 and labels ``(N,)`` int64 of one split of an IDX folder."""
    images_path, labels_path = find_split_files(root, split)
    images = read_idx(images_path)
    labels = _labels(read_idx(labels_path), labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected images of shape (N, H, W), got {images.shape}")
    if labels.shape != (images.shape[0],):
        raise DataError(
            f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images in {root}"
        )
    return _pixels(images, images_path), labels


def _pixels(images: np.ndarray, path: Path) -> np.ndarray:
    """IDX images as uint8: bytes as they are; other types when their values are pixels
    (floats in [0, 1] scaled as the folder loader scales float images, or values in
    0..255). A plain cast made [0, 1] floats black and wrapped 16-bit values modulo 256."""
    if images.dtype == np.uint8:
        return images
    if not images.size:
        return images.astype(np.uint8)
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise DataError(f"{path} holds NaN or infinite pixel values")
    low, high = float(images.min()), float(images.max())
    if images.dtype.kind == "f" and low >= 0 and high <= 1:
        return np.rint(images * 255.0).astype(np.uint8)
    if low < 0 or high > 255:
        raise DataError(
            f"{path} holds {images.dtype} pixel values from {low:g} to {high:g}: IDX images "
            "are read as 0..255 (or floats in [0, 1]); rescale them"
        )
    return np.rint(images).astype(np.uint8)


def _labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """IDX labels as int64; non-integral or negative ones are refused (NaN cast to int64
    became -2**63, reported as a mismatch with class names nobody set)."""
    if labels.dtype.kind == "f" and not (
        np.isfinite(labels).all() and (labels == np.round(labels)).all()
    ):
        raise DataError(f"{path} holds labels that are not whole numbers")
    out = labels.astype(np.int64)
    if out.size and out.min() < 0:
        raise DataError(f"{path} holds a negative label ({out.min()}); classes are 0, 1, ...")
    return out


def bundled_mnist_dir() -> Path:
    """The folder of the 10,000 real MNIST digits shipped inside the package."""
    return Path(__file__).resolve().parent / "assets" / "mnist10k"
