"""One command for a CUDA machine: the GPU tests and the GPU benchmarks, into one results file.

Sections (``--sections``, default all):
  env     GPU, driver, torch/CUDA/cuDNN, onnxruntime providers, TensorRT (or TensorRT-RTX)
  tests   the tests with CUDA/TensorRT paths (they skip on a CPU-only machine; --all-tests:
          their files whole)
  bench   tools/bench_train.py: the fast-path switches against the plain FP32 eager loop
          (CycleGAN reference 256x256 at batch 1, the demo, the DCGAN)
  curve   the full fast path's batch-size curve at the reference settings (the 35%-of-peak
          target), each size profiled: where the step's kernel time goes
  runs    whole ``edgegan train`` runs of dcgan-mnist and cyclegan-digits as the plain FP32
          eager loop (the defaults) and with the fast path: wall time, FD, PSNR
  infer   ``edgegan bench`` on CUDA for the DCGAN generator and the ResNet-9 CycleGAN
          generator at 256x256 (torch eager FP32/FP16, onnxruntime CUDA EP, TensorRT when
          installed), FP16/INT8 graphs, parity against torch FP32 (onnxruntime and
          TensorRT replay CUDA graphs, their default); then onnxruntime again without them
          (``--no-cuda-graphs``), and with its NHWC kernels (``--ort-option prefer_nhwc=1``),
          and torch compiled (``--compile reduce-overhead --channels-last``: compiled rows
          beside eager ones; for the ResNet-9 its AtoB direction only); ``--infer-cases``
          and ``--infer-variants`` pick among them

Every section records what it ran, its exit status and its figures; a failing section does not
stop the others. Results go to one JSON file (``--out``), rewritten as each command of a
section finishes (a call cut off by its time limit keeps those), and a log beside it; keep
docs/benchmarks.md current with them.

    python tools/gpu_check.py --out gpu_check.json
    python tools/gpu_check.py --sections env,tests --out quick.json

A device call runs at most 10 minutes: run one or two sections per call (``curve`` alone
compiles three batch sizes, about 100-190 s each; ``--curve-variants graphs,graphs-ln
--curve-sizes 32`` compares the plain and layout-keeping instance norms in about 310 s;
``bench`` took over 480 s on the H100 even with ``--quick``: run its cases in two calls with
tools/bench_train.py). Measured section times: infer --quick 193 s (``--infer-cases resnet9
--infer-variants torch_compiled``: 180 s); tests (the six files whole, third lease) 343 s,
now only the tests with a GPU path (``--all-tests``: whole), 134 s in the fourth lease.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Run as `python tools/gpu_check.py` from a checkout where edgegan is not installed (a GPU
# machine's image): the checkout's package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgegan import scripting  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("env", "tests", "bench", "curve", "runs", "infer")
GPU_TESTS = [
    "tests/test_fastpath.py",
    "tests/test_cyclegan_nets.py",  # the layout-keeping norm compiled on CUDA
    "tests/test_distributed.py",
    "tests/test_runtime.py",
    "tests/test_export.py",
    "tests/test_export_cyclegan.py",
    "tests/test_pix2pix.py",  # the pix2pix fast path (bf16, fp16, channels_last, compile)
    "tests/test_fid.py",  # Inception features on CUDA in FP32 (no TF32)
]


def _child_env() -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH: the commands (and the
    processes they start, such as the torchrun tests' ``python -m edgegan`` in a temporary
    folder) import the checkout's edgegan, which the GPU image does not have installed."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


def run(cmd: list[str], log: Path, timeout: float | None = None) -> dict[str, Any]:
    """Run ``cmd`` from the repo root, stream its output into ``log`` and stdout (each line
    flushed: a device call cut off at its limit keeps the lines before it). After
    ``timeout`` seconds the command is killed (rc -9, ``timed_out``)."""
    print(f"$ {' '.join(cmd)}", flush=True)
    t0 = time.monotonic()
    with open(log, "a", buffering=1, encoding="utf-8") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        # Its own process group: a timeout kills the command's children too (pytest's
        # torchrun workers would keep the output pipe open, and this loop reading).
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env=_child_env(),
        )

        killed = []

        def kill() -> None:
            killed.append(True)
            try:
                if hasattr(os, "killpg"):
                    os.killpg(proc.pid, signal.SIGKILL)
                else:  # Windows: the process and its children
                    subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)],
                                   capture_output=True, check=False)  # fmt: skip
            except ProcessLookupError:
                pass

        # Reading stops only at end of output: the timer, not wait(), enforces the timeout.
        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        tail: list[str] = []
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                f.write(line)
                tail = (tail + [line.rstrip()])[-40:]
            rc = proc.wait()
        except BaseException:  # Ctrl-C, SIGTERM: the command's process group goes too
            kill()
            raise
        finally:
            if timer:
                timer.cancel()
    timed_out = bool(killed) and timeout is not None
    seconds = time.monotonic() - t0
    if timed_out:
        print(f"(killed after {timeout:.0f} s)", flush=True)
    return {
        "command": " ".join(cmd),
        "rc": rc,
        "seconds": round(seconds, 1),
        **({"timed_out": True} if timed_out else {}),
        "tail": tail[-12:],
    }


class Partial(dict):
    """A section's results, written to the results file each time one of its commands
    finishes: a device call cut off by its time limit keeps what it measured so far (the
    H100's bench section outran a 480 s call and left nothing)."""

    def __init__(self, save: Any) -> None:
        super().__init__()
        self._save = save

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._save()


def section_env() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(
            gpu=p.name,
            compute_capability=f"{p.major}.{p.minor}",
            memory_gib=round(p.total_memory / 2**30, 1),
            multiprocessors=p.multi_processor_count,
        )
    if shutil.which("nvidia-smi"):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        info["nvidia_smi"] = out.stdout.strip()
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError as exc:
        info["onnxruntime"] = f"missing: {exc}"
    from edgegan.export.tensorrt import library_version

    for mod in ("tensorrt", "tensorrt_rtx"):
        try:
            info[mod] = library_version(__import__(mod))  # tensorrt_rtx has no __version__
        except Exception as exc:  # ImportError, or a broken install's OSError
            info[mod] = f"not importable: {type(exc).__name__}: {str(exc)[:120]}"
    print(json.dumps(info, indent=2), flush=True)
    return info


def section_tests(log: Path, quick: bool, all_tests: bool = False) -> dict[str, Any]:
    """The ``gpu`` tests of :data:`GPU_TESTS` (tests/conftest.py marks those that skip for
    want of CUDA, a GPU or TensorRT, or whose names say so); ``all_tests``: the files whole.
    The rest of these files is CPU work that CI runs: in the third lease the whole files took
    343 s of this section's 420 s limit, and the suite has grown by 73% since."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"]
    marks = ([] if all_tests else ["gpu"]) + (["not slow"] if quick else [])
    if marks:
        cmd += ["-m", " and ".join(marks)]
    return run(cmd + GPU_TESTS, log, timeout=420)


def _bench_train(name: str, args: list[str], log: Path, work: Path) -> dict[str, Any]:
    path = work / f"bench_{name}.json"
    py = sys.executable
    res = run([py, "tools/bench_train.py", "--device", "cuda", *args, "--json", str(path)], log)
    if path.is_file():
        res["results"] = json.loads(path.read_text(encoding="utf-8"))
    return res


def section_bench(log: Path, work: Path, quick: bool, out: dict[str, Any]) -> None:
    """tools/bench_train.py: every switch at batch 1 (reference CycleGAN), then the demo and
    DCGAN cases."""
    steps = ["--warmup", "5", "--steps", "20"] if quick else ["--warmup", "10", "--steps", "50"]
    for name, args in (
        ("reference", ["--cases", "reference"]),
        ("demo_dcgan", ["--cases", "demo,dcgan"]),
    ):
        out[name] = _bench_train(name, [*args, *steps], log, work)


def section_curve(
    log: Path, work: Path, variants: list[str], sizes: list[int], out: dict[str, Any]
) -> None:
    """The full fast path (CUDA graphs) at growing batch sizes, each profiled for a few steps:
    useful TFLOP/s against the bf16 peak, the kernel-time split (convolutions vs norms,
    padding, pointwise, copies) and the top kernels, which say what keeps it from the peak.
    ``variants`` are bench_train's (``graphs-ln``: with instance norms that keep the
    channels-last layout). Each variant and size runs in its own process: torch 2.11's CUDA
    graph trees asserted when one process built a second graphed trainer."""
    steps = ["--warmup", "4", "--steps", "10", "--profile", "3"]
    for variant in variants:
        for size in sizes:
            out[f"{variant}_batch_{size}"] = _bench_train(
                f"curve_{variant}_{size}",
                ["--cases", "reference", "--variants", variant, "--batch-sizes", str(size), *steps],
                log,
                work,
            )


FAST = ["train.amp=bf16", "train.channels_last=true", "train.compile=reduce-overhead"]


def section_runs(log: Path, work: Path, quick: bool, out: dict[str, Any]) -> None:
    """Whole ``edgegan train`` runs (data, samples, checkpoints, final evaluation) as the plain
    FP32 eager loop (the defaults) and with the fast path, each in its own process (CUDA
    graph trees are per process): wall time and quality (FD, PSNR)."""
    py = sys.executable
    for preset in ("dcgan-mnist", "cyclegan-digits"):
        for name, extra in (("plain", []), ("fast", FAST)):
            run_dir = work / f"{preset}-{name}"
            res = run(
                [py, "-m", "edgegan", "train", preset, "--out", str(run_dir)]
                + ["train.progress=false", "train.max_seconds=null", *extra],
                log,
            )
            for file in ("report.md", "eval.json"):
                if (run_dir / file).is_file():
                    res[file] = (run_dir / file).read_text(encoding="utf-8")
            out[f"{preset}_{name}"] = res


def _random_unpaired_folder(root: Path, size: int = 256, n: int = 4) -> Path:
    """trainA/trainB (and testA/testB) of random RGB PNGs: enough to build and export a
    CycleGAN run at the reference size (the weights do not change the speed)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("trainA", "trainB", "testA", "testB"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / sub / f"{i}.png")
    return root


