"""Sampling a trained generator: latents from a seed, labels, and PNG/NPZ outputs.

Pre- and post-processing live here and are shared by every backend (torch, ONNX Runtime,
TensorRT), so they are identical by construction: latents come from NumPy's PCG64 generator
seeded by ``--seed`` (not from torch), labels cycle through the classes, and outputs are
clipped to the spec's value range and rounded to uint8 the same way. A backend only maps the
named input arrays to the raw output array (:mod:`edgegan.runtime`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgegan.errors import EdgeganError
from edgegan.export.signature import is_translation_task, only_direction
from edgegan.fileio import atomic_write, check_out_dir

FORMATS = ("png", "npz", "grid")
#: Images one ``grid.png`` may hold (a sheet to look at; 1,024 digits are 940x940 px).
MAX_GRID = 1024
INPUT_LATENTS = "z"  # the named inputs and output of an exported GAN generator
INPUT_LABELS = "labels"
OUTPUT_IMAGE = "image"
TRANSLATE_HINT = "translate images with --direction AtoB|BtoA --input"


def translate_hint(task: str) -> str:
    """How to run a ``task`` run or bundle that translates (``--direction`` where it has a
    choice)."""
    if only_direction(task):
        return "translate images with --input (its one direction, A -> B)"
    return TRANSLATE_HINT


def make_latents(num: int, latent_dim: int, seed: int) -> np.ndarray:
    """``(num, latent_dim)`` float32 standard-normal latents, identical on every backend."""
    return _latent_stream(seed).standard_normal((num, latent_dim), dtype=np.float32)


def _latent_stream(seed: int) -> np.random.Generator:
    from edgegan.runtime.base import is_int

    if not is_int(seed) or seed < 0:
        raise EdgeganError(f"--seed must be an integer >= 0, got {seed!r}")
    return np.random.default_rng(seed)


def check_num(num: int) -> None:
    """A positive int, as ``--num`` takes (2.5 was a bare TypeError inside NumPy)."""
    from edgegan.runtime.base import is_int

    if not is_int(num) or num <= 0:
        raise EdgeganError(f"--num must be a positive number of images, got {num!r}")


def check_batch_size(batch_size: int) -> None:
    """A positive int, as ``--batch-size`` takes."""
    from edgegan.runtime.base import is_int

    if not is_int(batch_size):
        raise EdgeganError(f"--batch-size must be a positive integer, got {batch_size!r}")
    if batch_size <= 0:
        raise EdgeganError("--batch-size must be a positive number")


def make_labels(num: int, num_classes: int, labels: list[int] | None) -> np.ndarray | None:
    """Labels for a conditional generator: the given ones, else 0, 1, ..., K-1, 0, ...

    ``labels`` shorter than ``num`` are repeated (longer is an error: some would be
    dropped); each must be in ``[0, num_classes)``.
    """
    return labels_at(np.arange(num), num, num_classes, labels)


def labels_at(
    index: np.ndarray, num: int, num_classes: int, labels: list[int] | None
) -> np.ndarray | None:
    """:func:`make_labels`'s labels of the images ``index`` (of ``num``), without making the
    other ones: a long run of samples is written batch by batch."""
    if num_classes == 0:
        if labels:
            raise EdgeganError("--labels needs a class-conditional generator; this one is not")
        return None
    if not labels:
        return np.asarray(index, dtype=np.int64) % num_classes
    if len(labels) > num:
        raise EdgeganError(
            f"--labels gives {len(labels)} labels for --num {num}; give at most {num} "
            "(they repeat), or drop --num for one image per label"
        )
    bad = [v for v in labels if not 0 <= v < num_classes]
    if bad:
        raise EdgeganError(
            f"label {bad[0]} is out of range: the generator has {num_classes} classes"
        )
    return np.asarray(labels, dtype=np.int64)[np.asarray(index) % len(labels)]


def make_inputs(
    spec: dict[str, Any], num: int, seed: int = 0, labels: list[int | str] | None = None
) -> dict[str, np.ndarray]:
    """The named inputs of a GAN generator for ``num`` images: ``z`` (float32, from
    :func:`make_latents`) and, when conditional, ``labels`` (int64, from :func:`make_labels`).

    ``spec`` is a run's generator spec or a bundle's ``spec`` (``latent_dim``,
    ``num_classes``)."""
    check_num(num)
    inputs = {INPUT_LATENTS: make_latents(num, int(spec["latent_dim"]), seed)}
    label_arr = make_labels(num, int(spec.get("num_classes") or 0), class_indices(labels, spec))
    if label_arr is not None:
        inputs[INPUT_LABELS] = label_arr
    return inputs


def value_range(spec: dict[str, Any]) -> tuple[float, float]:
    """The (low, high) range of the generator's outputs, [-1, 1] unless the spec says other."""
    low, high = spec.get("value_range") or (-1.0, 1.0)
    return float(low), float(high)


