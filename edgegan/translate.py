"""Translating images with a CycleGAN generator (``edgegan infer TARGET --direction AtoB
--input PATH``), on any backend.

Pre- and post-processing live here and are shared by every backend (torch on a run, ONNX
Runtime and TensorRT on a bundle), so they are identical by construction: an image is read as
uint8 with the generator's input channels, mapped onto the spec's value range, padded by edge
replication to a multiple of ``size_multiple``, run, cropped back to its size, clipped and
rounded to uint8. Each output has its input's size (or, with ``resize``, the size its input
was resized to first) and relative file name (as PNG). A backend only maps the named input
``image`` to the raw ``translated`` array (:mod:`edgegan.runtime`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgegan.data.files import READ_EXTENSIONS, DataWarning, list_images
from edgegan.errors import DataError, EdgeganError, caller_stacklevel
from edgegan.export.signature import (
    DIRECTIONS,
    IMAGE,
    MIN_SIDE,
    NETWORKS,
    SOURCES,
    TASK_DIRECTIONS,
    check_direction,
    direction_spec,
    is_translation_task,
    is_translator,
    only_direction,
    padded_size,
    task_directions,
)
from edgegan.fileio import ignores_case, same_path
from edgegan.sampling import (
    RunGenerator,
    check_finite_outputs,
    postprocess,
    to_uint8_nhwc,
    value_range,
)

__all__ = ["DIRECTIONS", "load_translator", "preprocess", "translate", "translate_arrays"]


def _beside(image: np.ndarray, translated: np.ndarray, *more: Any) -> np.ndarray:
    """``image``, its ``translated`` (and ``more`` images: a pair's other half) side by side,
    in the translation's channels (a grey input beside an RGB output is repeated; an RGB one
    beside grey is made grey, as Pillow's ``L``)."""
    from PIL import Image

    from edgegan.data.transforms import convert_channels

    right = translated[:, :, None] if translated.ndim == 2 else translated

    def like_right(img: Any) -> np.ndarray:
        a = np.asarray(img)
        a = a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a
        a = np.asarray(convert_channels(Image.fromarray(a), right.shape[2]))
        return a[:, :, None] if a.ndim == 2 else a

    return np.concatenate([like_right(image), right, *map(like_right, more)], axis=1)


def _pair_halves(path: Path, spec: dict[str, Any]) -> tuple[Any, Any]:
    """The half of a pair file (A and B side by side, as the ``aligned`` dataset reads them)
    that the translation reads, in its input channels, and the other half (the truth), in its
    output channels. Which half is which: the run's ``halves`` (``BA`` after training with
    ``data.direction=BtoA``), else A on the left."""
    from edgegan.data.aligned import split_pair
    from edgegan.data.transforms import convert_channels, load_image

    c_in, c_out = int(spec["channels_in"]), int(spec["channels_out"])
    left, right = split_pair(load_image(path, 1 if c_in == c_out == 1 else 3), path)
    halves = spec.get("halves") or "AB"
    source, truth = (left, right) if halves[0] == SOURCES[spec["direction"]] else (right, left)
    return convert_channels(source, c_in), convert_channels(truth, c_out)


#: ``--resize``'s largest shorter side: 8192x8192 is 67 M pixels, gigabytes through a ResNet-9
MAX_RESIZE = 8192


def _scaling(resize: int | str | None, spec: dict[str, Any]) -> tuple[str, int] | None:
    """``translate``'s ``resize`` as (``"shorter"`` or ``"width"``, pixels); None: native.
    ``"train"`` is the scale of the training images: ``crop_size`` on the shorter side for
    ``resize_and_crop``, width ``load_size`` for ``scale_width_and_crop``, native for
    ``crop`` (as the run's ``data.preprocess`` recorded it; a run without: the first)."""
    if resize is None:
        return None
    if resize == "train":
        mode = spec.get("preprocess", "resize_and_crop")
        if mode == "crop":
            return None
        if mode == "scale_width_and_crop" and spec.get("load_size"):
            return "width", int(spec["load_size"])
        return "shorter", int(spec["image_size"])
    try:
        side = int(resize)
    except (TypeError, ValueError):
        side = 0
    if side < 1 or str(resize).strip() not in (str(side), f"+{side}"):
        raise EdgeganError(f"--resize takes a size in pixels or 'train', got '{resize}'")
    if side > MAX_RESIZE:  # 100000 px ran the machine out of memory before a word
        raise EdgeganError(f"--resize takes at most {MAX_RESIZE} px (the shorter side), got {side}")
    return "shorter", side


def _rescale(img: Any, how: tuple[str, int]) -> Any:
    from edgegan.data.transforms import BICUBIC, resize_shorter, scale_width

    kind, size = how
    return scale_width(img, size, 1) if kind == "width" else resize_shorter(img, size, BICUBIC)


def _warn_if_far_larger(images: list[Any], spec: dict[str, Any]) -> bool:
    """Warn (once: returns True) when images are over twice the training scale (their
    shorter side, or their width after ``scale_width_and_crop``): the generator then sees
    textures at another scale than it learnt. Not for ``preprocess=crop`` (native scale)."""
    import warnings

    how = _scaling("train", spec)
    if how is None:
        return False
    kind, trained = how
    largest = max(img.size[0] if kind == "width" else min(img.size) for img in images)
    if largest <= 2 * trained:
        return False
    side = "in width" if kind == "width" else "on their shorter side"
    warnings.warn(
        f"translating at native size: images up to {largest} px {side}, for a generator "
        f"trained at {trained} px; --resize train (or --resize N) translates at the "
        "training scale",
        stacklevel=caller_stacklevel(),
    )
    return True


def load_translator(
    run_dir: str | Path,
    direction: str,
    device: str = "cpu",
    state: dict[str, Any] | None = None,
    checkpoint: str | None = None,
) -> RunGenerator:
    """The generator of one direction of a cyclegan or pix2pix run in eval mode (EMA weights
    for A->B when the run kept them: the trainer averages the sampled network, ``g_ab``). Its
    ``spec`` is the direction's (:func:`edgegan.export.signature.direction_spec`).
    ``checkpoint``: one of the run's ``checkpoints/`` by name (None: ``last``).
    ``state``: the run's checkpoint when the caller has already loaded it."""

    from edgegan.config import saved_config
    from edgegan.sampling import rebuild_generator
    from edgegan.train.checkpoint import load_checkpoint
    from edgegan.train.device import resolve_device
    from edgegan.train.logs import CHECKPOINT, checkpoint_file, is_run_dir

    target = resolve_device(device, "device")  # before loading anything

    check_direction(direction)
    run_dir = Path(run_dir)
    if state is None and not is_run_dir(run_dir):
        raise EdgeganError(f"run directory not found (no {CHECKPOINT}): {run_dir}")
    path = checkpoint_file(run_dir, checkpoint)
    if state is None:
        state = load_checkpoint(path, map_location="cpu")
    spec = state["spec"]
    if not is_translation_task(spec.get("task")):
        raise EdgeganError(
            f"{run_dir} is a '{spec.get('task')}' run; --direction needs a cyclegan or pix2pix run"
        )
    task_directions(spec["task"], [direction])  # BtoA of a pix2pix run: one line
    dspec = direction_spec(spec, direction)
    config = saved_config(state["config"], str(path), state.get("edgegan_version"))
    g = config.model.generator
    if "halves" not in dspec:  # a run from before specs recorded it: its data section says
        data = config.data
        swapped = data.name == "aligned" and data.params.get("direction") == "BtoA"
        dspec["halves"] = "BA" if swapped else "AB"
    context = {
        "channels": dspec["channels_in"],
        "channels_out": dspec["channels_out"],
        "image_size": dspec["image_size"],
    }
    weights, _ = translator_weights(state, direction)
    module = rebuild_generator(state, g, context, weights)
    module.to(target).eval()
    dspec["size_multiple"] = int(getattr(module, "size_multiple", dspec["size_multiple"]))
    return RunGenerator(module, dspec, run_dir, int(state["step"]))


def translator_weights(state: dict[str, Any], direction: str) -> tuple[dict, str]:
    """The state dict of ``direction``'s generator in a cyclegan or pix2pix checkpoint and
    which it is (``ema`` or ``generator``)."""
    ema = state.get("ema") if direction == "AtoB" else None
    if ema is not None:
        return ema, "ema"
    return state["networks"][NETWORKS[direction]], "generator"


def preprocess(image: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """uint8 ``(H, W)`` or ``(H, W, C)`` -> float32 ``(C, H', W')`` in the value range, padded
    (edge replication, bottom and right) to multiples of ``size_multiple``."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    low, high = value_range(spec)
    x = arr.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)
    h, w = x.shape[:2]
    least = int(spec.get("min_side") or MIN_SIDE)  # the bundle's, as a deployment reads it
    ph, pw = padded_size(h, w, int(spec["size_multiple"]), least)
    if (ph, pw) != (h, w):
        x = np.pad(x, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    return np.ascontiguousarray(x.transpose(2, 0, 1))


#: Pixels a batch may hold on the CPU (one image at least): a ResNet-9 generator's activations
#: take about 0.9 GB per megapixel there, and 8 same-size photos of 1024x768 took 6 GB where one
#: at a time took 1 GB, in the same time. 256x256 images still share batches of 16. A GPU
#: gains from larger batches: there ``batch_size`` alone decides.
MAX_BATCH_PIXELS = 2**20


def translate_arrays(
    runner: Any,
    images: list[np.ndarray],
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> list:
    """Translate uint8 images (any sizes) with a runner: uint8 ``(H, W, C_out)`` each.
    Consecutive images of the same padded size share a batch of up to ``batch_size`` (and of
    :data:`MAX_BATCH_PIXELS` on the CPU); ``on_batch(n)`` after each batch, with the images
    done."""
    spec = runner.spec
    if not is_translator(spec):
        raise EdgeganError(
            "this is a GAN generator (latents -> images): it translates nothing; sample it "
            "(edgegan.sampling.sample; infer --num)"
        )
    for i, img in enumerate(images):
        arr = np.asarray(img)
        # float images in [0, 1] were read as 0..255 pixels: a black translation, silently
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or 0 in arr.shape[:2]:
            raise EdgeganError(
                f"image {i}: translate_arrays takes uint8 images (H, W) or (H, W, C) with "
                f"pixels 0..255; got {arr.dtype} {arr.shape} (edgegan.data.transforms."
                "to_uint8 turns a [-1, 1] tensor into one)"
            )
    from edgegan.sampling import check_batch_size

    check_batch_size(batch_size)
    step = max(1, min(batch_size, runner.max_batch or batch_size))
    inputs = [preprocess(img, spec) for img in images]
    on_cpu = str(getattr(runner, "device", "cpu")).startswith("cpu")
    outputs: list[np.ndarray] = []
    i = 0
    while i < len(inputs):
        j = i + 1
        pixels = inputs[i].shape[1] * inputs[i].shape[2] if on_cpu else 0
        while (
            j < len(inputs)
            and j - i < step
            and inputs[j].shape == inputs[i].shape
            and (j - i + 1) * pixels <= MAX_BATCH_PIXELS
        ):
            j += 1
        raw = check_finite_outputs(runner.run({IMAGE: np.stack(inputs[i:j])}), runner, i)
        out = to_uint8_nhwc(postprocess(raw, spec), value_range(spec))
        for img, o in zip(images[i:j], out, strict=True):
            h, w = np.asarray(img).shape[:2]
            outputs.append(o[:h, :w])
        i = j
        if on_batch is not None:
            on_batch(len(outputs))
    return outputs


def _inputs(path: Path) -> list[tuple[Path, Path]]:
    """(file, its path relative to the input) for an image or every image under a folder."""
    if path.is_file():
        return [(path, Path(path.name))]
    if not path.is_dir():
        raise EdgeganError(f"--input not found: {path}")
    # as the datasets list their folders: linked subfolders too (rglob left them out)
    files = [path / rel for rel in list_images(path, READ_EXTENSIONS, "translate",
                                               "convert them to read them")]  # fmt: skip
    if not files:
        raise EdgeganError(f"no images (PNG/JPEG/...) under {path}")
    return [(p, p.relative_to(path)) for p in files]


def _check_targets(files: list[tuple[Path, Path]], input_path: Path, out: Path) -> None:
    """Refuse an ``out`` that would write among the inputs, and two inputs that would be
    written to one file (``a.png`` and ``a.jpg`` both become ``a.png``)."""
    o = out.resolve()
    if input_path.is_dir() and any(same_path(p, input_path) for p in (o, *o.parents)):
        raise EdgeganError(
            f"--out {out} is inside --input {input_path}: the translations would mix with (or "
            "replace) the inputs; choose a folder outside it"
        )
    fold = ignores_case(out)
    seen: dict[str, Path] = {}
    for src, rel in files:
        dst = rel.with_suffix(".png")
        if same_path(o / dst, src):
            raise EdgeganError(f"--out {out} would replace the input {src}; choose another")
        # A.jpg and a.png: one file where names ignore case (macOS, Windows)
        key = dst.as_posix().lower() if fold else dst.as_posix()
        if key in seen:
            raise EdgeganError(
                f"{seen[key]} and {src} would both be written as {dst}; rename one or "
                "translate them into separate folders"
            )
        seen[key] = src


def default_direction(target: str | Path) -> str:
    """The direction to translate with when none is given: a pix2pix run's or bundle's
    one (``AtoB``); a cyclegan's two need ``--direction``."""
    from edgegan.sampling import target_task

    task, said_by = target_task(target)
    one = only_direction(task)
    if one:
        return one
    if not is_translation_task(task):
        raise EdgeganError(
            f"{target} is no cyclegan or pix2pix run or bundle"
            + (f" (it is a {task} {said_by})" if task else "")
            + "; translating needs one"
        )
    have = TASK_DIRECTIONS[str(task)]
    raise EdgeganError(f"{target} is a {task} {said_by}: give --direction ({' or '.join(have)})")


def translate(
    target: str | Path,
    direction: str | None,
    input_path: str | Path,
    out: str | Path,
    device: str = "cpu",
    overwrite: bool = False,
    backend: str = "torch",
    precision: str = "fp32",
    batch_size: int = 8,
    progress: bool = False,
    resize: int | str | None = None,
    side_by_side: bool = False,
    split_pairs: bool = False,
    skip_bad: bool = False,
    **runner_options: Any,
) -> list[Path]:
    """Translate an image or a folder of images with a cyclegan run (torch) or bundle (any
    backend); writes ``out/<same relative name>.png`` and returns the paths. A progress bar
    on stderr when ``progress`` and there is more than one image.

    ``resize``: resize each image first so its shorter side is that many pixels (aspect
    kept, bicubic), or ``"train"``: the scale the generator trained at (the reference
    CycleGAN's advice: translate at the training scale; a 12 MP photo through a generator
    trained on 256 px crops gives textures at the wrong scale, slowly). None: native size,
    with a warning when images are over twice the training size. ``side_by_side``: each
    output is the input (as it was translated) and its translation, left and right.
    ``split_pairs``: each image holds a pair side by side (the ``aligned`` dataset's files,
    such as a pix2pix test split): its source half is translated (the run's data.direction
    says which), and with ``side_by_side`` the other half, the truth, is written right of the
    translation. ``direction`` None: the one direction of a pix2pix run or bundle
    (:func:`default_direction`). An unreadable image stops the run and takes back what it
    wrote; ``skip_bad``: it is left out instead, and one warning counts them."""
    import warnings

    from edgegan.data.transforms import load_image, save_png
    from edgegan.fileio import check_out_dir, undo_new_files
    from edgegan.runtime import open_runner
    from edgegan.sampling import check_batch_size
    from edgegan.train.logs import ProgressBar

    direction = default_direction(target) if direction is None else check_direction(direction)
    check_batch_size(batch_size)
    files = _inputs(Path(input_path))
    _check_targets(files, Path(input_path), Path(out))
    check_out_dir(out, overwrite)
    skipped = _unreadable_headers(files, skip_bad, progress)
    with open_runner(
        target, backend, precision, device=device, direction=direction, **runner_options
    ) as runner:
        channels = int(runner.spec["channels_in"])
        if split_pairs and "halves" not in runner.spec:
            warnings.warn(
                f"{target} does not record which half of a pair file is A (a bundle exported "
                "before edgegan recorded it): the left one is taken; export the run again if "
                "it trained with data.direction=BtoA",
                stacklevel=caller_stacklevel(),
            )
        how = _scaling(resize, runner.spec)
        written: list[Path] = []
        warned = False
        bar = ProgressBar(len(files), 0, progress and len(files) > 1, "infer", "images")
        # An unreadable image halfway (or Ctrl-C) takes back what this run created.
        try:
            with undo_new_files(out) as new:
                out = new.claim(out, overwrite)
                # a batch's worth of files at a time: memory stays bounded for large folders
                known_bad = set(skipped)
                readable = [f for f in files if f[0] not in known_bad]
                for k in range(0, len(readable), batch_size):
                    chunk = readable[k : k + batch_size]
                    truths: list[Any] = []

                    def read(src: Path) -> Any:
                        if split_pairs:
                            return _pair_halves(src, runner.spec)
                        return load_image(src, channels)

                    got = [_read_input(read, src, skip_bad, skipped) for src, _ in chunk]
                    chunk = [c for c, g in zip(chunk, got, strict=True) if g is not None]
                    got = [g for g in got if g is not None]
                    if not got:
                        bar.update(len(written) + len(skipped))
                        continue
                    if split_pairs:
                        loaded, truths = [h[0] for h in got], [h[1] for h in got]
                    else:
                        loaded = got
                    if how is not None:
                        loaded = [_rescale(img, how) for img in loaded]
                        truths = [_rescale(img, how) for img in truths]
                    elif resize is None and not warned:
                        warned = _warn_if_far_larger(loaded, runner.spec)
                    images = [np.asarray(img) for img in loaded]
                    done = len(written) + len(skipped)  # skipped files count as done

                    def advance(n: int, done: int = done) -> None:
                        bar.update(done + n)

                    outputs = translate_arrays(runner, images, batch_size, advance)
                    if side_by_side:
                        rows = zip(images, outputs, *([truths] if truths else []), strict=True)
                        outputs = [_beside(*row) for row in rows]
                    for (_, rel), img in zip(chunk, outputs, strict=True):
                        dst = (out / rel).with_suffix(".png")
                        new.folder(dst.parent)  # save_png makes subfolders of out
                        # atomic, not synced per image (as infer): one fsync a file cost
                        # 3-15% of translating 1,000 digits
                        written.append(save_png(img, new.file(dst), fsync=False))
                if skipped and not written:  # an error, not "wrote 0" (the folder taken back)
                    raise DataError(
                        f"none of the {len(files)} input image(s) could be read (first: "
                        f"{skipped[0]})"
                    )
        finally:
            bar.close()
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} unreadable image(s) of {len(files)} (first: {skipped[0]})",
            DataWarning,
            stacklevel=caller_stacklevel(),
        )
    return written