INFER_CASES = ("dcgan", "resnet9")


def section_infer(
    log: Path,
    work: Path,
    quick: bool,
    out: dict[str, Any],
    cases: tuple[str, ...] = INFER_CASES,
    variants: tuple[str, ...] | None = None,
) -> None:
    py = sys.executable
    iters = ["--warmup", "20", "--iters", "100" if quick else "300"]
    common = ["train.progress=false", "train.steps=1", "eval.at_end=false"]
    have_trt = any(_importable(m) for m in ("tensorrt", "tensorrt_rtx"))
    trt = ["--trt"] if have_trt else []
    variants = tuple(INFER_VARIANTS) if variants is None else variants
    data = _random_unpaired_folder(work / "unpaired") if "resnet9" in cases else None
    every_case = (  # (name, train arguments, bench batch sizes)
        ("dcgan", ["dcgan-mnist"], "1,64"),  # the default preset's generator
        ("resnet9", ["cyclegan", f"data.root={data}", "cycle.preview=2"], "1,8"),  # 256x256
    )
    for name, train_args, batches in (c for c in every_case if c[0] in cases):
        run_dir, bundle, result = work / name, work / f"{name}-bundle", work / f"{name}.json"
        out[f"{name}_train"] = run(
            [py, "-m", "edgegan", "train", train_args[0], "--out", str(run_dir)]
            + [*common, *train_args[1:]],
            log,
        )
        out[f"{name}_export"] = run(
            [py, "-m", "edgegan", "export", str(run_dir), "--fp16", "--int8", *trt]
            + ["--out", str(bundle)],
            log,
        )
        res = run(
            [py, "-m", "edgegan", "bench", str(bundle), "--device", "cuda"]
            + ["--batch-sizes", batches, *iters, "--json", str(result)],
            log,
        )
        if result.is_file():
            res["results"] = json.loads(result.read_text(encoding="utf-8"))
        out[f"{name}_bench"] = res
        # The same bundle again, one variant per bench process, against the rows above
        for variant in variants:
            backend, flags = INFER_VARIANTS[variant]
            if backend == "onnxruntime" and not _ort_cuda():
                continue
            if name == "resnet9" and backend == "torch":
                flags = [*flags, "--directions", "AtoB"]  # each shape compiles: one direction
            path = work / f"{name}-{variant}.json"
            res = run(
                [py, "-m", "edgegan", "bench", str(bundle), "--device", "cuda"]
                + ["--backends", backend, *flags]
                + ["--precisions", "fp32,fp16", "--batch-sizes", batches, *iters]
                + ["--json", str(path)],
                log,
            )
            if path.is_file():
                res["results"] = json.loads(path.read_text(encoding="utf-8"))
            out[f"{name}_bench_{variant}"] = res