def postprocess(images: np.ndarray, spec: dict[str, Any] | None = None) -> np.ndarray:
    """Raw generator outputs -> float32 clipped to the value range (every backend)."""
    low, high = value_range(spec or {})
    return np.clip(np.asarray(images, dtype=np.float32), low, high)


def check_finite_outputs(raw: np.ndarray, runner: Any, start: int = 0) -> np.ndarray:
    """Refuse generator outputs holding NaN or infinities: clipped and cast to uint8 they
    became black pixels (NaN's cast is undefined), written and scored as if they were images.
    ``raw`` is one batch, whose first image is image ``start`` of the run; returns it as an
    array."""
    arr = np.asarray(raw)
    bad = ~np.isfinite(arr)
    if bad.any():
        images = int(bad.reshape(len(arr), -1).any(axis=1).sum())
        precision = getattr(runner, "precision", "fp32")
        why = "its weights are broken (did its training diverge?)"
        if precision == "fp16":
            why += ", or its fp16 graph overflows: try --precision fp32"
        batch = f"images {start}-{start + len(arr) - 1}" if len(arr) > 1 else f"image {start}"
        raise EdgeganError(
            f"the generator ({getattr(runner, 'name', '') or 'torch'} {precision}) produced NaN "
            f"or infinite values in {images} of the {len(arr)} images of its batch ({batch}): "
            f"{why}"
        )
    return arr


def parse_labels(text: str | None) -> list[int | str] | None:
    """``"3,3,7"`` -> [3, 3, 7]; ``"7,Sneaker"`` -> [7, "Sneaker"]: class numbers, or names
    that :func:`class_indices` looks up in the generator's ``class_names``."""
    if text is None or not text.strip():
        return None
    return [_number_or_name(v.strip()) for v in text.split(",") if v.strip()]


def _number_or_name(token: str) -> int | str:
    try:
        return int(token)
    except ValueError:
        return token


def class_indices(labels: list[int | str] | None, spec: dict[str, Any]) -> list[int] | None:
    """``labels`` as class numbers: names are looked up (ignoring case) in ``spec``'s
    ``class_names`` (a run's dataset classes, e.g. Fashion-MNIST's ``Sneaker``). A NumPy
    array or torch tensor of integers is taken as its list."""
    if hasattr(labels, "tolist") and not isinstance(labels, str):  # ndarray, tensor
        labels = labels.tolist()  # type: ignore[union-attr]
        if not isinstance(labels, list):  # a 0-d array: one label
            labels = [labels]
    if labels is None or (isinstance(labels, (list, tuple)) and not labels):
        return None
    from edgegan.runtime.base import is_int

    if isinstance(labels, str) or is_int(labels):  # one label, not its characters
        labels = [labels]  # type: ignore[list-item]
    names = [str(c) for c in spec.get("class_names") or []]
    out = []
    for v in labels:
        if not (is_int(v) or isinstance(v, str)):  # 7.5 sampled class 7, True class 1
            raise EdgeganError(f"--labels takes class numbers (integers) or class names, got {v!r}")
        if not isinstance(v, str) and str(v) in names and names.index(str(v)) != v:
            # classes named by numbers that are not their own (folders 1/, 2/, 3/)
            raise EdgeganError(
                f"--labels: {v} is both class number {v} and the class named '{v}' (number "
                f"{names.index(str(v))}); give the number of the class meant: its classes are "
                + ", ".join(f"{i} '{n}'" for i, n in enumerate(names))
            )
        if isinstance(v, str):
            found = [i for i, n in enumerate(names) if n.lower() == v.lower()]
            if not found:
                known = (
                    f"its classes are {', '.join(names)}"
                    if names
                    else "its classes have no names: give numbers"
                )
                raise EdgeganError(f"--labels: the generator has no class '{v}'; {known}")
            v = found[0]
        out.append(int(v))
    return out


@dataclass
class RunGenerator:
    """A run's sampled network (EMA weights when trained with them), in eval mode."""

    module: Any = field(repr=False)  # its repr is the whole network
    spec: dict[str, Any]
    run_dir: Path
    step: int


