"""Image files: which kinds the datasets and ``infer --input`` read, and one warning for the
image files a listing leaves out. No torch here: ``infer --backend onnxruntime`` imports it."""

from __future__ import annotations

import warnings
from pathlib import Path

from edgegan.errors import caller_stacklevel


class DataWarning(UserWarning):
    """Something in a dataset was skipped or adjusted (unreadable files, a missing split)."""


#: Extensions of image files Pillow reads, to say which ones a listing leaves out.
KNOWN_IMAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jpe .jfif .bmp .webp .gif .apng .avif .tif .tiff .ppm .pgm .pbm .pnm"
    " .tga .jp2 .ico".split()
)


#: What ``infer --input``, ``eval`` and the unpaired dataset read from a folder of images:
#: the reference CycleGAN's kinds (png, jpg, jpeg, ppm, bmp, tif, tiff) and webp.
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
        stacklevel=caller_stacklevel(),
    )


def pick_images(files: list[Path], root: str | Path, where: str, hint: str) -> list[Path]:
    """The ``files`` (existing files under ``root``) of a kind in :data:`READ_EXTENSIONS`,
    sorted, and one :class:`DataWarning` for the image files of other kinds among them.
    Hidden files and those in hidden folders are left out, as the folder dataset does: macOS
    writes a ``._x.png`` of metadata beside each image on FAT and network disks."""
    files = [p for p in files if not _hidden(p, root)]
    kinds = left_out_kinds([p.name for p in files], READ_EXTENSIONS)
    warn_left_out(kinds, root, where, READ_EXTENSIONS, hint)
    return sorted(p for p in files if p.suffix.lower() in READ_EXTENSIONS)


def _hidden(path: Path, root: str | Path) -> bool:
    rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    return any(part.startswith(".") for part in rel.parts)
