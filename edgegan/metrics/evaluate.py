"""``edgegan eval``: load generated samples, build a metric through the registry, run it.

Samples are either a folder of images (PNG, JPEG, BMP, WebP, TIFF or PPM, sorted by file
name; other image kinds are left out with a warning; greyscale or RGB, all of one size; when
every name ends in ``_label<k>``, as ``edgegan infer`` writes conditional samples, those are
the labels) or an ``.npz`` file as ``edgegan infer --format npz`` writes it: ``images``
uint8 ``(N, H, W, C)`` (or ``(N, H, W)``) or float ``(N, C, H, W)`` in [-1, 1], optional
integer ``labels`` ``(N,)`` (conditioning labels; -1 where none) and ``latents`` (ignored).
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from edgegan.data.files import READ_EXTENSIONS, pick_images
from edgegan.errors import EdgeganError, caller_stacklevel
from edgegan.export.signature import is_translation_task

_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _read_image(path: Path) -> Any:
    """One image file -> uint8 ``(H, W, 1)`` or ``(H, W, 3)``, converted as the datasets
    convert (16-bit and float greyscale scaled to 8 bits, transparency over white); as
    pytorch-fid, without applying an EXIF orientation (the datasets apply it)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from edgegan.data.transforms import convert_channels
    from edgegan.errors import DataError

    # DecompressionBombError: Pillow's guard against images of more than 178M pixels
    bad = (OSError, UnidentifiedImageError, ValueError, DataError, Image.DecompressionBombError)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in _GREY_MODES:
                return np.asarray(convert_channels(im, 1), dtype=np.uint8)[..., None]
            return np.asarray(convert_channels(im, 3), dtype=np.uint8)
    except bad as exc:
        raise EdgeganError(f"cannot read image {path}: {exc}") from None


_LABEL_IN_NAME = re.compile(r"_label(\d+)$")
"""``edgegan infer`` names conditional samples ``000000_label3.png``."""


def _labels_from_names(files: list[Path]) -> Any:
    """Labels parsed from ``*_label<k>.<ext>`` names when every file has one, else None."""
    matches = [_LABEL_IN_NAME.search(p.stem) for p in files]
    labels = [int(m.group(1)) for m in matches if m is not None]
    if len(labels) < len(files):
        return None
    import torch

    return torch.tensor(labels, dtype=torch.int64)


def folder_images(folder: Path) -> list[Path]:
    """The image files of a folder of samples, sorted (other image kinds: one warning, at
    the caller's line); a run directory, a bundle or a folder without images is one line
    saying what it is."""
    listed = [p for p in folder.iterdir() if p.is_file()]
    hint = "convert them to score them"
    files = pick_images(listed, folder, "eval", hint)
    if not files:
        if (folder / "checkpoints" / "last.pt").is_file():
            scores = folder / "eval.json"
            where = (
                f"its final scores are in {scores}"
                if scores.is_file()
                else "it has no final scores (eval.json) yet"
            )
            raise EdgeganError(
                f"{folder} is a run directory ({where}); to score it, give it to eval as it is: "
                f"`edgegan eval {folder}` (a GAN's samples: --num N)"
            )
        if (folder / "edgegan.json").is_file():
            raise EdgeganError(
                f"{folder} is an exported bundle; to score one of its graphs, sample it: "
                f"`edgegan eval {folder} --backend onnxruntime --precision PRECISION` "
                "(evaluate_generator in Python)"
            )
        raise EdgeganError(f"no images ({', '.join(READ_EXTENSIONS)}) in {folder}")
    return files


def size_mismatch(first: Path, first_wh: tuple[int, int], path: Path, wh: tuple[int, int]) -> str:
    """The line for a folder of images of different sizes (``(w, h)`` each)."""
    return (
        f"images in {path.parent} differ in size: {first.name} is {first_wh[0]}x{first_wh[1]}, "
        f"{path.name} is {wh[0]}x{wh[1]}"
    )


