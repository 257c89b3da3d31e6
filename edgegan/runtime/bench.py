"""``edgegan bench``: latency, throughput, memory and parity per backend, precision and batch.

For each combination: open the runner, ``warmup`` untimed runs, then ``iters`` timed runs
(``time.perf_counter`` around ``runner.run``, which returns host arrays, so device work is
included and finished), p50/p95/mean latency, images per second, the peak memory, and the
parity of the outputs against PyTorch FP32 on the CPU on the very same inputs (max abs error
and PSNR over the value range). Combinations that cannot run here are kept in the results with
``status: "skipped"`` and the reason.

Memory: on the CPU, the peak resident set size (VmHWM, reset through
``/proc/self/clear_refs`` before each combination) above the RSS before the runner was opened,
so it includes the loaded model and the working memory of the runs. On CUDA, the larger of
torch's peak allocation and the device memory in use (``cudaMemGetInfo``, which also sees
ONNX Runtime's and TensorRT's own allocations) above what was in use before.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgegan.errors import EdgeganError
from edgegan.export.bundle import BundleReplaced
from edgegan.registry import name_list
from edgegan.runtime.base import (
    BACKENDS,
    PRECISIONS,
    StaleBundleError,
    StaleBundleWarning,
    Target,
    bundle_directions,
    check_precision,
    is_int,
    open_runner,
    parse_device,
    physical_cores,
    resolve_auto,
    resolve_target,
)

BENCH_FORMAT = 1
#: Untimed runs a compiled torch runner gets at least: the first compiles the shape, the
#: next ones record and then replay its CUDA graph (``reduce-overhead``).
COMPILED_WARMUP = 3


def parity(
    images: np.ndarray, reference: np.ndarray, spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Max abs error and PSNR (dB over the value range's width, capped at
    :data:`edgegan.export.verify.PSNR_CAP` for identical outputs) of ``images`` against
    ``reference``, both clipped to the value range first as every backend's outputs are.

    Outputs holding NaN or infinities have no error to measure: ``max_abs`` and ``psnr`` are
    None, ``nonfinite`` counts the values (``infer`` refuses such outputs), and
    ``reference_nonfinite`` those of the reference, when it has any."""
    from edgegan.export.verify import psnr
    from edgegan.sampling import postprocess, value_range

    low, high = value_range(spec or {})
    # counted before clipping, which turns inf into the range's ends
    nonfinite = int(np.size(images) - np.count_nonzero(np.isfinite(images)))
    reference_nonfinite = int(np.size(reference) - np.count_nonzero(np.isfinite(reference)))
    a = postprocess(images, spec)
    b = postprocess(reference, spec)
    if a.shape != b.shape:
        raise EdgeganError(f"output shapes differ: {a.shape} vs {b.shape}")
    if nonfinite or reference_nonfinite:
        return {
            "max_abs": None,
            "psnr": None,
            "nonfinite": nonfinite,
            **({"reference_nonfinite": reference_nonfinite} if reference_nonfinite else {}),
        }
    max_abs = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    return {"max_abs": max_abs, "psnr": round(psnr(b, a, peak=high - low), 2)}


# -- memory -------------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _trim_heap() -> None:
    """Give the heap's freed memory back to the system (glibc's malloc_trim), so the RSS a
    row is measured from counts live memory only: the reference outputs of a large batch,
    freed but kept by malloc, made the rows after them look 30 to 85 MB smaller."""
    if not sys.platform.startswith("linux"):  # (CDLL(None) raises TypeError on Windows)
        return
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl)
        pass


class _HostMemory:
    """Peak RSS above a baseline, resettable through /proc/self/clear_refs on Linux."""

    def __init__(self) -> None:
        _trim_heap()
        self.baseline_kb = _status_kb("VmRSS") or 0
        self.exact = self.reset_peak()

    def reset_peak(self) -> bool:
        """Start the peak anew from the current RSS (a row per batch size: the rows of one
        runner were a running maximum), after giving back what the last one freed; whether
        that could be done."""
        _trim_heap()
        try:
            # "5" resets VmHWM to the current RSS
            Path("/proc/self/clear_refs").write_text("5", encoding="utf-8")
            return True
        except OSError:
            return False

    def peak_mb(self) -> float | None:
        """The peak above the baseline, or None ("-" in the table) without /proc (macOS,
        Windows): the process's lifetime peak there (``ru_maxrss``) less a baseline of 0
        read 290 MB where Linux measured 2-11 MB for the same rows."""
        peak = _status_kb("VmHWM")
        if peak is None:
            return None
        return round(max(0, peak - self.baseline_kb) / 1024, 2)


