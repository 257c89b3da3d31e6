"""Image files: which kinds the datasets and ``infer --input`` read, and one warning for the
image files a listing leaves out. No torch here: ``infer --backend onnxruntime`` imports it."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
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


def list_images(
    root: Path,
    extensions: tuple[str, ...] = READ_EXTENSIONS,
    where: str | None = None,
    hint: str = "",
) -> list[str]:
    """Relative POSIX paths of the image files under ``root``, recursively, sorted (regular
    files, or links to them).

    Symlinked folders are followed once (a link cycle is not entered twice), except a link
    to an ancestor of ``root``, which would take in the root's siblings (``trainA/loop -> ..``
    would add trainB to domain A). With ``where`` (what lists them), image files of other
    kinds (``.gif`` when ``extensions`` has none) are not left out silently: one
    :class:`DataWarning` counts them (``hint``: what to do)."""
    found: list[str] = []
    other: dict[str, int] = {}
    seen: set[str] = set()
    top = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen or (real != top and top.startswith(real.rstrip(os.sep) + os.sep)):
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, root)
        if where:
            for ext, n in left_out_kinds(filenames, extensions).items():
                other[ext] = other.get(ext, 0) + n
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in extensions:
                continue
            if not os.path.isfile(os.path.join(dirpath, name)):
                continue  # a FIFO or device named x.png: opening it would wait forever
            rel = name if rel_dir == "." else os.path.join(rel_dir, name)
            found.append(Path(rel).as_posix())
    if where:
        warn_left_out(other, root, where, extensions, hint)
    return sorted(found)


def probe_headers(
    paths: list[Path], what: str = "data", show: bool | None = None
) -> list[tuple[int, int] | str]:
    """The header check of each file (:func:`~edgegan.data.transforms.probe_image`, on
    threads, with a progress bar for large folders, said by ``what``; ``show``: whether to
    show it, None: from :data:`PROBE_PROGRESS_FROM` files on the main process): its
    ``(w, h)`` when fine, else the error message."""
    from edgegan.data.transforms import probe_image
    from edgegan.errors import DataError

    def check(path: Path) -> tuple[int, int] | str:
        try:
            return probe_image(path)
        except DataError as exc:
            return str(exc)

    if len(paths) <= 64:
        return [check(p) for p in paths]
    from edgegan.train.logs import ProgressBar

    # 100k files took 20 s before the first step, silently (ImageNet: minutes): a bar
    if show is None:
        from edgegan.train.distributed import is_main_process

        show = is_main_process()
    show = show and len(paths) >= PROBE_PROGRESS_FROM
    bar = ProgressBar(len(paths), 0, show, what, "image headers checked")
    results: list[tuple[int, int] | str] = []

    def check_all(chunk: list[Path]) -> list[tuple[int, int] | str]:
        return [check(p) for p in chunk]

    # A task per chunk of files: one per file (Executor.map submits them all at once, and a
    # thread pool ignores its chunksize) took 365 MB and twice a plain loop's time for
    # 200,000 files.
    chunks = [paths[i : i + PROBE_CHUNK] for i in range(0, len(paths), PROBE_CHUNK)]
    try:
        # Opening headers is mostly I/O: threads hide the latency of large or network folders.
        with ThreadPoolExecutor(max_workers=min(16, 2 * (os.cpu_count() or 1))) as pool:
            for done in pool.map(check_all, chunks):
                results += done
                bar.update(len(results))
    finally:
        bar.close()
    return results


#: files each thread of :func:`probe_headers` checks at a time
PROBE_CHUNK = 256


#: folders of this many images show a progress bar while their headers are checked
PROBE_PROGRESS_FROM = 10_000


def unreadable_line(errors: list[str], of: str) -> str:
    """The first of the header ``errors`` (of :func:`probe_headers`), with how many of
    ``of`` (e.g. "4 images") there are when more than one: every header was read already,
    and 501 unreadable files read as one."""
    many = f"{len(errors)} of {of} cannot be read; the first: " if len(errors) > 1 else ""
    return many + errors[0]
