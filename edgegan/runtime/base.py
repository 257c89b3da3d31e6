"""The one small interface every inference backend implements, and how a target is opened.

A *target* is a run directory (``checkpoints/last.pt``) or an exported bundle (a folder with
``edgegan.json``, written by ``edgegan export``), plus the direction for a cyclegan one. A
:class:`Runner` maps named input arrays to the raw output images, float32 ``(N, C, H, W)`` in
the spec's value range: a GAN's ``z`` float32 ``(N, latent_dim)`` and ``labels`` int64
``(N,)`` when conditional, a translator's ``image`` float32 ``(N, C_in, H, W)``
(:mod:`edgegan.export.signature`). Everything around that (latents from a seed, labels,
image padding, clipping, uint8) is shared in :mod:`edgegan.sampling` and
:mod:`edgegan.translate`, so it is identical on every backend.
"""

from __future__ import annotations

import numbers
import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgegan.errors import EdgeganError, caller_stacklevel

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
RUN_EXPORT_DIR = "export"  # RUN/export: where a run's bundle is looked for by default
TRT_EXTRA = "pip install 'edgegan[trt]'"
#: onnxruntime-gpu and onnxruntime install into one folder, so the GPU package must replace
#: the CPU one edgegan depends on (an extra installing both left the CPU one in place); and a
#: later pip install that resolves edgegan's requirements puts the CPU one back beside it.
GPU_INSTALL = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"


class BackendUnavailable(EdgeganError):
    """A backend, precision or device that cannot run here (not installed, no GPU, no such
    model in the bundle). One line; exit code 2."""


@dataclass
class Target:
    """What a runner was asked to open: a bundle (with its metadata) and/or a run directory."""

    path: Path
    bundle: Path | None = None
    meta: dict[str, Any] | None = None
    run_dir: Path | None = None
    direction: str | None = None

    @property
    def spec(self) -> dict[str, Any]:
        """The interface of the graph a runner runs: the GAN's, or the direction's."""
        if self.meta is not None:
            if self.direction:
                from edgegan.export.signature import direction_spec

                return direction_spec(self.meta["spec"], self.direction, task=self.meta.get("task"))
            return dict(self.meta["spec"])
        return dict(self.load_generator().spec)

    def load_generator(self, device: str = "cpu", match_bundle: bool = False) -> Any:
        """The run's generator (:class:`edgegan.sampling.RunGenerator`) for this target.

        ``match_bundle``: it must hold the weights of the target's bundle, so a run that
        trained on after the export (or another run's bundle) is refused with one line.
        """
        run_dir = self.source_run()
        if run_dir is None:
            raise EdgeganError(f"{self.path}: the run the bundle came from is not here")
        # the bundle's own checkpoint (best, step_N) when it must match; else the run's last
        checkpoint = (
            ((self.meta or {}).get("source") or {}).get("checkpoint") if match_bundle else None
        )
        if checkpoint:
            from edgegan.train.logs import checkpoint_file

            try:
                checkpoint_file(run_dir, checkpoint)
            except EdgeganError as exc:  # a snapshot pruned since (train.keep_checkpoints)
                raise StaleBundleError(
                    f"{self.bundle} was exported from checkpoint '{checkpoint}' of {run_dir}, "
                    f"which is gone: {exc}"
                ) from None
        if self.direction:
            from edgegan.translate import load_translator

            generator = load_translator(run_dir, self.direction, device, checkpoint=checkpoint)
        else:
            from edgegan.sampling import load_run_generator

            generator = load_run_generator(run_dir, device=device, checkpoint=checkpoint)
        from edgegan.export.bundle import export_command, recorded_digest, weights_digest

        if not match_bundle or self.bundle is None:
            return generator
        meta = self.meta or {}
        exported = (meta.get("source") or {}).get("step")
        again = f"export again (`{export_command(self.bundle, meta, run=run_dir)}`)"
        if self.run_dir is None:  # given the bundle: its run's own weights are the other way
            again += " or give the run directory to run its latest weights"
        if exported is not None and exported != generator.step:  # unrecorded: trusted
            raise StaleBundleError(
                f"{self.bundle} holds the weights of step {exported}, but its run {run_dir} is "
                f"now at step {generator.step}, so the torch generator is not the bundle's; "
                + again
            )
        digest = recorded_digest(meta, self.direction)
        if digest is not None and digest != weights_digest(generator.module):
            raise StaleBundleError(
                f"{run_dir} holds other weights than {self.bundle} was exported from (another "
                f"run trained to step {generator.step} in its folder?), so the torch generator "
                "is not the bundle's; " + again
            )
        return generator

    def source_run(self) -> Path | None:
        """The run directory the bundle was exported from, when it is still there."""
        if self.run_dir is not None:
            return self.run_dir
        run = ((self.meta or {}).get("source") or {}).get("run_dir")
        if not run:
            return None
        path = Path(run)
        if not path.is_absolute():
            # export writes an absolute path; a relative one (an edited or moved bundle) is
            # the bundle's neighbour, never whatever the working directory holds by that name
            if self.bundle is None:
                return None
            path = self.bundle / path
        from edgegan.train.logs import is_run_dir

        return path if is_run_dir(path) else None


