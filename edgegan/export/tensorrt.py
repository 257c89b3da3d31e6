"""TensorRT engines built from a bundle's ONNX graphs, on the device that will run them.

TensorRT 10 and 11 (and TensorRT-RTX, the ``tensorrt_rtx`` module, same API family) build
*strongly typed* networks here: the precision is the ONNX graph's own (``model.onnx`` FP32,
``model.fp16.onnx`` mixed FP16, ``model.int8.onnx`` Q/DQ), never FP16/INT8 builder flags, which
TensorRT 11 removed. For each precision the bundle gets

- ``model.<precision>.engine`` (``model_AtoB.<precision>.engine`` for a cyclegan direction):
  the serialized plan as a plain file, which ``trtexec --loadEngine`` and Triton's
  ``tensorrt_plan`` backend load as is;
- ``timing.cache``: the builder's timing cache, reused by later builds on the same GPU
  (TensorRT only: TensorRT-RTX compiles its kernels just in time and keeps no timing cache);
- ``edgegan.json["engines"][precision]`` (``["engines"][direction][precision]``): the GPU,
  compute capability and TensorRT version it was built with, the optimisation profile, the
  workspace limit and the measured parity.

The optimisation profile (:mod:`edgegan.export.trt_profile`) spans ``--min-batch``/
``--opt-batch``/``--max-batch`` and, for the dynamic height and width of an image-to-image
graph, ``--min-size``/``--opt-size``/``--max-size`` (defaults: half, once and twice the run's
image size).

Engines are not portable across GPU models or TensorRT versions (TensorRT-RTX engines are, across
RTX GPUs of compute capability 8.6, 8.9 and 12.0); :func:`check_engine` compares that record with
the current device before an engine is loaded.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgegan.errors import EdgeganError
from edgegan.export.trt_profile import (
    DEFAULT_BATCH,
    DEFAULT_WORKSPACE_GB,
    BuildOptions,
    EngineBuildError,
    profile_shapes,
    resolve_profile,
)
from edgegan.fileio import atomic_write, sha256_file
from edgegan.runtime.base import PRECISIONS, TRT_EXTRA, BackendUnavailable

TIMING_CACHE = "timing.cache"


class TensorRTMissing(BackendUnavailable):
    """Neither ``tensorrt`` nor ``tensorrt_rtx`` can be imported."""


def import_tensorrt() -> ModuleType:
    """``tensorrt`` when installed, else ``tensorrt_rtx``; else the one-line error naming the
    extra to install."""
    errors = []
    for name in ("tensorrt", "tensorrt_rtx"):
        try:
            return __import__(name)
        except (ImportError, OSError) as exc:  # OSError: the wheel is there, libnvinfer not
            errors.append(exc)
    raise TensorRTMissing(
        f"TensorRT is not installed: {TRT_EXTRA} (TensorRT 10+ on a machine with an NVIDIA GPU)"
    )


def engine_file(precision: str, direction: str | None = None) -> str:
    from edgegan.export.bundle import model_file

    return model_file(precision, direction, ".engine")


def version_major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def library_version(trt: Any) -> str:
    """The TensorRT library's version. ``tensorrt_rtx``'s bindings have no ``__version__``:
    its distribution's version is the library's."""
    version = getattr(trt, "__version__", None)
    if version:
        return str(version)
    from importlib import metadata

    for dist in (
        "tensorrt-rtx",
        "tensorrt-rtx-cu13",
        "tensorrt-rtx-cu12",
        "tensorrt-rtx-cu13-bindings",
        "tensorrt-rtx-cu12-bindings",
    ):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def build_env(trt: ModuleType, device: str = "cuda:0") -> dict[str, str]:
    """The GPU, compute capability and TensorRT library/version engines are built and run on."""
    from edgegan.runtime.base import parse_device

    kind, index = parse_device(device if str(device).startswith("cuda") else "cuda:0")
    try:
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("TensorRT needs a CUDA GPU; torch sees none on this machine")
        major, minor = torch.cuda.get_device_capability(index)
        name = torch.cuda.get_device_name(index)
    except (ImportError, AssertionError, RuntimeError) as exc:
        raise BackendUnavailable(f"TensorRT needs a CUDA GPU: {exc}") from None
    return {
        "gpu": name,
        "compute_capability": f"{major}.{minor}",
        "tensorrt_version": library_version(trt),
        "library": trt.__name__,
    }


# TensorRT-RTX builds engines that run on any GPU of these compute capabilities (its support
# matrix: "portable across devices with compute capabilities 8.6, 8.9 and 12.0" by default).
RTX_PORTABLE = frozenset({"8.6", "8.9", "12.0"})


def check_engine(entry: dict[str, Any], env: dict[str, str], bundle: str | Path = "BUNDLE") -> None:
    """Refuse an engine recorded as built for another GPU, compute capability or TensorRT
    (a TensorRT-RTX engine moves freely between GPUs of :data:`RTX_PORTABLE`)."""
    fields: tuple[tuple[str, str], ...] = (
        ("library", "library"),
        ("gpu", "GPU"),
        ("compute_capability", "compute capability"),
        ("tensorrt_version", "TensorRT"),
    )
    portable = (
        entry.get("library") == env.get("library") == "tensorrt_rtx"
        and {
            str(entry.get("compute_capability")),
            str(env.get("compute_capability")),
        }
        <= RTX_PORTABLE
    )
    if portable:
        fields = (fields[0], fields[3])
    diffs = [
        f"{label} {entry.get(key)!s} (here {env.get(key)!s})"
        for key, label in fields
        if key in entry and str(entry.get(key)) != str(env.get(key))
    ]
    missing = [label for key, label in fields if key != "library" and key not in entry]
    if missing:
        diffs.append(f"no record of its {', '.join(missing)}")
    if diffs:
        raise EdgeganError(
            f"the engine {entry.get('file', '?')} was built for another device: "
            f"{'; '.join(diffs)}; engines do not move between GPUs or TensorRT versions: "
            f"rebuild it on this device with `edgegan export {bundle} --trt`"
        )


def engine_rows(engines: dict[str, dict[str, Any]]) -> list[str]:
    """One line per engine for the CLI: file, GPU, TensorRT, profile, parity (``engines``:
    ``{precision: entry}``, or ``{direction: {precision: entry}}`` for a cyclegan bundle)."""
    from edgegan.export.signature import DIRECTIONS

    flat = [
        (f"{d} {p}", e) for d, per in engines.items() if d in DIRECTIONS for p, e in per.items()
    ] or list(engines.items())
    lines = []
    for precision, e in flat:
        par = e.get("parity") or {}
        shapes = [next(iter(e.get("profile", {}).get(k, {}).values()), ["?"]) for k in
                  ("min", "opt", "max")]  # fmt: skip
        batch = "/".join(str(s[0]) for s in shapes)
        if all(len(s) == 4 for s in shapes):
            batch += ", size " + "/".join(f"{s[2]}x{s[3]}" for s in shapes)
        parity = (
            f"max abs {par['max_abs']:.2e}, PSNR {par['psnr']:.1f} dB vs fp32 ONNX"
            if par
            else "parity not measured"
        )
        lines.append(
            f"engine {precision}: {e['file']} on {e.get('gpu')} (sm {e.get('compute_capability')}"
            f", {e.get('library', 'tensorrt')} {e.get('tensorrt_version')}), batch {batch}, "
            f"{parity}"
        )
    return lines


def make_logger(trt: ModuleType, echo_warnings: bool = False) -> Any:
    """A TensorRT logger that keeps its latest warnings and errors for the one line of a
    failure (:meth:`said`); with ``echo_warnings`` it also prints warnings (not errors: those
    go into the failure's line) on stderr."""
    import sys

    class _Logger(trt.ILogger):  # type: ignore[name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []
            self.count = 0  # messages kept so far, the dropped ones included

        def log(self, severity: Any, msg: str) -> None:
            sev = getattr(trt.ILogger, "Severity", trt.ILogger)
            if severity in [getattr(sev, n, None) for n in ("INTERNAL_ERROR", "ERROR")]:
                self._keep(msg)
            elif severity == getattr(sev, "WARNING", None):
                self._keep(msg)
                if echo_warnings:
                    print(f"TensorRT: {self.messages[-1]}", file=sys.stderr)

        def _keep(self, msg: str) -> None:
            self.messages.append(" ".join(str(msg).split()))  # one line: TensorRT's have \n
            self.count += 1
            if len(self.messages) > 100:  # a long-lived runner's: the latest are what count
                del self.messages[:-50]

        def said(self, since: int = 0, last: int = 3) -> str:
            """The last ``last`` messages logged after ``since`` (a ``count`` taken before
            the call that failed), joined into one line."""
            new = self.messages[-(self.count - since) :] if self.count > since else []
            return "; ".join(new[-last:]) or "no message from TensorRT"

    return _Logger()


def _network_flags(trt: ModuleType) -> int:
    """Strongly typed: the flag on TensorRT 10 (and RTX); TensorRT 11 is only strongly typed
    and merely tolerates the deprecated flag, so it is not passed there."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if flag is None or (trt.__name__ == "tensorrt" and version_major(library_version(trt)) >= 11):
        return 0
    return 1 << int(flag)


def build_engine(
    trt: ModuleType,
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    batch: tuple[int, int, int] = DEFAULT_BATCH,
    workspace_gb: float = DEFAULT_WORKSPACE_GB,
    image_shape: list[int] | None = None,
    shapes: dict[str, tuple[list[int], list[int], list[int]]] | None = None,
    sizes: tuple[int, int, int] | None = None,
    timing_cache: str | Path | None = None,
) -> dict[str, Any]:
    """Parse ``onnx_path``, build a strongly typed engine and write the plan to
    ``engine_path``; the timing cache is read from and written back to ``timing_cache``
    (TensorRT only: :func:`uses_timing_cache`).
    Returns the profile and workspace used."""
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(
            f"TensorRT could not parse {Path(onnx_path).name}: "
            + ("; ".join(" ".join(e.split()) for e in errors) or logger.said())
        )
    inputs = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        inputs[tensor.name] = [int(d) for d in tensor.shape]
    prof = profile_shapes(inputs, batch, image_shape, shapes, sizes)

    config = builder.create_builder_config()
    workspace = int(workspace_gb * (1 << 30))
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    profile = builder.create_optimization_profile()
    for name, (lo, mid, hi) in prof.items():
        profile.set_shape(name, lo, mid, hi)
    config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if timing_cache and uses_timing_cache(trt) else None
    if cache_path is not None:
        cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(cache_bytes)
        # ignore_mismatch=False: a cache of another GPU or TensorRT (a bundle built elsewhere)
        # is refused; the build then starts a fresh one, which replaces it in the bundle. A
        # blob TensorRT cannot read at all gives no cache (trtexec checks for a null one).
        if cache is None or not config.set_timing_cache(cache, False):
            severity = getattr(trt.ILogger, "Severity", trt.ILogger)
            logger.log(severity.WARNING, f"{cache_path.name} is of another GPU or TensorRT "
                       "version: building with a new timing cache")  # fmt: skip
            config.set_timing_cache(config.create_timing_cache(b""), False)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        detail = logger.said(last=5)
        raise EngineBuildError(f"TensorRT could not build {Path(engine_path).name}: {detail}")
    engine_path = Path(engine_path)
    check_plan_loads(trt, plan, logger, engine_path.name)  # before it replaces an older one
    # Atomically (temp file, fsync, rename; the temp file goes on failure): an engine or
    # cache cut short by a full disk or Ctrl-C never replaces a good one.
    atomic_write(engine_path, lambda f: f.write(memoryview(plan).tobytes()))
    timing = config.get_timing_cache() if cache_path is not None else None
    if cache_path is not None and timing is not None:
        cache = memoryview(timing.serialize()).tobytes()
        atomic_write(cache_path, lambda f: f.write(cache))  # a link in a bundle is replaced
    return {
        "profile": {
            "min": {n: s[0] for n, s in prof.items()},
            "opt": {n: s[1] for n, s in prof.items()},
            "max": {n: s[2] for n, s in prof.items()},
        },
        "workspace": workspace,
        "warnings": logger.messages[-10:],
    }


def check_plan_loads(trt: ModuleType, plan: Any, logger: Any, name: str) -> None:
    """Refuse a plan this GPU cannot load. TensorRT-RTX 1.7 builds a plan on an H100 (compute
    capability 9.0) and then refuses to run it there: such a plan must not become the
    bundle's engine."""
    mark = logger.count  # the build's own warnings are not the reason
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise EngineBuildError(
            f"TensorRT built {name} but cannot load it on this GPU: "
            + load_failure(trt, logger, mark)
        )
    del engine


def load_failure(trt: ModuleType, logger: Any, since: int = 0) -> str:
    """What TensorRT said (after ``since``, see ``make_logger``) when it could not load a plan,
    and, where TensorRT-RTX refused this GPU, what to do about it."""
    said = logger.said(since)
    if trt.__name__ == "tensorrt_rtx" and re.search(
        r"compute capabilit|cannot run on this GPU", said, re.IGNORECASE
    ):
        said += (
            "; TensorRT-RTX runs only on the GPUs of its support matrix (not on an H100, "
            f"measured): install TensorRT instead: {TRT_EXTRA}"
        )
    return said


def uses_timing_cache(trt: ModuleType) -> bool:
    """TensorRT times tactics and keeps the timings in a cache; TensorRT-RTX compiles kernels
    just in time, ignores a timing cache (it only forces a GPU query at build time) and
    deprecated its API in 1.2, so none is made for it."""
    return trt.__name__ != "tensorrt_rtx"


def _on_device(device: str) -> Any:
    import contextlib

    from edgegan.runtime.base import parse_device

    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device(parse_device(device)[1])
    except ImportError:  # pragma: no cover
        pass
    return contextlib.nullcontext()


def build_engines(
    bundle: str | Path,
    precisions: list[str] | tuple[str, ...] | None = None,
    options: BuildOptions | None = None,
    *,
    directions: list[str] | tuple[str, ...] | None = None,
    device: str = "cuda:0",
    verify: bool = True,
    trt: ModuleType | None = None,
) -> dict[str, dict[str, Any]]:
    """Build an engine for each precision's ONNX graph in the bundle (all of them by default;
    each direction's in a cyclegan bundle, or those of ``directions``) on this machine's GPU,
    record them in ``edgegan.json`` and return ``meta["engines"]``. The profile is
    :func:`resolve_profile`'s from ``options`` (``None``: the bundle's defaults).

    With ``verify``, each engine is run against the bundle's FP32 graph on ONNX Runtime (CPU)
    on fresh inputs and the max abs error and PSNR are stored with it.
    """
    from edgegan.export import bundle as bundles
    from edgegan.export.signature import direction_spec

    bundle = Path(bundle)
    options = options or BuildOptions()
    trt = trt or import_tensorrt()
    meta = bundles.read_bundle(bundle)
    graphs = []  # (direction, spec, {precision: models entry}, precisions, profile)
    for d in directions or bundles.directions(meta) or [None]:  # type: ignore[list-item]
        models = bundles.graph_entries(meta, d)
        todo = list(precisions) if precisions else [p for p in PRECISIONS if p in models]
        absent = [p for p in todo if p not in models]
        if absent or not todo:
            raise EdgeganError(
                f"the bundle {bundle} has no {d + ' ' if d else ''}ONNX graph for "
                f"{', '.join(absent) or 'any precision'}; "
                "export it first (edgegan export RUN --onnx --fp16 --int8)"
            )
        for p in todo:  # before any build: a link, another graph, external data files
            bundles.check_graph_file(bundle / models[p]["file"], models[p])
        spec = direction_spec(meta["spec"], d, task=meta.get("task")) if d else dict(meta["spec"])
        profile = resolve_profile(spec, options.batch, options.size)
        graphs.append((d, spec, models, todo, profile))
    env = build_env(trt, device)
    for d, spec, models, todo, (batch, sizes) in graphs:
        for precision in todo:
            name = engine_file(precision, d)
            t0 = time.perf_counter()
            with _on_device(device):  # TensorRT builds for the calling thread's current device
                info = build_engine(
                    trt,
                    bundle / models[precision]["file"],
                    bundle / name,
                    batch=batch,
                    workspace_gb=options.workspace_gb,
                    image_shape=spec.get("image_shape"),
                    sizes=sizes,
                    timing_cache=bundle / TIMING_CACHE,
                )
            entry = {
                "file": name,
                "onnx": models[precision]["file"],
                **env,
                "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "build_seconds": round(time.perf_counter() - t0, 2),
                "strongly_typed": True,
                "profile": info["profile"],
                "workspace": info["workspace"],
                "timing_cache": TIMING_CACHE if uses_timing_cache(trt) else None,
                # checked before a runner loads the plan (a bundle from elsewhere)
                "sha256": sha256_file(bundle / name),
            }
            bundles.engine_entries(meta, d)[precision] = entry
            bundles.write_bundle(bundle, meta)  # recorded before the check, which reads it
            if verify:
                size = (sizes[1], sizes[1]) if sizes else None
                n = 2 if sizes else None  # a translator's reference runs on the CPU
                entry["parity"] = engine_parity(bundle, precision, device, n, d, size)
                bundles.write_bundle(bundle, meta)
    return meta["engines"]


def engine_parity(
    bundle: str | Path,
    precision: str,
    device: str = "cuda:0",
    batch: int | None = None,
    direction: str | None = None,
    size: tuple[int, int] | None = None,
) -> dict[str, float]:
    """Run the engine and the bundle's FP32 graph (ONNX Runtime, CPU) on the same fresh
    inputs (for a translator, images of ``size``, default the run's image size): max abs
    error and PSNR of the engine against it."""
    from edgegan.export.signature import make_feed
    from edgegan.runtime import open_runner
    from edgegan.runtime.bench import parity

    with open_runner(bundle, "onnxruntime", "fp32", device="cpu", direction=direction) as ref:
        with open_runner(
            bundle, "tensorrt", precision, device=device, direction=direction
        ) as runner:
            n = min(batch or 8, runner.max_batch or 8)
            inputs = make_feed(runner.spec, n, seed=1234, size=size)
            out = runner.run(inputs)
            if not np.isfinite(out).all():
                raise EngineBuildError(
                    f"the {precision} engine produced NaN or infinite values; it was kept in "
                    "the bundle for inspection but should not be used"
                )
            return parity(out, ref.run(inputs), runner.spec)