def read_batches(files: list[Path], batch_size: int) -> Iterator[Any]:
    """The images of ``files`` as uint8 ``(n, H, W, C)`` arrays of up to ``batch_size``
    (a batch mixing grey and colour is all RGB), each image checked as it is read: files of
    mixed sizes fail at the first odd one."""
    import numpy as np

    first: tuple[int, int] | None = None
    for i in range(0, len(files), batch_size):
        batch = []
        for p in files[i : i + batch_size]:
            a = _read_image(p)
            if first is None:
                first = a.shape[:2]
            elif a.shape[:2] != first:
                w, h = a.shape[1], a.shape[0]
                raise EdgeganError(size_mismatch(files[0], (first[1], first[0]), p, (w, h)))
            batch.append(a)
        c = max(a.shape[2] for a in batch)
        yield np.stack([np.broadcast_to(a, (*a.shape[:2], c)) for a in batch])


def _load_folder(folder: Path) -> Any:
    import numpy as np

    files = folder_images(folder)
    # One uint8 array filled in place, a batch at a time (a list of images and its stack
    # held them twice)
    out, i = None, 0
    for batch in read_batches(files, 256):
        if out is None:
            out = np.empty((len(files), *batch.shape[1:]), dtype=np.uint8)
        if batch.shape[3] > out.shape[3]:  # mixed grey and colour: make all RGB
            out = np.repeat(out, 3, axis=3)
        out[i : i + len(batch)] = batch  # a grey batch broadcasts over RGB
        i += len(batch)
    return out, _labels_from_names(files)  # (N, H, W, C) uint8, labels


def _to_float(images: Any) -> Any:
    """uint8 ``(N, C, H, W)`` -> float32 in [-1, 1], in place after the one float copy
    (``x / 127.5 - 1`` made two more, each 4x the images)."""
    return images.float().div_(127.5).sub_(1)


def _nchw(images: Any) -> Any:
    """uint8 ``(N, H, W, C)`` -> a ``(N, C, H, W)`` view (no copy)."""
    return images.permute(0, 3, 1, 2)


#: Deflate expands at most 1032:1: a member recording more than this over its compressed
#: size (or a stored one whose sizes differ) lies about what it holds.
_DEFLATE_MOST = 1032