class _DeviceMemory:
    def __init__(self, index: int) -> None:
        import torch

        self.index = index
        torch.cuda.synchronize(index)
        torch.cuda.reset_peak_memory_stats(index)
        self.torch_base = torch.cuda.memory_allocated(index)
        free, total = torch.cuda.mem_get_info(index)
        self.used_base = total - free
        self.exact = True

    def reset_peak(self) -> bool:
        import torch

        torch.cuda.synchronize(self.index)
        torch.cuda.reset_peak_memory_stats(self.index)
        return True

    def peak_mb(self) -> float:
        import torch

        torch.cuda.synchronize(self.index)
        torch_peak = torch.cuda.max_memory_allocated(self.index) - self.torch_base
        free, total = torch.cuda.mem_get_info(self.index)
        used = total - free - self.used_base
        return round(max(torch_peak, used, 0) / 2**20, 2)


# -- the benchmark ------------------------------------------------------------------------------
def _backend_device(backend: str, device: str) -> str:
    kind, index = parse_device(device)
    return f"cuda:{index}" if backend == "tensorrt" else device


def _require_cuda(device: str) -> None:
    from edgegan.runtime.base import BackendUnavailable

    try:
        import torch

        ok = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        ok = False
    if not ok:
        raise BackendUnavailable(f"{device}: no CUDA GPU here (torch sees none)")


def _time_runs(runner: Any, inputs: dict[str, np.ndarray], warmup: int, iters: int) -> tuple:
    """Latencies in ms of ``iters`` runs after ``warmup`` untimed ones, the last output, and
    the seconds the first warm-up run took (a compile or graph capture shows there)."""
    first_s = None
    for i in range(warmup):
        t0 = time.perf_counter()
        runner.run(inputs)
        if i == 0:
            runner.synchronize()
            first_s = time.perf_counter() - t0
    runner.synchronize()
    times = []
    out = None
    for _ in range(iters):
        t0 = time.perf_counter()
        out = runner.run(inputs)
        runner.synchronize()
        times.append(time.perf_counter() - t0)
    return np.asarray(times) * 1e3, out, first_s