def _unreadable_headers(
    files: list[tuple[Path, Path]], skip_bad: bool, progress: bool
) -> list[Path]:
    """The inputs whose headers do not read, found before any is translated (a text file
    named .jpg, a file cut short in its header): one at input 1,250 of 2,000 stopped the
    run after minutes and took back all it had written. An error naming the first and how
    many, unless ``skip_bad``: then they are returned, to be left out. (A file cut short in
    its pixels still fails only when decoded.)"""
    from edgegan.data.files import probe_headers, unreadable_line

    probed = probe_headers([src for src, _ in files], "infer", progress)
    bad = [(src, why) for (src, _), why in zip(files, probed, strict=True) if isinstance(why, str)]
    if bad and not skip_bad:
        line = unreadable_line([why for _, why in bad], f"the {len(files)} input images")
        raise DataError(f"{line} (--skip-bad translates the others)")
    return [src for src, _ in bad]


def _read_input(
    read: Callable[[Path], Any], path: Path, skip_bad: bool, skipped: list[Path]
) -> Any:
    """``read(path)``, or None when the file cannot be read and ``skip_bad`` (noted in
    ``skipped``); without ``skip_bad`` the error says how to go on without it."""
    try:
        return read(path)
    except DataError as exc:
        if not skip_bad:
            raise DataError(f"{exc} (--skip-bad translates the others)") from None
        skipped.append(path)
        return None