def _is_bundle(path: Path) -> bool:
    from edgegan.export.bundle import is_bundle

    return is_bundle(path)


def _bundle_target(path: Path, bundle: Path, direction: str | None, run_dir: Path | None) -> Target:
    from edgegan.export.bundle import graph_entries, read_bundle
    from edgegan.export.signature import is_translation_task, only_direction

    meta = read_bundle(bundle)
    task = meta.get("task", "gan")
    if task != "gan" and not is_translation_task(task):
        raise EdgeganError(f"{bundle} is a '{meta.get('task')}' bundle, which edgegan cannot run")
    if direction is None:  # a pix2pix bundle's one generator needs no --direction
        direction = only_direction(task)
    graph_entries(meta, direction)  # a cyclegan bundle needs a direction it has; a GAN, none
    return Target(path, bundle=bundle, meta=meta, run_dir=run_dir, direction=direction)


def _wrong_kind(bundle: Path, direction: str | None) -> bool:
    """A readable bundle of the other kind than ``direction`` asks for: a GAN's with one, a
    cyclegan's without, a pix2pix's with one it cannot have (the run's error too)."""
    from edgegan.export.bundle import directions, read_bundle
    from edgegan.export.signature import TASK_DIRECTIONS

    try:
        meta = read_bundle(bundle)
    except EdgeganError:
        return False
    have = directions(meta)
    if direction is None:
        return bool(have) and len(TASK_DIRECTIONS.get(str(meta.get("task")), have)) > 1
    return not have or direction not in TASK_DIRECTIONS.get(str(meta.get("task")), have)


def resolve_target(
    target: str | Path | Target, need_bundle: bool = False, direction: str | None = None
) -> Target:
    """A path -> :class:`Target`. A run directory stands for its bundle in ``RUN/export``
    when it has one; ``need_bundle`` turns a run without one into a clear error. Without
    ``need_bundle`` (the torch backend), a run whose bundle cannot serve (unreadable, or
    without ``direction``) stands for itself, with a warning.
    ``direction`` (``AtoB``/``BtoA``) picks one generator of a cyclegan run or bundle."""
    if isinstance(target, Target):
        if need_bundle and target.bundle is None:
            return resolve_target(target.path, need_bundle=True, direction=target.direction)
        return target
    if direction is not None:
        from edgegan.export.signature import check_direction

        check_direction(direction)
    path = Path(target)
    if not path.exists():
        from edgegan.export.bundle import set_aside

        left = set_aside(path)
        why = (
            f"an interrupted export --overwrite left the previous bundle at {left[-1]}: "
            "rename it back, or run that export again, which puts it back first"
            if left
            else "give a run directory or an exported bundle"
        )
        raise EdgeganError(f"run directory not found: {path} ({why})")
    if _is_bundle(path):
        return _bundle_target(path, path, direction, None)
    from edgegan.train.logs import is_run_dir

    if is_run_dir(path):
        exported = path / RUN_EXPORT_DIR
        if _is_bundle(exported):
            if need_bundle:
                _warn_if_stale(path, exported)
                return _bundle_target(path, exported, direction, path)
            try:
                return _bundle_target(path, exported, direction, path)
            except EdgeganError as exc:
                # the torch backend runs the run itself: a bundle it cannot use (damaged, or
                # without this direction) is no reason to refuse it. A --direction given for a
                # GAN (or none for a cyclegan) is the run's error too: it alone is said.
                if not _wrong_kind(exported, direction):
                    import warnings

                    warnings.warn(f"{exported} is not used: {exc}", stacklevel=caller_stacklevel())
        if need_bundle:
            raise EdgeganError(
                f"{path} is a run directory without a bundle in {RUN_EXPORT_DIR}/; this needs "
                "an exported bundle: "
                f"run `edgegan export {path}` first, then pass the bundle folder"
            )
        return Target(path, run_dir=path, direction=direction)
    raise EdgeganError(
        f"{path} is neither a run directory (no checkpoints/last.pt) nor an exported bundle "
        "(no edgegan.json)"
    )