def environment() -> dict[str, Any]:
    """Versions and hardware the figures were measured on, the OpenMP wait policy and the
    load average (another job's load slows every CPU figure)."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "physical_cores": physical_cores(),
        # CPU timings depend on both: OpenMP's threads spin unless told to wait passively
        # (the CLI tells them so on a busy CPU), and another job's load slows every figure
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average": _load_average(),
    }
    from edgegan.export.tensorrt import library_version

    for mod in ("torch", "onnxruntime", "tensorrt", "tensorrt_rtx"):
        try:
            env[mod] = library_version(__import__(mod))
        except Exception:  # noqa: BLE001 - absent or broken: just not recorded
            continue
    try:
        import torch

        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    return env


def load_averages() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (how busy the CPU is), or None where the system
    has none to read (Windows)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _load_average() -> float | None:
    """The 1-minute load average, or None."""
    loads = load_averages()
    return loads[0] if loads else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def bench(
    target: str | Path | Target,
    backends: list[str] | tuple[str, ...] = BACKENDS,
    precisions: list[str] | tuple[str, ...] = PRECISIONS,
    batch_sizes: list[int] | tuple[int, ...] = (1, 8),
    warmup: int = 10,
    iters: int = 50,
    device: str = "cpu",
    seed: int = 0,
    threads: int | None = None,
    progress: Any = None,
    directions: list[str] | tuple[str, ...] | None = None,
    size: Any = None,
    cuda_graphs: bool | None = None,
    ort_options: dict[str, str] | None = None,
    compile: bool | str | None = None,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Benchmark a bundle (or a run with a bundle in ``RUN/export``); returns the JSON-ready
    results (``results``: one row per backend x precision x batch size, and per direction
    of a cyclegan bundle, whose inputs are random images of ``size``: ``N`` or ``"HxW"``,
    default the run's image size). A single name may stand for a list; repeats count once.
    ``cuda_graphs`` turns the CUDA graphs of the onnxruntime and tensorrt runners on or off
    (None: each backend's default); ``ort_options`` are more options of onnxruntime's CUDA
    execution provider (e.g. ``{"prefer_nhwc": "1"}``). ``compile`` (a torch.compile mode,
    or True) and ``channels_last`` add torch rows run that way beside the eager ones;
    compiled rows get at least :data:`COMPILED_WARMUP` warm-up runs (the first compiles:
    ``first_run_s``)."""
    from edgegan.runtime.torch_runner import compile_mode

    load = _load_average()  # before the bench adds its own
    compile = compile_mode(compile)
    backends, precisions = name_list(backends), name_list(precisions)
    if (compile or channels_last) and "torch" not in backends:
        raise EdgeganError("--compile and --channels-last apply to the torch backend's rows")
    directions = name_list(directions) if directions else None
    if directions:
        from edgegan.export.signature import check_direction

        for name in directions:
            check_direction(name, "--directions")
    for b in backends:
        if b not in BACKENDS:
            from edgegan.errors import unknown

            raise unknown("backend", b, BACKENDS)
    if (threads is not None or ort_options) and "onnxruntime" not in backends:
        raise EdgeganError("--threads and --ort-option apply to the onnxruntime backend's rows")
    for p in precisions:
        check_precision(p)
    # 1.5 was timed as 1.5 images a call; 8 (not a list) a TypeError
    if not isinstance(batch_sizes, (str, bytes)) and hasattr(batch_sizes, "__iter__"):
        batch_sizes = list(batch_sizes)  # a range, a NumPy array
    if (
        not isinstance(batch_sizes, list)
        or not batch_sizes
        or not all(is_int(b) and b > 0 for b in batch_sizes)
    ):
        raise EdgeganError(
            f"--batch-sizes must be positive integers, e.g. 1,8; got {batch_sizes!r}"
        )
    if not (is_int(warmup) and is_int(iters)) or warmup < 0 or iters <= 0:
        raise EdgeganError(
            f"--warmup must be an integer >= 0 and --iters > 0; got {warmup!r} and {iters!r}"
        )
    device = resolve_auto(device)
    parse_device(device)
    from edgegan.export.signature import is_translator, make_feed, parse_size

    rows: list[dict[str, Any]] = []
    first: Target | None = None
    hw = None
    graphs: list[str | None] = list(directions or bundle_directions(target))
    for direction in graphs:
        t = resolve_target(target, need_bundle=True, direction=direction)
        first = first or t
        spec = t.spec
        tags: dict[str, Any] = {}
        if is_translator(spec):
            hw = parse_size(size, spec)
            tags = {"direction": direction, "size": list(hw)}
        elif size is not None:
            raise EdgeganError("--size applies to image-to-image (cyclegan, pix2pix) bundles")
        inputs = {b: make_feed(spec, int(b), seed, hw) for b in batch_sizes}
        reference, ref_name = _reference(t, inputs)
        for backend in backends:
            options = _runner_options(backend, threads, cuda_graphs, ort_options)
            # (torch on the CPU is warm from the reference: a third load of the checkpoint)
            warm = ref_name == "torch/fp32/cpu" and _backend_device(backend, device) == "cpu"
            if t is first and not (backend == "torch" and warm):
                _warm_up_library(t, backend, device, inputs[min(inputs)], options)
            variants = [(options, tags)]
            if backend == "torch" and (compile or channels_last):
                # beside the eager rows, so one table compares them
                extra = torch_options(compile, channels_last)
                variants.append(({**options, **extra}, {**tags, **extra}))
            for precision in precisions:
                for opts, row_tags in variants:
                    rows += _bench_one(
                        t, backend, precision, device, inputs, reference, warmup, iters, opts,
                        row_tags,
                    )  # fmt: skip
                    if progress:
                        progress(rows[-len(inputs) :])
    assert first is not None
    return {
        "format": BENCH_FORMAT,
        "bundle": str(first.bundle),
        "source_run": str(first.source_run()) if first.source_run() else None,
        "task": first.meta.get("task", "gan"),  # type: ignore[union-attr]
        "spec": dict(first.meta["spec"]),  # type: ignore[index]
        **({"directions": graphs} if hw else {}),
        **({"size": list(hw)} if hw else {}),
        "device": device,
        "reference": ref_name,
        "warmup": warmup,
        "iters": iters,
        "seed": seed,
        **({"cuda_graphs": cuda_graphs} if cuda_graphs is not None else {}),
        **({"ort_options": dict(ort_options)} if ort_options else {}),
        **torch_options(compile, channels_last),
        "environment": {**environment(), "load_average": load},
        "results": rows,
    }


def _reference(target: Target, inputs: dict[int, dict[str, np.ndarray]]) -> tuple[dict, str]:
    """Outputs of PyTorch FP32 on the CPU for each batch; ONNX Runtime FP32 when the run the
    bundle came from is not here or no longer holds the bundle's weights (it trained on)."""
    from edgegan.runtime.torch_runner import TorchRunner

    try:
        with TorchRunner(target.load_generator("cpu", match_bundle=True), "fp32") as ref:
            return {b: ref.run(x) for b, x in inputs.items()}, "torch/fp32/cpu"
    except StaleBundleError as exc:
        warnings.warn(f"{exc}; parity is against onnxruntime fp32", StaleBundleWarning, 2)
    except EdgeganError:
        pass
    try:
        with open_runner(target, "onnxruntime", "fp32", device="cpu") as ref:
            return {b: ref.run(x) for b, x in inputs.items()}, "onnxruntime/fp32/cpu"
    except EdgeganError:
        return {}, "none"


