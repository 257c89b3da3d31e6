"""Small Pillow/NumPy image helpers: loading, resizing, cropping, tensors and PNG grids.

Convention: model-side images are float ``(C, H, W)`` (or ``(N, C, H, W)``) in [-1, 1];
file-side images are uint8 ``(H, W, C)`` arrays or PIL images. torch is imported inside the
functions that need it, so the grid and PNG helpers also serve torch-free code (ONNX Runtime).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from edgegan.errors import DataError

BICUBIC = Image.Resampling.BICUBIC
BILINEAR = Image.Resampling.BILINEAR

_EXIF_ORIENTATION = 0x0112


def _mode_for(channels: int) -> str:
    if channels == 1:
        return "L"
    if channels == 3:
        return "RGB"
    raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")


def convert_channels(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL image to ``L`` (channels=1) or ``RGB`` (channels=3).

    Transparent images are composited over white; 16/32-bit greyscale is scaled to 8 bits
    (Pillow's own conversion would clip it), and floating-point greyscale (``F``, e.g. a
    32-bit TIFF) is read as [0, 1] when no value exceeds 1, else as 0..255 (Pillow's
    conversion made [0, 1] images black).
    """
    mode = _mode_for(channels)
    if img.mode == mode:
        return img
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), posinf=255.0, neginf=0.0)
        top = 1.0 if arr[arr < 255.0].max(initial=0) <= 1.0 else 255.0  # inf does not decide
        img = Image.fromarray(np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8))
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # In integers, in place: float64 copies took 1.6 GB for one 8000x8000 16-bit scan.
        # (x * 255 + top // 2) // top is rint(x * 255 / top): no x of 0..65535 is a tie.
        arr = np.asarray(img).astype(np.int32)
        top = 65535 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255
        np.clip(arr, 0, top, out=arr)
        arr *= 255
        arr += top // 2
        arr //= top
        img = Image.fromarray(arr.astype(np.uint8))
    elif img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        img.mode == "P" and "transparency" in img.info
    ):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert(mode)


def load_image(path: str | Path, channels: int = 3, draft_size: int | None = None) -> Image.Image:
    """Fully decode the image at ``path`` as ``L`` or ``RGB``, honouring EXIF orientation.

    ``draft_size`` lets JPEG decode at a reduced scale whose sides stay >= ``draft_size``
    (much faster for large photos that are downscaled anyway). Any failure is a
    :class:`DataError` naming the file.
    """
    mode = _mode_for(channels)
    try:
        with Image.open(path) as im:
            if draft_size and im.format == "JPEG":
                im.draft(mode, (draft_size, draft_size))
            im.load()
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
            out = ImageOps.exif_transpose(im) if orientation not in (1, None) else im
            out = convert_channels(out, channels)
            if out is im:  # detach from the file handle closed by the with-block
                out = im.copy()
            return out
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except Exception as exc:  # Pillow raises many types on corrupt files
        raise DataError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None


