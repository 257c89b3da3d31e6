"""Image files: which kinds the datasets and ``infer --input`` read, and one warning for the
image files a listing leaves out. No torch here: ``infer --backend onnxruntime`` imports it."""

from __future__ import annotations

import warnings
from pathlib import Path


class DataWarning(UserWarning):
    """Something in a dataset was skipped or adjusted (unreadable files, a missing split)."""


#: Extensions of image files Pillow reads, to say which ones a listing leaves out.
KNOWN_IMAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jpe .jfif .bmp .webp .gif .apng .avif .tif .tiff .ppm .pgm .pbm .pnm"
    " .tga .jp2 .ico".split()
)


#: What ``infer --input``, ``eval`` and the unpaired dataset read from a folder of images.
READ_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
)


def left_out_kinds(names: list[str], extensions: tuple[str, ...]) -> dict[str, int]:
    """How many of ``names`` (file names) are images of a kind not in ``extensions``, by
    extension; hidden files are not counted."""
    counts: dict[str, int] = {}
    for name in names:
        ext = Path(name).suffix.lower()
        if not name.startswith(".") and ext in KNOWN_IMAGE_EXTENSIONS and ext not in extensions:
            counts[ext] = counts.get(ext, 0) + 1
    return counts


def warn_left_out(
    counts: dict[str, int],
    root: str | Path,
    where: str,
    extensions: tuple[str, ...],
    stacklevel: int,
    hint: str = "",
) -> None:
    """One :class:`DataWarning` for the image files under ``root`` left out for their kind."""
    if not counts:
        return
    kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(counts.items()))
    warnings.warn(
        f"{where}: left out {kinds} under {root} (it reads {', '.join(extensions)})"
        + (f"; {hint}" if hint else ""),
        DataWarning,
        stacklevel=stacklevel + 1,
    )