#: The infer section's extra bench runs (backend, bench flags), each against the default rows.
INFER_VARIANTS: dict[str, tuple[str, list[str]]] = {
    # onnxruntime without its CUDA graphs, and with its NHWC kernels (cuDNN's Hopper
    # kernels are NHWC: an NCHW graph pays for conversions)
    "no_graphs": ("onnxruntime", ["--no-cuda-graphs"]),
    "nhwc": ("onnxruntime", ["--ort-option", "prefer_nhwc=1"]),
    # torch compiled, frozen, with CUDA graphs and NHWC: inductor fuses the pads, norms and
    # activations between the convolutions (the FP16 deploy path without TensorRT)
    "torch_compiled": ("torch", ["--compile", "reduce-overhead", "--channels-last"]),
}


def _ort_cuda() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _importable(module: str) -> bool:
    try:
        __import__(module)
        return True
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="Fewer steps and iterations.")
    parser.add_argument("--out", default="gpu_check.json", help="The results file.")
    parser.add_argument("--work", help="Keep runs and bundles here (default: a temp folder).")
    parser.add_argument(
        "--all-tests",
        action="store_true",
        help="The tests section runs its files whole, not only the tests with a GPU path.",
    )
    parser.add_argument(
        "--curve-variants",
        # the full fast path as `edgegan train` runs it: compiled channels-last CUDA runs
        # keep the layout in their norms by default (train.layout_norm)
        default="graphs-ln",
        help="bench_train variants the curve section runs (default graphs-ln, the training "
        "default's fast path), e.g. graphs,graphs-ln.",
    )
    parser.add_argument(
        "--curve-sizes",
        type=scripting.int_list(1),
        help="The curve section's batch sizes (default 4,16,32; 4,16 with --quick).",
    )
    parser.add_argument(
        "--infer-cases",
        default=",".join(INFER_CASES),
        help="The generators the infer section benches: dcgan, resnet9 (default both).",
    )
    parser.add_argument(
        "--infer-variants",
        default=",".join(INFER_VARIANTS),
        help="The infer section's extra bench runs (comma-separated; '' for none): "
        + ", ".join(INFER_VARIANTS),
    )
    args = parser.parse_args(argv)
    sections = args.sections.split(",")
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        parser.error(f"unknown section(s) {bad}; choose from {', '.join(SECTIONS)}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/, when loaded by path
    from bench_train import VARIANTS

    bad = [v for v in args.curve_variants.split(",") if v not in VARIANTS]
    if bad:
        parser.error(f"unknown curve variant(s) {bad}; choose from {', '.join(VARIANTS)}")

    infer_cases = tuple(c for c in args.infer_cases.split(",") if c)
    infer_variants = tuple(v for v in args.infer_variants.split(",") if v)
    for what, given, known in (
        ("infer case", infer_cases, INFER_CASES),
        ("infer variant", infer_variants, tuple(INFER_VARIANTS)),
    ):
        bad = [v for v in given if v not in known]
        if bad:
            parser.error(f"unknown {what}(s) {bad}; choose from {', '.join(known)}")
    if "infer" in sections and not infer_cases:
        parser.error("--infer-cases is empty; choose from " + ", ".join(INFER_CASES))

    import torch

    if not torch.cuda.is_available() and sections != ["env"]:
        print("gpu_check: torch sees no CUDA GPU; only the env section can run", file=sys.stderr)
        return 2
    out_path = scripting.check_json_path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    log = out_path.with_suffix(".log")
    if log == out_path:  # --out x.log: the log would overwrite the results
        log = out_path.with_name(out_path.name + ".log")
    log.write_text("", encoding="utf-8")
    results: dict[str, Any] = {
        "command": "python tools/gpu_check.py " + " ".join(argv or sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)

        def save() -> None:
            scripting.write_json(out_path, results, follow_symlinks=True, default=str)

        for section in sections:
            t0 = time.monotonic()
            print(f"== {section}", flush=True)
            out = Partial(save)  # saved after each command: a cut-off call keeps the rest
            if section not in ("env", "tests"):
                results[section] = out
            try:
                if section == "env":
                    results["env"] = section_env()
                elif section == "tests":
                    results["tests"] = {"status": "running (cut off?)"}  # kept if cut off
                    save()
                    results["tests"] = section_tests(log, args.quick, args.all_tests)
                elif section == "bench":
                    section_bench(log, work, args.quick, out)
                elif section == "curve":
                    sizes = args.curve_sizes or ([4, 16] if args.quick else [4, 16, 32])
                    curve_variants = args.curve_variants.split(",")
                    section_curve(log, work, curve_variants, sizes, out)
                elif section == "runs":
                    section_runs(log, work, args.quick, out)
                else:
                    section_infer(log, work, args.quick, out, infer_cases, infer_variants)
            except Exception as exc:  # record and go on with the next section
                results[section] = {**out, "error": f"{type(exc).__name__}: {exc}"}
            results.setdefault("seconds", {})[section] = round(time.monotonic() - t0, 1)
            save()
    print(f"wrote {out_path} and {log}")
    return 0


if __name__ == "__main__":
    # SIGTERM as Ctrl-C: run() then stops the command it started (in a session of its own)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    raise SystemExit(scripting.run(main))