def probe_image(path: str | Path) -> tuple[int, int]:
    """Cheaply check that ``path`` is an image Pillow can open (header only); its (w, h)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except Exception as exc:
        raise DataError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None
    if w < 1 or h < 1:
        raise DataError(f"image {path} is empty ({w}x{h})")
    return w, h


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def resize_shorter(
    img: Image.Image, size: int, resample: Image.Resampling = BICUBIC
) -> Image.Image:
    """Resize so the shorter side is ``size``, keeping the aspect ratio (antialiased)."""
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    w, h = img.size
    if min(w, h) == size:
        return img
    if w <= h:
        new = (size, max(size, round(h * size / w)))
    else:
        new = (max(size, round(w * size / h)), size)
    # reducing_gap=3 first shrinks by an integer factor when downscaling a lot: fast and
    # visually lossless.
    return img.resize(new, resample, reducing_gap=3.0)


def resize(
    img: Image.Image, size: int | Sequence[int], resample: Image.Resampling = BICUBIC
) -> Image.Image:
    """Resize to exactly ``size`` (int, or (height, width)), ignoring the aspect ratio."""
    h, w = _hw(size)
    if img.size == (w, h):
        return img
    return img.resize((w, h), resample, reducing_gap=3.0)


def scale_width(img: Image.Image, width: int, min_height: int) -> Image.Image:
    """The reference's ``__scale_width``: width ``width``, the aspect ratio kept, the height
    at least ``min_height`` (bicubic)."""
    w, h = img.size
    if w == width and h >= min_height:
        return img
    return img.resize((width, int(max(width * h / w, min_height))), BICUBIC, reducing_gap=3.0)


def center_crop(img: Image.Image, size: int | Sequence[int]) -> Image.Image:
    """Crop the central ``size`` (int, or (height, width)) region."""
    ch, cw = _hw(size)
    w, h = img.size
    if cw > w or ch > h:
        raise ValueError(f"crop {cw}x{ch} is larger than the image {w}x{h}")
    if (w, h) == (cw, ch):
        return img
    left = int(round((w - cw) / 2.0))
    top = int(round((h - ch) / 2.0))
    return img.crop((left, top, left + cw, top + ch))


def random_crop(
    img: Image.Image, size: int | Sequence[int], rng: random.Random | None = None
) -> Image.Image:
    """Crop a ``size`` (int, or (height, width)) region at a uniformly random position."""
    ch, cw = _hw(size)
    w, h = img.size
    if cw > w or ch > h:
        raise ValueError(f"crop {cw}x{ch} is larger than the image {w}x{h}")
    source = rng or random
    left = source.randint(0, w - cw)
    top = source.randint(0, h - ch)
    return img.crop((left, top, left + cw, top + ch))


def hflip(img: Image.Image) -> Image.Image:
    """Mirror left-right."""
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def uint8_to_float(arr: np.ndarray) -> np.ndarray:
    """uint8 values 0..255 -> float32 in [-1, 1] (same shape)."""
    return arr.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0)


def to_tensor(img: Image.Image | np.ndarray) -> Any:
    """A PIL image or uint8 ``(H, W[, C])`` array -> float32 torch tensor ``(C, H, W)`` in
    [-1, 1]."""
    import torch

    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise TypeError(f"to_tensor expects 8-bit images, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(uint8_to_float(arr).transpose(2, 0, 1)))


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "cpu")  # torch, without importing it


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if _is_tensor(x):
        import torch

        x = x.detach()
        if x.dtype.is_floating_point and x.dtype not in (torch.float32, torch.float64):
            x = x.float()  # bf16/fp16 -> fp32 (numpy has no bf16)
        return x.cpu().numpy()
    return np.asarray(x)


def _quantize(x: Any) -> np.ndarray:
    """Float values in [-1, 1] -> uint8 0..255, same layout; NaN -> grey, clipped."""
    if _is_tensor(x):
        import torch

        t = x.detach()
        if t.dtype == torch.uint8:
            return t.cpu().numpy()
        t = torch.nan_to_num(t.float(), nan=0.0, posinf=1.0, neginf=-1.0)
        # Quantize where the tensor lives (a GPU sends 4x fewer bytes back).
        return t.add(1.0).mul_(127.5).clamp_(0.0, 255.0).round_().to(torch.uint8).cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == np.uint8:
        return arr
    arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    arr += 1.0
    arr *= 127.5
    np.clip(arr, 0.0, 255.0, out=arr)
    return np.rint(arr, out=arr).astype(np.uint8)


def to_uint8(x: Any) -> np.ndarray:
    """A float image ``(C, H, W)`` in [-1, 1] (tensor or array; also a batch ``(N, C, H, W)``)
    -> uint8 ``(H, W, C)`` (``(N, H, W, C)``). NaN maps to grey, values are clipped."""
    if getattr(x, "ndim", None) not in (3, 4):
        raise ValueError(
            f"expected (C, H, W) or (N, C, H, W) images, got shape {tuple(getattr(x, 'shape', ()))}"
        )
    return np.ascontiguousarray(np.moveaxis(_quantize(x), -3, -1))


def _is_float(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return False
    if _is_tensor(x):
        return bool(dtype.is_floating_point)
    return np.issubdtype(dtype, np.floating)


def save_png(image: Any, path: str | Path, compress_level: int = 3, fsync: bool = True) -> Path:
    """Write an image as PNG (atomically: a reader never sees a half-written file; ``fsync``
    as :func:`edgegan.fileio.atomic_write` takes it).

    ``image``: a PIL image; a uint8 array ``(H, W)`` or ``(H, W, C)`` (C = 1, 3 or 4); or a
    float tensor/array ``(C, H, W)`` in [-1, 1]. Parent folders are created.
    """
    path = Path(path)
    if isinstance(image, Image.Image):
        img = image
    else:
        arr = to_uint8(image) if _is_float(image) else _as_numpy(image)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.dtype != np.uint8:
            raise ValueError(f"cannot save {arr.dtype} pixels as PNG; use uint8 or float images")
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4)):
            img = Image.fromarray(np.ascontiguousarray(arr))  # L, RGB or RGBA
        else:
            raise ValueError(f"cannot save an image of shape {arr.shape} as PNG")
    from edgegan.fileio import atomic_write

    atomic_write(
        path, lambda f: img.save(f, format="PNG", compress_level=compress_level), fsync=fsync
    )
    return path


def make_grid(images: Any, nrow: int = 8, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile images ``(N, C, H, W)`` in [-1, 1] (a tensor, an array or a list of ``(C, H, W)``)
    into one uint8 ``(H', W', C)`` array: ``nrow`` images per row, ``padding`` pixels between
    and around them, empty cells filled with ``pad_value``."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("make_grid needs at least one image")
        tiles = np.stack([_quantize(im) for im in images])
    else:
        tiles = _quantize(images)
    if tiles.ndim == 3:  # one image
        tiles = tiles[None]
    if tiles.ndim != 4 or tiles.shape[0] == 0:
        raise ValueError(f"make_grid expects (N, C, H, W) images, got shape {tiles.shape}")
    if nrow < 1 or padding < 0:
        raise ValueError(f"bad grid layout: nrow={nrow}, padding={padding}")
    tiles = np.moveaxis(tiles, 1, -1)  # (N, H, W, C)
    n, h, w, c = tiles.shape
    ncol = min(nrow, n)
    rows = -(-n // ncol)
    p = padding
    # Pad each tile bottom/right, lay the tiles out by reshaping, then pad the top/left edge.
    cells = np.full((rows * ncol, h + p, w + p, c), pad_value, dtype=np.uint8)
    cells[:n, :h, :w] = tiles
    grid = cells.reshape(rows, ncol, h + p, w + p, c).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * (h + p), ncol * (w + p), c)
    out = np.full((grid.shape[0] + p, grid.shape[1] + p, c), pad_value, dtype=np.uint8)
    out[p:, p:] = grid
    return out