def load_run_generator(
    run_dir: str | Path,
    device: str = "cpu",
    ema: bool = True,
    checkpoint: str | None = None,
    state: dict[str, Any] | None = None,
) -> RunGenerator:
    """Rebuild the generator of a run directory from its config and last checkpoint (or
    ``checkpoint``: ``best``, ``step_0001000``, ... of its ``checkpoints/``; ``state``: that
    checkpoint, when the caller has already loaded it)."""

    from edgegan.config import saved_config
    from edgegan.train.checkpoint import lacks, load_checkpoint
    from edgegan.train.device import resolve_device
    from edgegan.train.logs import checkpoint_file

    target = resolve_device(device, "device")  # before loading anything
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EdgeganError(f"run directory not found: {run_dir}")
    path = checkpoint_file(run_dir, checkpoint)
    if state is None:
        state = load_checkpoint(path, map_location="cpu")
    try:
        config = saved_config(state["config"], str(path), state.get("edgegan_version"))
        spec = dict(state["spec"])
        if is_translation_task(spec.get("task")):
            raise EdgeganError(f"{run_dir} is a {spec['task']} run: {translate_hint(spec['task'])}")
        if spec.get("task") != "gan":
            raise EdgeganError(
                f"{run_dir} is a '{spec.get('task')}' run; this command samples GANs"
            )
        c, h, _ = spec["image_shape"]
        context = {
            "channels": c,
            "image_size": h,
            "latent_dim": spec["latent_dim"],
            "num_classes": spec["num_classes"],
        }
        use_ema = ema and state.get("ema") is not None
        weights = state["ema"] if use_ema else state["networks"]["generator"]
        step = int(state["step"])
    except KeyError as exc:  # as resume says it: a traceback of 40 lines before
        raise lacks(path, exc, "sampled or exported") from None
    module = rebuild_generator(state, config.model.generator, context, weights)
    module.to(target).eval()
    return RunGenerator(module, spec, run_dir, step)


def rebuild_generator(
    state: dict[str, Any], part: Any, context: dict[str, Any], weights: dict[str, Any]
) -> Any:
    """A run's generator built from its config section ``part`` and loaded with ``weights``;
    when the plugin that gave it is gone or changed, the error says which one the run used."""
    from edgegan.config import provenance_hint, with_provenance
    from edgegan.float32 import float32_default
    from edgegan.plugins.manager import get_manager
    from edgegan.rng import random_state_kept
    from edgegan.train.checkpoint import mismatch

    try:
        # the layers' init draws: the caller's streams stay as they were; float32 weights
        with random_state_kept(), float32_default():
            module = get_manager().registry("models").build_part(part, context, "generator")
    except EdgeganError as exc:
        raise with_provenance(exc, state.get("parts"), "generator") from None
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:
        raise EdgeganError(
            f"the checkpoint does not fit generator '{part.name}' as it is built now "
            f"({mismatch(exc)}){provenance_hint(state.get('parts'), 'generator')}"
        ) from None
    return module


