#!/usr/bin/env python3
"""Run an edgegan bundle with NumPy, ONNX Runtime and Pillow only: no edgegan, no torch.

What a deployment needs to reproduce ``edgegan infer BUNDLE --backend onnxruntime`` on a
machine that has only the bundle folder (``pip install numpy onnxruntime pillow``)::

    python run_bundle.py BUNDLE --num 64 --seed 0 --out samples.npz           # a GAN bundle
    python run_bundle.py BUNDLE --num 30 --labels 3,7 --out digits.npz         # conditional
    python run_bundle.py BUNDLE --direction AtoB --input photos/ --out out/   # a cyclegan one
    python run_bundle.py BUNDLE --input facades/ --out out/                   # pix2pix: AtoB

The latents, labels, file names and pixels are edgegan's: the tests (``standalone`` in
tests/test_runtime.py and tests/test_export_cyclegan.py) compare them with ``edgegan infer``
output, running this script where torch and edgegan cannot be imported. Every step below is
documented in docs/deploy.md ("Without edgegan"); read this file as the reference
implementation of that contract.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}


def read_meta(bundle: Path) -> dict:
    """The bundle's ``edgegan.json``."""
    try:
        meta = json.loads((bundle / "edgegan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {bundle} is no readable bundle: {exc}") from None
    if meta.get("format") != 1:  # another layout of the metadata: refuse rather than misread
        raise SystemExit(f"error: bundle format {meta.get('format')!r}; this reader knows 1")
    return meta


def pick_direction(meta: dict, direction: str | None) -> str | None:
    """A translator bundle's direction (the given one, or its only one: a pix2pix bundle's
    AtoB); None for a GAN bundle, whose ``models`` are its precisions."""
    have = meta.get("directions")
    if not have:
        if direction:
            raise SystemExit(f"error: a {meta['task']} bundle samples latents: no --direction")
        return None
    if direction is None:
        if len(have) > 1:
            raise SystemExit(f"error: a {meta['task']} bundle takes --direction ({'|'.join(have)})")
        return have[0]
    if direction not in have:
        raise SystemExit(f"error: the bundle has no {direction} graphs (it has: {', '.join(have)})")
    return direction


def open_graph(
    bundle: Path, meta: dict, precision: str, direction: str | None
) -> ort.InferenceSession:
    """An ONNX Runtime session of one of the bundle's graphs."""
    models = meta["models"][direction] if direction else meta["models"]
    if precision not in models:
        raise SystemExit(f"error: the bundle has no {precision} graph (it has {', '.join(models)})")
    path = bundle / models[precision]["file"]
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # e.g. a graph of a higher --opset than this onnxruntime reads
        raise SystemExit(
            f"error: onnxruntime {ort.__version__} cannot load {path}: {exc}"
        ) from None


def parse_labels(text: str, spec: dict) -> list[int]:
    """``--labels 3,7`` or class names (``Sneaker,bag``: case ignored), as ``edgegan infer``
    reads them: a number is a class number, and one that is also another class's name is
    refused (folders named 1/, 2/, 3/)."""
    names = [str(c) for c in spec.get("class_names") or []]
    out = []
    for item in (v.strip() for v in text.split(",")):
        if not item:
            continue
        try:
            number = int(item)
        except ValueError:
            found = [i for i, n in enumerate(names) if n.lower() == item.lower()]
            if not found:
                known = f" (classes: {', '.join(names)})" if names else ""
                raise SystemExit(f"error: --labels: '{item}' is no class{known}") from None
            out.append(found[0])
            continue
        if str(number) in names and names.index(str(number)) != number:
            raise SystemExit(
                f"error: --labels: {number} is both class number {number} and the class named "
                f"'{number}' (number {names.index(str(number))}); give the number meant"
            )
        out.append(number)
    return out


def to_uint8_nhwc(raw: np.ndarray, value_range: list[float]) -> np.ndarray:
    """float32 NCHW outputs -> uint8 NHWC: clip to the value range, scale, round to nearest."""
    low, high = value_range
    clipped = np.clip(raw.astype(np.float32), low, high)
    scaled = (clipped - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


# -- a GAN: latents (and labels) -> images ---------------------------------------------------
def sample(
    meta: dict, session: ort.InferenceSession, num: int, seed: int, labels: list[int]
) -> dict:
    spec = meta["spec"]
    # One stream per seed, drawn in order: NumPy's default_rng (PCG64) and its float32
    # standard normal. Only NumPy draws these numbers; other languages should read latents
    # from a file rather than re-implement NumPy's sampler.
    z = np.random.default_rng(seed).standard_normal((num, spec["latent_dim"]), dtype=np.float32)
    feed = {"z": z}
    k = int(spec.get("num_classes") or 0)
    if k:
        # The given labels repeated, else 0, 1, ..., K-1, 0, ...; each in [0, K): the graph's
        # Gather does not check, and ONNX Runtime would read -1 as class K-1.
        cycle = np.asarray(labels or range(k), dtype=np.int64)
        if cycle.min() < 0 or cycle.max() >= k:
            raise SystemExit(f"error: labels must be in 0..{k - 1}")
        feed["labels"] = np.resize(cycle, num)
    elif labels:
        raise SystemExit("error: this generator is not class-conditional: no --labels")
    raw = session.run(None, feed)[0]
    out = {"images": to_uint8_nhwc(raw, spec["value_range"]), "raw": raw, "latents": z}
    if k:
        out["labels"] = feed["labels"]
    return out


# -- a cyclegan direction: image -> translated image ---------------------------------------
def read_image(path: Path, channels: int) -> np.ndarray:
    """uint8 (H, W, C) as edgegan reads a file: EXIF orientation applied, transparency put on
    white, 16/32-bit greyscale scaled to 8 bits, floating-point greyscale read as [0, 1] when
    no value exceeds 1 (else 0..255), then Pillow's conversion to L or RGB."""
    with Image.open(path) as im:
        im.load()
        img = ImageOps.exif_transpose(im)
    mode = "L" if channels == 1 else "RGB"
    if img.mode != mode:
        if img.mode == "F":  # e.g. a 32-bit float TIFF
            arr = np.nan_to_num(np.asarray(img, dtype=np.float64), posinf=255.0, neginf=0.0)
            top = 1.0 if arr[arr < 255.0].max(initial=0) <= 1.0 else 255.0
            img = Image.fromarray(np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8))
        if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            arr = np.asarray(img).astype(np.float64)
            top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
            img = Image.fromarray(np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8))
        elif img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
            img.mode == "P" and "transparency" in img.info
        ):
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        img = img.convert(mode)  # RGB -> L: ITU-R 601-2 luma, Pillow's rounding
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def translate(
    meta: dict, session: ort.InferenceSession, direction: str, image: np.ndarray
) -> np.ndarray:
    spec = meta["spec"]
    (inp,) = meta["inputs"][direction]
    low, high = spec["value_range"]
    # uint8 -> the value range, in float32 exactly so (the FP16 graph can round a level
    # differently for another formula)
    x = image.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)
    h, w = x.shape[:2]
    multiple, least = int(spec["size_multiple"]), int(spec.get("min_side", 8))

    def up(n: int) -> int:
        return -(-max(n, least) // multiple) * multiple

    x = np.pad(x, ((0, up(h) - h), (0, up(w) - w), (0, 0)), mode="edge")  # bottom/right
    raw = session.run(None, {inp["name"]: x.transpose(2, 0, 1)[None]})[0]
    return to_uint8_nhwc(raw, spec["value_range"])[0, :h, :w]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--num", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", default="")
    parser.add_argument("--direction", choices=["AtoB", "BtoA"])
    parser.add_argument("--input", type=Path)
    args = parser.parse_args()

    meta = read_meta(args.bundle)
    direction = pick_direction(meta, args.direction)
    session = open_graph(args.bundle, meta, args.precision, direction)
    if direction is not None:  # a cyclegan or pix2pix bundle: one direction's graph
        if args.input is None:
            raise SystemExit(f"error: a {meta['task']} bundle translates --input images")
        channels = meta["inputs"][direction][0]["shape"][1]
        root = args.input if args.input.is_dir() else args.input.parent
        found = args.input.rglob("*") if args.input.is_dir() else [args.input]
        files = sorted(
            p
            for p in found
            if p.suffix.lower() in IMAGE_SUFFIXES
            and p.is_file()
            # hidden files in a folder (macOS' ._x.png) are left out, as edgegan does
            and (p == args.input or not any(s.startswith(".") for s in p.relative_to(root).parts))
        )
        targets = [(args.out / p.relative_to(root)).with_suffix(".png") for p in files]
        # a.jpg and a.png would both write a.png; A.jpg and a.png too where case is ignored
        # (macOS' and Windows' default file systems): compared without case, to be safe
        if len({str(t).lower() for t in targets}) < len(targets):
            raise SystemExit("error: two inputs would be written to one file (a.jpg, a.png)")
        if args.out.resolve().is_relative_to(root.resolve()) and args.input.is_dir():
            raise SystemExit(
                "error: --out lies inside --input: a second run would read the first's"
            )
        for path, dst in zip(files, targets, strict=True):
            out = translate(meta, session, direction, read_image(path, channels))
            dst.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out).save(dst)
        print(f"{len(files)} images -> {args.out}")
    else:
        if args.input is not None:
            raise SystemExit(f"error: a {meta['task']} bundle samples latents: no --input")
        if args.num < 1:
            raise SystemExit(f"error: --num must be at least 1, got {args.num}")
        labels = parse_labels(args.labels, meta["spec"])
        result = sample(meta, session, args.num, args.seed, labels)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.out, **result)
        print(f"{args.num} images -> {args.out}")


if __name__ == "__main__":
    main()