def _input_plan(spec: dict[str, Any]) -> tuple[list[tuple[str, list[tuple[int, Any]]]], int, int]:
    """What :meth:`Runner.check_inputs` checks: each input's ``(axis, size or None)``, the
    size multiple of a translator's H and W (0: none) and the number of classes."""
    from edgegan.export.signature import io_spec, is_translator

    shapes = [
        (e["name"], [(i, d if isinstance(d, int) else None) for i, d in enumerate(e["shape"])])
        for e in io_spec(spec)[0]
    ]
    multiple = int(spec["size_multiple"]) if is_translator(spec) else 0
    return shapes, multiple, int(spec.get("num_classes") or 0)


class StaleBundleWarning(UserWarning):
    """A run's bundle (RUN/export) is older than the run's checkpoint."""


class StaleBundleError(EdgeganError):
    """The torch generator of a bundle's run no longer holds the bundle's weights."""


def _warn_if_stale(run_dir: Path, bundle: Path) -> None:
    """Say so when the run trained on (``--resume``) after its bundle was exported: the
    bundle's graphs then hold older weights than the torch backend and ``bench``'s reference."""
    import warnings

    from edgegan.export.bundle import BUNDLE_FILE, export_command, read_bundle
    from edgegan.train.logs import checkpoint_file

    try:
        meta = read_bundle(bundle)
        # the checkpoint it was exported from (best, step_N: a later last.pt changes nothing)
        name = (meta.get("source") or {}).get("checkpoint")
        source = checkpoint_file(run_dir, name)
        newer = source.stat().st_mtime > (bundle / BUNDLE_FILE).stat().st_mtime
    except (OSError, EdgeganError):  # gone or unreadable: the runner says so
        return
    if newer:
        written = f"checkpoint '{name}' was last written" if name else "last checkpoint"
        warnings.warn(
            f"{bundle} was exported before the run's {written}: it holds older weights; run "
            f"`{export_command(bundle, meta, run=run_dir)}` to export the latest",
            StaleBundleWarning,
            stacklevel=caller_stacklevel(),
        )


def bundle_directions(target: str | Path | Target) -> list[str | None]:
    """The directions of the cyclegan bundle at ``target`` (or in ``RUN/export``), or
    ``[None]`` for a GAN bundle and anything else: one graph, no direction."""
    from edgegan.export.bundle import directions, read_bundle

    path = Path(target.path if isinstance(target, Target) else target)
    for folder in (path, path / RUN_EXPORT_DIR):
        if _is_bundle(folder):
            return list(directions(read_bundle(folder))) or [None]
    return [None]


def is_int(value: Any) -> bool:
    """A Python or NumPy integer, not a bool: what an API argument given as a count or seed
    must be (the CLI's option types check the same)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def parse_device(device: str) -> tuple[str, int]:
    """``"cpu"`` -> ("cpu", 0); ``"cuda"`` / ``"cuda:1"`` -> ("cuda", 1); ``"auto"`` as
    :func:`resolve_auto` picks."""
    text = str(resolve_auto(device)).strip().lower()
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise EdgeganError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N")
    return kind, int(index or 0)


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once): the default
    thread count of the onnxruntime runner, as onnxruntime's own default is. On macOS and
    Windows, the machine's physical cores (the logical CPUs where those cannot be read)."""
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS, Windows (each tested with a stand-in)
        counted = None
        if sys.platform == "darwin":
            counted = _darwin_physical_cores()
        elif sys.platform == "win32":
            counted = _windows_physical_cores()
        return counted or max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(
                (topo / "physical_package_id").read_text().strip()
                + ":"
                + (topo / "core_id").read_text().strip()
            )
        except OSError:
            cores.add(f"cpu{cpu}")
    return max(1, len(cores))