def _row(
    backend: str, precision: str, device: str, batch: int, tags: dict | None, **extra: Any
) -> dict[str, Any]:
    return {
        **(tags or {}),
        "backend": backend,
        "precision": precision,
        "device": device,
        "batch": batch,
        **extra,
    }


def _runner_options(
    backend: str, threads: int | None, cuda_graphs: bool | None, ort_options: dict | None
) -> dict:
    """The open_runner options bench passes to ``backend``."""
    options: dict[str, Any] = {"threads": threads} if backend == "onnxruntime" else {}
    if cuda_graphs is not None and backend in ("onnxruntime", "tensorrt"):
        options["cuda_graphs"] = cuda_graphs
    if ort_options and backend == "onnxruntime":
        options["provider_options"] = dict(ort_options)
    return options


def torch_options(compile: str | None, channels_last: bool) -> dict[str, Any]:
    """The torch runner's options for ``--compile``/``--channels-last`` (bench also records
    them in its rows and results; infer passes them on)."""
    return {
        **({"compile": compile} if compile else {}),
        **({"channels_last": True} if channels_last else {}),
    }


def _warm_up_library(
    target: Target, backend: str, device: str, x: dict[str, np.ndarray], options: dict
) -> None:
    """Open and run the backend once before any row is measured: its one-time setup (the
    library's own allocations, kernels loaded) would otherwise count in whichever row runs
    first, which then showed ten times the memory of the same row run later."""
    try:
        with open_runner(
            target, backend, "fp32", device=_backend_device(backend, device), **options
        ) as r:
            r.run(x)
    except Exception:  # noqa: BLE001 - the measured rows report what cannot run
        pass


def _bench_one(
    target: Target,
    backend: str,
    precision: str,
    device: str,
    inputs: dict[int, dict[str, np.ndarray]],
    reference: dict[int, np.ndarray],
    warmup: int,
    iters: int,
    options: dict[str, Any],
    tags: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The rows of one backend and precision; ``tags`` (direction, size) head each row."""
    dev = _backend_device(backend, device)
    kind, index = parse_device(dev)
    try:
        if backend == "tensorrt":
            from edgegan.export.tensorrt import import_tensorrt

            import_tensorrt()  # "not installed" says more than "no GPU"
        if kind == "cuda":
            _require_cuda(dev)
        memory: Any = _DeviceMemory(index) if kind == "cuda" else _HostMemory()
        t0 = time.perf_counter()
        runner = open_runner(target, backend, precision, device=dev, **options)
        load_s = time.perf_counter() - t0
    except BundleReplaced:
        raise  # the rows so far measured the bundle that was replaced: not a table of one
    except EdgeganError as exc:
        return [
            _row(backend, precision, dev, b, tags, status="skipped", reason=str(exc))
            for b in inputs
        ]
    rows = []
    try:
        for batch, x in inputs.items():
            if runner.max_batch is not None and batch > runner.max_batch:
                reason = f"batch {batch} > the engine's max batch {runner.max_batch}"
                rows.append(
                    _row(backend, precision, dev, batch, tags, status="skipped", reason=reason)
                )
                continue
            memory.reset_peak()  # this batch's peak, not the largest batch's so far
            try:
                # a compiled runner's first runs compile, then record its CUDA graph
                warm = max(warmup, COMPILED_WARMUP) if getattr(runner, "compiled", None) else warmup
                ms, out, first_s = _time_runs(runner, x, warm, iters)
            except Exception as exc:  # noqa: BLE001 - one failing combination, not the table
                rows.append(
                    _row(
                        backend, precision, dev, batch, tags, status="error", reason=str(exc)[:300]
                    )
                )
                continue
            p50 = float(np.percentile(ms, 50))
            rows.append(
                _row(
                    backend,
                    precision,
                    dev,
                    batch,
                    tags,
                    status="ok",
                    reason="",
                    latency_ms={
                        "p50": round(p50, 4),
                        "p95": round(float(np.percentile(ms, 95)), 4),
                        "mean": round(float(ms.mean()), 4),
                        "min": round(float(ms.min()), 4),
                    },
                    images_per_s=round(batch * 1e3 / p50, 1),
                    peak_mem_mb=memory.peak_mb(),
                    mem_kind="cuda" if kind == "cuda" else "rss",
                    load_s=round(load_s, 3),
                    **({"first_run_s": round(first_s, 4)} if first_s is not None else {}),
                    parity=parity(out, reference[batch], runner.spec)
                    if batch in reference
                    else None,
                    **({"threads": runner.threads} if hasattr(runner, "threads") else {}),
                    **({"cuda_graphs": True} if runner.graphed(x) else {}),
                )
            )
    finally:
        runner.close()
    return rows