def npz_arrays(path: Path, names: tuple[str, ...]) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` of the arrays ``names`` of an ``.npz`` that it holds (as
    ``name.npy`` or ``name``, as NumPy finds them), read from their headers alone, before
    ``np.load`` allocates what they declare: a file of a few hundred bytes may declare
    terabytes. An array that declares more bytes than its member holds, or a member that
    records more bytes than its compressed data can expand to, is refused."""
    import math

    import numpy as np

    arrays: dict[str, tuple[Any, tuple[int, ...]]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            for name in names:
                info = members.get(f"{name}.npy") or members.get(name)
                if info is None:
                    continue
                with archive.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                        version,
                        np.lib.format.read_array_header_2_0,  # 3.0: utf-8 names only
                    )
                    shape, _, dtype = read(f)
                declared = math.prod(shape) * dtype.itemsize
                expands = (
                    info.file_size == info.compress_size
                    if info.compress_type == zipfile.ZIP_STORED
                    else info.file_size <= _DEFLATE_MOST * info.compress_size + 1024
                )
                if declared > info.file_size or not expands:
                    raise ValueError(
                        f"its '{name}' declares {declared} bytes of data, which its "
                        f"{info.compress_size} stored bytes cannot hold"
                    )
                arrays[name] = (dtype, tuple(shape))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise EdgeganError(f"cannot read {path} as .npz: {exc}") from None
    return arrays


def _check_npz_images(path: Path, dtype: Any, shape: tuple[int, ...]) -> None:
    """Refuse an ``.npz``'s ``images`` of ``dtype`` and ``shape`` (from its header, before
    it is read) that are not uint8 ``(N, H, W[, 1|3])`` or float ``(N[, 1|3], H, W)``."""
    if not shape:
        raise EdgeganError(f"{path}: 'images' must be an array of images, got a single value")
    if shape[0] == 0:
        raise EdgeganError(f"{path}: 'images' is empty")
    if dtype.kind == "u" and dtype.itemsize == 1:
        if len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] not in (1, 3)):
            raise EdgeganError(
                f"{path}: uint8 'images' must have shape (N, H, W, 1|3), got {shape}"
            )
    elif dtype.kind == "f":
        if len(shape) not in (3, 4) or (len(shape) == 4 and shape[1] not in (1, 3)):
            raise EdgeganError(
                f"{path}: float 'images' must have shape (N, 1|3, H, W), got {shape}"
            )
    else:
        raise EdgeganError(f"{path}: 'images' must be uint8 or float, got dtype {dtype}")


def _images_from_npz(path: Path, images: Any) -> Any:
    """``images`` of an ``.npz`` (checked by :func:`_check_npz_images`) as a tensor."""
    import numpy as np
    import torch

    if images.dtype == np.uint8:
        if images.ndim == 3:
            images = images[..., None]
        return _nchw(torch.from_numpy(np.ascontiguousarray(images)))
    if images.dtype.kind == "f":
        if images.ndim == 3:
            images = images[:, None]
        if images.size and not np.all(np.isfinite(images)):
            raise EdgeganError(f"{path}: 'images' hold NaN or infinite values")
        if images.size and (images.min() < -1.01 or images.max() > 1.01):
            raise EdgeganError(
                f"{path}: float 'images' must lie in [-1, 1], found "
                f"[{images.min():.3g}, {images.max():.3g}] (store uint8 for [0, 255])"
            )
        if images.size:
            _warn_unit_range(float(images.min()), float(images.max()))
        return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    raise AssertionError(f"unchecked dtype {images.dtype}")  # _check_npz_images refuses it


def _check_range(images: Any) -> None:
    """Float images in [-1, 1], as the ``.npz`` path requires: scores of images in [0, 255]
    would be numbers without meaning. Images with no value below 0 are warned about: in
    [0, 1], real digits scored an FD of 175 (as bad as blank images), without a word."""
    import numpy as np
    import torch

    if not isinstance(images, (np.ndarray, torch.Tensor)) or images.ndim != 4:
        got = (
            f"shape {tuple(images.shape)}"
            if isinstance(images, (np.ndarray, torch.Tensor))
            else type(images).__name__
        )
        raise EdgeganError(
            f"images must be one tensor or array (N, C, H, W) in [-1, 1]; got {got} (stack a "
            "list of images: torch.stack(images))"
        )
    if isinstance(images, np.ndarray) and images.dtype.kind == "f":
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or not len(images):
        return
    lo, hi = float(images.detach().min()), float(images.detach().max())
    if lo < -1.01 or hi > 1.01:  # NaN passes: the metric refuses it with its own line
        raise EdgeganError(
            f"images must be float tensors in [-1, 1], found [{lo:.3g}, {hi:.3g}] (from uint8 "
            "x: x / 127.5 - 1)"
        )
    _warn_unit_range(lo, hi)


def _warn_unit_range(lo: float, hi: float) -> None:
    """Float images with no value below 0 look like [0, 1] images (not for images read from
    uint8, which are [-1, 1] by construction: bright ones have no value below 0 either)."""
    if lo >= 0 and hi > 0:
        warnings.warn(
            f"the images lie in [{lo:.3g}, {hi:.3g}], none below 0, as if they were in [0, 1]; "
            "edgegan's are in [-1, 1] (from [0, 1] x: x * 2 - 1): scored as given",
            stacklevel=caller_stacklevel(),  # evaluate, load_samples, a Scorer: the caller
        )


def _load_npz(path: Path) -> tuple[Any, Any]:
    import numpy as np
    import torch

    if path.is_file() and not zipfile.is_zipfile(path):  # NumPy would speak of pickles
        raise EdgeganError(f"cannot read {path} as .npz: not an .npz (zip) archive")
    arrays = npz_arrays(path, ("images", "labels"))  # checked before anything is read
    if "images" not in arrays:
        with zipfile.ZipFile(path) as archive:
            found = [n.removesuffix(".npy") for n in archive.namelist()]
        raise EdgeganError(f"{path} has no 'images' array (found: {', '.join(found) or 'none'})")
    _check_npz_images(path, *arrays["images"])
    count = arrays["images"][1][0]
    if "labels" in arrays:
        dtype, shape = arrays["labels"]
        if shape != (count,) or dtype.kind not in "iu":
            raise EdgeganError(
                f"{path}: 'labels' must be integers of shape ({count},), got {dtype} {shape}"
            )
    try:
        with np.load(path, allow_pickle=False) as data:
            images = data["images"]
            labels = data["labels"] if "labels" in arrays else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise EdgeganError(f"cannot read {path} as .npz: {exc}") from None
    x = _images_from_npz(path, images)
    y = None if labels is None else torch.from_numpy(labels.astype(np.int64))
    return x, y


def load_samples(path: str | Path) -> tuple[Any, Any]:
    """Images ``(N, C, H, W)`` float32 in [-1, 1] and labels ``(N,)`` int64 or ``None``."""
    import torch

    images, labels = read_images(path)
    return (_to_float(images) if images.dtype == torch.uint8 else images), labels


def npz_of_folder(folder: Path) -> Path | None:
    """``folder/images.npz`` (what ``edgegan infer --format npz --out DIR`` writes) when the
    folder holds it and no images: then the folder's samples are that file's."""
    npz = folder / "images.npz"
    if npz.is_file() and not any(p.suffix.lower() in READ_EXTENSIONS for p in folder.iterdir()):
        return npz
    return None


def read_images(path: str | Path) -> tuple[Any, Any]:
    """As :func:`load_samples`, but 8-bit images (files, uint8 ``.npz``) stay uint8
    ``(N, C, H, W)`` in [0, 255] (a view of ``(N, H, W, C)`` storage): a quarter of the
    memory, and the values exactly as stored (the fid metric scales them as pytorch-fid)."""
    import torch

    path = Path(path).expanduser()
    if not path.exists():
        raise EdgeganError(f"samples not found: {path}")
    if path.is_dir():
        npz = npz_of_folder(path)
        if npz is not None:
            return _load_npz(npz)
        arr, labels = _load_folder(path)
        return _nchw(torch.from_numpy(arr)), labels
    if path.suffix.lower() == ".npz":
        return _load_npz(path)
    if path.suffix.lower() in READ_EXTENSIONS:
        raise EdgeganError(
            f"{path} is a single image; pass the folder of sample images (a grid is not "
            "evaluated) or an .npz written by `edgegan infer --format npz`"
        )
    raise EdgeganError(f"{path}: expected a folder of images or an .npz file")


def _build(
    metric: str, reference: str | None, params: Mapping[str, Any] | None
) -> tuple[Any, Any, bool]:
    """The registry entry of ``metric``, the metric built from it (checked to have a
    ``compute`` method) and whether the reference was passed to its factory."""
    from edgegan.contracts import check_metric
    from edgegan.plugins.manager import get_manager
    from edgegan.registry import factory_parameters

    registry = get_manager().registry("metrics")
    entry = registry.get(metric)
    params = dict(params or {})
    accepted, var_kw = factory_parameters(entry.factory)
    by_factory = reference is not None and ("reference" in accepted or var_kw)
    if by_factory:
        params.setdefault("reference", reference)
    obj = registry.build(metric, params, {})
    check_metric(entry, obj)
    return entry, obj, by_factory


def build_metric(
    metric: str = "digits",
    reference: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> tuple[Any, bool]:
    """Build ``metric`` through the plugin registry; returns the metric and whether the
    reference was passed to its factory (otherwise it goes to ``compute``). A metric
    without a ``compute`` method fails here, with one line naming its plugin."""
    _, obj, by_factory = _build(metric, reference, params)
    return obj, by_factory


def check_metric(
    metric: str, reference: str | None = None, params: Mapping[str, Any] | None = None
) -> Scorer:
    """Fail now, with one line, on what would fail a run's evaluation after its training: an
    unknown ``metric``, one whose factory fails (the fid metric without its weights) or
    builds no ``compute`` method. Returns the metric as a :class:`Scorer` for the run to keep
    (a metric that loads a network is built once, and loads it when first called)."""
    from edgegan.rng import random_state_kept

    with random_state_kept():  # the build may draw (a layer's init)
        return Scorer(metric, reference, params)


def _run(
    entry: Any, obj: Any, by_factory: bool, images: Any, labels: Any, reference: str | None
) -> dict:
    """``compute`` on the samples: a non-empty dict of plain ints (counts) and floats, or a
    one-line error naming the metric's plugin (see :func:`edgegan.contracts.call_metric`)."""
    from edgegan.contracts import call_metric

    if by_factory:
        return call_metric(entry, obj, images, labels=labels)
    return call_metric(entry, obj, images, labels=labels, reference=reference)


class Scorer:
    """``metric`` built once (through the plugin registry, checked to have ``compute``) and
    called on many sample sets: a run's validation passes and its final evaluation."""

    def __init__(
        self,
        metric: str = "digits",
        reference: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.name, self.reference = metric, reference
        self.entry, self.metric, self.by_factory = _build(metric, reference, params)

    def __call__(self, images: Any, labels: Any = None) -> dict[str, float]:
        """Scores of images ``(N, C, H, W)`` in [-1, 1] with optional conditioning labels."""
        _check_range(images)
        return self._score(images, labels)

    def _score(self, images: Any, labels: Any = None) -> dict[str, float]:
        return _run(self.entry, self.metric, self.by_factory, images, labels, self.reference)


def evaluate_tensors(
    images: Any,
    labels: Any = None,
    reference: str | None = None,
    metric: str = "digits",
    params: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Run ``metric`` on images ``(N, C, H, W)`` in [-1, 1], a tensor (any device; the metric
    moves them) or a NumPy array, with optional conditioning ``labels`` (tensor, array or
    list) against ``reference`` (None: the metric's own); ``params`` go to the metric's
    factory."""
    return Scorer(metric, reference, params)(images, labels)


def evaluate_generator(
    target: str | Path,
    num: int = 2000,
    seed: int = 0,
    backend: str = "torch",
    precision: str = "fp32",
    device: str = "cpu",
    reference: str | None = None,
    metric: str | None = None,
    params: Mapping[str, Any] | None = None,
    batch_size: int = 256,
    **runner_options: Any,
) -> dict[str, float]:
    """Sample ``num`` images from a GAN run or bundle on any backend and precision (as
    ``edgegan infer --seed`` would, saved as 8-bit images) and run ``metric`` on them: one
    step for ``infer --format npz`` then ``evaluate``, e.g. to score a bundle's INT8 graph.
    ``reference=None``: a run's own (:func:`config_reference`), else the metric's default;
    a metric left without the reference it needs fails before sampling. ``metric=None``: a
    run's ``eval.metric`` (the one its training scored it with), else ``digits``.
    ``params=None``: a run's ``eval.metric_params`` when it was scored with ``metric``."""
    import torch

    from edgegan.runtime import open_runner
    from edgegan.sampling import iter_samples, target_task, to_uint8_nhwc, value_range

    config = run_config(target)  # None: a bundle, or a damaged config (sampling says so)
    task = target_task(target)[0]
    if is_translation_task(task):
        how = "--direction AtoB --input DIR" if task == "cyclegan" else "--input DIR"
        raise EdgeganError(
            f"{target} is a {task} run or bundle: eval scores a GAN's samples; a {task} "
            "run is scored on its test split by `edgegan eval RUN` (as its eval.json: L1, PSNR, "
            f"SSIM; --metric fid), and `edgegan infer {how}` translates images"
        )
    # what the run itself chose, said when it fails: the user named neither
    own = [f"eval.metric={config.eval.metric}"] if metric is None and config is not None else []
    metric = metric or default_metric(target, config)
    if reference is None and config is not None:
        reference = config_reference(config, metric)
        if reference is not None and config.eval.reference:
            own.append(f"eval.reference={reference}")
        if metric == "digits" and reference is None:  # (a translation run was refused above)
            # as training refuses it: a digit classifier's scores of cats are meaningless
            raise EdgeganError(
                f"the digits metric scores runs on the bundled digits (data.name=mnist); "
                f"{target} trained on '{config.data.name}': give --metric fid --reference "
                "REAL_IMAGES (or a plugin's metric), or --reference for the digits metric"
            )
    if params is None and config is not None and config.eval.metric == metric:
        params = dict(config.eval.metric_params)  # the run's own, when scored with metric
    try:
        scorer = Scorer(metric, reference, params)  # bad names: fail before sampling
        _check_has_reference(scorer)
    except EdgeganError as exc:
        if own:
            exc.args = (
                f"{exc} (from the run's {' and '.join(own)}: --metric and --reference choose "
                "others)",
            )
        raise
    images, labels = [], []
    with open_runner(target, backend, precision, device=device, **runner_options) as runner:
        vrange = value_range(runner.spec)
        for batch in iter_samples(runner, num, seed=seed, batch_size=batch_size):
            images.append(torch.from_numpy(to_uint8_nhwc(batch["images"], vrange)))
            if "labels" in batch:
                labels.append(torch.from_numpy(batch["labels"]))
    x = _to_float(_nchw(torch.cat(images)))
    return scorer._score(x, torch.cat(labels) if labels else None)


def default_metric(target: str | Path, config: Any = None) -> str:
    """The metric ``edgegan eval`` scores a GAN run or bundle with when none is given: a gan
    run's own ``eval.metric`` (a bundle has no run config: ``digits``)."""
    config = config if config is not None else run_config(target)
    if config is None or config.task != "gan":  # a bundle; a translation run is not sampled
        return "digits"
    return str(config.eval.metric)


def run_config(target: str | Path) -> Any:
    """The config of a run directory (None: not a run, or a damaged config, which the
    sampling reports in its own words)."""
    from edgegan.config import load_run_config
    from edgegan.train.logs import is_run_dir

    if not is_run_dir(target):
        return None
    try:
        return load_run_config(target)
    except EdgeganError:
        return None


def config_reference(config: Any, metric: str | None = None) -> str | None:
    """The reference a run's metric (or ``metric``) scores against: ``eval.reference`` when
    the run was scored with that metric, else the test split of the bundled digits for runs
    on them (None: the metric's own default)."""
    if config.eval.reference and metric in (None, config.eval.metric):
        return str(config.eval.reference)
    return "mnist:test" if config.data.name == "mnist" else None


def _check_has_reference(scorer: Scorer) -> None:
    """A metric built without a reference it needs (its ``reference`` attribute is None, as
    fid's) fails now, before samples are drawn or read, not after."""
    if scorer.reference is None and getattr(scorer.metric, "reference", "") is None:
        raise EdgeganError(
            f"the {scorer.name} metric needs a reference: give --reference (reference=...)"
        )


def evaluate(
    samples_path: str | Path,
    reference: str | None = None,
    metric: str = "digits",
    params: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Load samples from ``samples_path`` (folder of images or .npz) and run ``metric``
    against ``reference`` (None: the metric's own; digits: ``mnist:test``)."""
    scorer = Scorer(metric, reference, params)  # bad names, no compute: fail before loading
    _check_has_reference(scorer)
    # The loaders check the range of what they read (uint8 is [-1, 1] by construction).
    return scorer._score(*load_samples(samples_path))