def _darwin_physical_cores(libc: Any = None) -> int | None:
    """macOS: ``sysctl hw.physicalcpu``. ``libc`` stands in for ctypes' in tests."""
    import ctypes

    try:
        libc = libc or ctypes.CDLL(None)
        value, size = ctypes.c_int(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_int))
        ok = libc.sysctlbyname(b"hw.physicalcpu", ctypes.byref(value), ctypes.byref(size), None, 0)
    except (OSError, AttributeError, TypeError):
        return None
    return value.value if ok == 0 and value.value > 0 else None


#: GetLogicalProcessorInformationEx's relationship of one record per physical core
_RELATION_PROCESSOR_CORE = 0


def _windows_physical_cores(kernel32: Any = None) -> int | None:
    """Windows: the RelationProcessorCore records of GetLogicalProcessorInformationEx (each
    starts with its relationship and its size, two DWORDs). ``kernel32``: a stand-in."""
    import ctypes
    import struct

    try:
        if kernel32 is None:
            kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        size = ctypes.c_uint32(0)
        kernel32.GetLogicalProcessorInformationEx(
            _RELATION_PROCESSOR_CORE, None, ctypes.byref(size)
        )
        if not size.value:
            return None
        buf = ctypes.create_string_buffer(size.value)
        if not kernel32.GetLogicalProcessorInformationEx(
            _RELATION_PROCESSOR_CORE, buf, ctypes.byref(size)
        ):
            return None
    except (OSError, AttributeError, TypeError):
        return None
    count, offset = 0, 0
    while offset + 8 <= size.value:
        relationship, record = struct.unpack_from("<II", buf.raw, offset)
        if record < 8:
            break  # malformed: do not loop for ever
        count += relationship == _RELATION_PROCESSOR_CORE
        offset += record
    return count or None


def model_entry(target: Target, precision: str) -> dict[str, Any]:
    """The bundle's ``models[precision]`` entry, or a clear error naming the export flag."""
    from edgegan.export.bundle import graph_entries

    check_precision(precision)
    models = graph_entries(target.meta or {}, target.direction)
    entry = models.get(precision)
    if not entry:
        from edgegan.export.bundle import missing_model

        raise BackendUnavailable(
            missing_model(
                target.bundle or target.path, target.meta or {}, precision, target.direction
            )
        )
    return entry


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise EdgeganError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")