def generate(
    gen: RunGenerator,
    num: int,
    seed: int = 0,
    labels: list[int | str] | None = None,
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """Sample ``num`` images: ``images`` float32 (N, C, H, W) in [-1, 1], ``latents``, and
    ``labels`` for conditional generators."""
    from edgegan.runtime.torch_runner import TorchRunner

    return sample(TorchRunner.from_generator(gen), num, seed, labels, batch_size)


def sample(
    runner: Any,
    num: int,
    seed: int = 0,
    labels: list[int | str] | None = None,
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """Sample ``num`` images with any backend's runner (:class:`edgegan.runtime.Runner`):
    ``images`` float32 (N, C, H, W) in the value range, ``latents``, and ``labels`` for
    conditional generators. The inputs and the post-processing are the same on every backend.
    """
    return collect_samples(iter_samples(runner, num, seed, labels, batch_size), num)


def collect_samples(
    batches: Iterator[dict[str, np.ndarray]],
    num: int,
    value_range: tuple[float, float] | None = None,
    done: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """The batches of :func:`iter_samples` in one array each, filled in place (a list of
    batches and its concatenation held every image twice); with ``value_range`` also
    ``uint8``, the images as :func:`to_uint8_nhwc` gives them, converted a batch at a time
    (converting all at once made three more float copies). ``done(n)`` after each batch."""
    out: dict[str, np.ndarray] = {}
    at = 0
    for batch in batches:
        n = len(batch["images"])
        if value_range is not None:
            batch = {**batch, "uint8": to_uint8_nhwc(batch["images"], value_range)}
        for key, arr in batch.items():
            if key not in out:
                out[key] = np.empty((num, *arr.shape[1:]), dtype=arr.dtype)
            out[key][at : at + n] = arr
        at += n
        if done is not None:
            done(at)
    return out


def iter_samples(
    runner: Any,
    num: int,
    seed: int = 0,
    labels: list[int | str] | None = None,
    batch_size: int = 256,
) -> Iterator[dict[str, np.ndarray]]:
    """:func:`sample` one batch at a time (``images``, ``latents`` and ``labels`` of each), so
    that memory holds one batch whatever ``num``. The latents are drawn from the seed's one
    stream in order: the same latents and labels for any batch size."""
    from edgegan.export.signature import is_translator

    spec = runner.spec
    if is_translator(spec):
        raise EdgeganError(
            f"{spec['direction']} is an image-to-image generator: it translates images "
            "(edgegan.translate.translate_arrays; infer --input) and samples nothing"
        )
    check_num(num)
    latent_dim, num_classes = int(spec["latent_dim"]), int(spec.get("num_classes") or 0)
    numbers = class_indices(labels, spec)
    labels_at(np.arange(0), num, num_classes, numbers)  # refuse bad labels before any work
    check_batch_size(batch_size)
    rng = _latent_stream(seed)  # make_latents' stream, drawn a batch at a time
    step = max(1, min(batch_size, runner.max_batch or batch_size))
    for start in range(0, num, step):
        n = min(step, num - start)
        batch = {INPUT_LATENTS: rng.standard_normal((n, latent_dim), dtype=np.float32)}
        label_arr = labels_at(np.arange(start, start + n), num, num_classes, numbers)
        if label_arr is not None:
            batch[INPUT_LABELS] = label_arr
        raw = check_finite_outputs(runner.run(batch), runner, start)
        out = {"images": postprocess(raw, spec), "latents": batch[INPUT_LATENTS]}
        if label_arr is not None:
            out["labels"] = label_arr
        yield out


def to_uint8_nhwc(images: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """float (N, C, H, W) in ``value_range`` -> uint8 (N, H, W, C), rounding to nearest."""
    low, high = value_range
    scaled = (np.asarray(images, dtype=np.float32) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def write_outputs(
    result: dict[str, np.ndarray],
    out: Path,
    fmt: str,
    value_range: tuple[float, float] = (-1.0, 1.0),
    start: int = 0,
    track: Any = None,
) -> list[Path]:
    """Write ``images.npz`` (uint8 NHWC ``images``, float ``raw``, ``latents``, ``labels``) or
    one PNG per image (``000000.png``, or ``000000_label3.png`` when conditional), numbered
    from ``start``. ``track(path)`` is called before each file is written
    (:meth:`edgegan.fileio.NewFiles.file`)."""
    track = track or (lambda path: path)
    from edgegan.data.transforms import save_png

    if fmt not in FORMATS:
        raise EdgeganError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    images = result["uint8"] if "uint8" in result else to_uint8_nhwc(result["images"], value_range)
    if fmt == "grid":  # one sheet: a column per class when the labels cycle through them
        from edgegan.data.transforms import make_grid

        labels = result.get("labels")
        k = len(np.unique(labels)) if labels is not None else 0
        # a column per class only when labels[i] is labels[i % k] (as --num's 0, 1, ..., 9,
        # 0, 1, ...): --labels 3,3,3,7 laid out 2 a row would mix 3s and 7s in a column
        cycles = (
            labels is not None
            and k > 1
            and np.array_equal(labels, np.resize(labels[:k], len(labels)))
        )
        nrow = k if cycles else math.ceil(math.sqrt(len(images)))
        tiles = images.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(127.5) - 1
        path = out / "grid.png"
        save_png(make_grid(tiles, nrow=nrow), track(path), fsync=False)
        return [path]
    if fmt == "npz":
        path = out / "images.npz"
        arrays = {"images": images, "raw": result["images"], "latents": result["latents"]}
        if "labels" in result:
            arrays["labels"] = result["labels"]
        atomic_write(track(path), lambda f: np.savez_compressed(f, **arrays))  # type: ignore[arg-type]
        return [path]
    paths = []
    labels = result.get("labels")
    for i, img in enumerate(images):
        suffix = f"_label{labels[i]}" if labels is not None else ""
        path = out / f"{start + i:06d}{suffix}.png"
        # atomic: `--overwrite` replaces files in place, and a failed write must not leave a
        # cut-off PNG where a good one was (nor a 0-byte one after kill -9)
        save_png(img, track(path), compress_level=6, fsync=False)  # PIL's default level
        paths.append(path)
    return paths


def target_task(target: Any) -> tuple[str | None, str]:
    """The task of a target and what said it: ``"bundle"`` (its ``edgegan.json``, or that of
    a run's ``export/``) or ``"run"`` (its checkpoint's spec); ``(None, "")`` when neither."""
    from edgegan.export.bundle import is_bundle, read_bundle
    from edgegan.train.logs import CHECKPOINT, is_run_dir

    path = Path(getattr(target, "path", target))
    for folder in (path, path / "export"):
        if is_bundle(folder):
            try:
                return read_bundle(folder).get("task"), "bundle"
            except EdgeganError:
                if folder == path or not is_run_dir(path):
                    raise
                break  # a run's damaged bundle: its checkpoint still says (as the torch runner)

    if is_run_dir(path):
        from edgegan.train.checkpoint import load_checkpoint

        spec = load_checkpoint(path / CHECKPOINT, map_location="cpu").get("spec", {})
        return spec.get("task"), "run"
    return None, ""


def _refuse_translator(target: Any) -> None:
    """A cyclegan or pix2pix bundle or run asked to sample: say it translates, rather than
    ask for ``--num``; a target that is missing, or neither a run nor a bundle: say that."""
    task, said_by = target_task(target)
    if task is None:
        from edgegan.runtime.base import resolve_target

        resolve_target(target)  # raises for a path that is not there or holds neither
    if is_translation_task(task):
        path = Path(getattr(target, "path", target))
        raise EdgeganError(f"{path} is a {task} {said_by}: {translate_hint(str(task))}")


def infer(
    target: str | Path,
    out: str | Path,
    num: int | None = None,
    labels: list[int | str] | None = None,
    seed: int = 0,
    fmt: str = "png",
    device: str = "cpu",
    overwrite: bool = False,
    backend: str = "torch",
    precision: str = "fp32",
    batch_size: int = 256,
    progress: bool = False,
    **runner_options: Any,
) -> list[Path]:
    """Sample a run's generator or an exported bundle to ``out`` on any backend (the API
    behind ``edgegan infer``). ``target`` is a run directory or a bundle folder; the
    onnxruntime and tensorrt backends need a bundle (see :func:`edgegan.runtime.open_runner`).

    PNGs are written batch by batch (memory holds one batch, whatever ``num``), with a
    progress bar on stderr when ``progress``; ``npz`` is one file and holds them all. A run
    that fails or is interrupted removes the files it wrote (earlier files stay).
    """
    from edgegan.fileio import undo_new_files
    from edgegan.runtime import open_runner
    from edgegan.train.logs import ProgressBar

    if fmt not in FORMATS:
        raise EdgeganError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    if fmt == "grid" and (num or len(labels or ())) > MAX_GRID:
        raise EdgeganError(f"--format grid takes at most {MAX_GRID} images (--num)")
    if num is None:
        if not labels:
            _refuse_translator(target)  # the likelier mistake: say that first
            raise EdgeganError("give --num N (or --labels, one image per label)")
        num = len(labels)
    check_batch_size(batch_size)
    _latent_stream(seed)  # a bad seed fails before the runner loads
    check_out_dir(out, overwrite)
    with open_runner(target, backend, precision, device=device, **runner_options) as runner:
        vrange = value_range(runner.spec)
        batches = iter_samples(runner, num, seed=seed, labels=labels, batch_size=batch_size)
        first = next(batches)  # the inputs and the runner work before the folder is made
        bar = ProgressBar(num, 0, progress and num > len(first["images"]), "infer", "images")
        if fmt in ("npz", "grid"):  # one file of every image: held in memory, then written
            try:
                result = collect_samples(itertools.chain([first], batches), num, vrange,
                                         bar.update)  # fmt: skip
            finally:
                bar.close()
            with undo_new_files(out) as new:
                folder = new.claim(out, overwrite)
                return write_outputs(result, folder, fmt, vrange, track=new.file)
        paths: list[Path] = []
        try:
            with undo_new_files(out) as new:
                folder = new.claim(out, overwrite)
                for batch in itertools.chain([first], batches):
                    start = len(paths)
                    paths += write_outputs(batch, folder, fmt, vrange, start, new.file)
                    bar.update(len(paths))
        finally:
            bar.close()
        return paths