class Runner(ABC):
    """One backend, precision and device, loaded and ready to run batches.

    ``spec`` is the generator's interface (``latent_dim``, ``num_classes``, ``image_shape``,
    ``value_range``); ``max_batch`` the largest batch it accepts (None: any).
    """

    name: str = ""
    precision: str = "fp32"
    device: str = "cpu"
    spec: dict[str, Any]
    max_batch: int | None = None

    @property
    def input_names(self) -> tuple[str, ...]:
        from edgegan.export.signature import input_names

        return tuple(input_names(self.spec))

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        """One line for inputs the graph cannot take (names, batch sizes, shapes, labels),
        before a backend fails on them with its own error. Runs before every call: cheap."""
        if getattr(self, "_closed", False):
            raise EdgeganError(
                f"this {self.name} runner is closed (its with-block ended, or close() was "
                "called); open another with edgegan.runtime.open_runner"
            )
        plan = getattr(self, "_input_plan", None)
        if plan is None:  # once per runner
            plan = self._input_plan = _input_plan(self.spec)
        missing = [n for n, _ in plan[0] if n not in inputs]
        if missing:
            raise EdgeganError(f"missing input(s) {', '.join(missing)} for {self.name}")
        shapes, multiple, classes = plan

        def wrong_shape(name: str, want: list[tuple[int, int | None]]) -> EdgeganError:
            shown = ", ".join("?" if d is None else str(d) for _, d in want)
            got = tuple(np.shape(inputs[name]))
            return EdgeganError(f"input '{name}' must have shape ({shown}); got {got}")

        for name, want in shapes:  # the rank first: a 1-D z was "different batch sizes"
            if len(np.shape(inputs[name])) != len(want):
                raise wrong_shape(name, want)
        sizes = {int(np.shape(inputs[n])[0]) for n, _ in plan[0]}
        if len(sizes) != 1:
            raise EdgeganError(f"inputs have different batch sizes: {sorted(sizes)}")
        batch = sizes.pop()
        if self.max_batch is not None and batch > self.max_batch:
            raise EdgeganError(
                f"batch {batch} is larger than this {self.name} runner takes ({self.max_batch})"
            )
        for name, want in shapes:
            got = np.shape(inputs[name])
            if any(got[i] != d for i, d in want if d is not None):
                raise wrong_shape(name, want)
        if multiple:
            h, w = np.shape(inputs[shapes[0][0]])[2:]
            if h % multiple or w % multiple:
                raise EdgeganError(
                    f"image height and width must be multiples of {multiple}; got {h}x{w} (pad "
                    "them: edgegan.translate.translate_arrays does)"
                )
        elif classes:
            labels = np.asarray(inputs["labels"])
            if labels.size and labels.dtype.kind not in "iu":  # 7.5 ran as class 7, silently
                raise EdgeganError(f"labels must be integers (int64); got {labels.dtype}")
            lo, hi = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
            if lo < 0 or hi >= classes:
                raise EdgeganError(f"labels must be in [0, {classes}); got {lo}..{hi}")

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Named inputs -> float32 images (N, C, H, W) on the host (raw, not yet clipped)."""

    def synchronize(self) -> None:
        """Wait for queued device work (``run`` already returns host arrays)."""
        return None

    def close(self) -> None:
        """Release the session, engine and buffers; later calls to ``run`` are refused."""
        self._closed = True

    def graphed(self, inputs: dict[str, np.ndarray]) -> bool:
        """Whether calls with inputs of these shapes now replay a CUDA graph."""
        return False

    def describe(self) -> str:
        return f"{self.name}/{self.precision}/{self.device}"

    def __repr__(self) -> str:  # a notebook shows the runner, not an address
        return f"<{type(self).__name__} {self.describe()}>"

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_OPTIONS: dict[str, set[str]] = {
    "torch": {"compile", "channels_last"},
    "onnxruntime": {"threads", "cuda_graphs", "provider_options"},
    "tensorrt": {"cuda_graphs"},
}
#: The command-line option of each runner option, which errors name (as the API's do).
_FLAGS = {"provider_options": "--ort-option"}


def _flag(option: str) -> str:
    return _FLAGS.get(option, "--" + option.replace("_", "-"))


def resolve_auto(device: str) -> str:
    """``auto``: ``cuda`` when torch sees a GPU, else ``cpu`` (as ``train.device=auto``);
    any other name as given."""
    if isinstance(device, str) and device.strip().lower() == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def open_runner(
    target: str | Path | Target,
    backend: str = "torch",
    precision: str = "fp32",
    device: str = "cpu",
    direction: str | None = None,
    **options: Any,
) -> Runner:
    """Open ``target`` (run directory or bundle; ``direction`` AtoB/BtoA for a cyclegan one)
    on ``backend`` at ``precision``.

    Options:

    - torch: ``compile=True`` or a torch.compile mode such as ``"reduce-overhead"``
      (compiled with frozen weights; each input shape compiles on its first call) and
      ``channels_last=True`` (weights and images in channels-last layout);
    - onnxruntime: ``threads=N`` (intra-op threads, default the physical cores),
      ``cuda_graphs=False`` (on CUDA it replays a CUDA graph per input shape by default)
      and ``provider_options`` (more CUDA execution provider options, e.g.
      ``{"prefer_nhwc": "1"}``);
    - tensorrt: ``cuda_graphs=False`` (on by default).

    The tensorrt backend always runs on CUDA (``device`` picks ``cuda:N``).
    """
    check_precision(precision)
    device = resolve_auto(device)
    allowed = _OPTIONS.get(backend, set())
    extra = sorted(k for k in options if k not in allowed)
    if backend in _OPTIONS and extra:
        raise EdgeganError(
            f"{', '.join(map(_flag, extra))} does not apply to the {backend} backend"
            + (f" (it takes: {', '.join(sorted(map(_flag, allowed)))})" if allowed else "")
        )
    if backend == "torch":
        from edgegan.runtime.torch_runner import TorchRunner

        return TorchRunner.open(
            resolve_target(target, direction=direction), precision, device, **options
        )
    if backend == "onnxruntime":
        from edgegan.runtime.ort_runner import OrtRunner

        return OrtRunner(resolve_target(target, True, direction), precision, device, **options)
    if backend == "tensorrt":
        from edgegan.export.tensorrt import import_tensorrt
        from edgegan.runtime.trt_runner import TrtRunner

        import_tensorrt()  # the one-line "install the extra" error before anything else
        return TrtRunner(resolve_target(target, True, direction), precision, device, **options)
    from edgegan.errors import unknown

    raise unknown("backend", backend, BACKENDS)
