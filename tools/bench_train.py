"""Training throughput (images/s) of the fast-path switches, against a plain FP32 eager loop.

Issue 3/5 targets: CycleGAN at the reference settings (ResNet-9 generators, 70x70 PatchGAN,
256x256, batch 1) at least 3x the images/s of a plain FP32 eager loop on CUDA, and at the best
batch size at least 35% of the measured bf16 matmul peak in useful FLOPs; on the CPU no slower
than the plain loop.

Cases (``--cases``):
  reference  the ``cyclegan`` preset at 256x256 on synthetic in-memory images (random crops
             of 286x286 tensors, flips) so the figure is the training step, not JPEG decoding
  demo       the ``cyclegan-digits`` preset on its real data
  dcgan      the default ``dcgan-mnist`` preset on the bundled digits

Variants (``--variants``) switch the fast path on one item at a time, cumulatively, so each
row shows what its switch adds:
  plain      FP32, eager, contiguous, cuDNN autotune off, unfused Adam, host data path,
             one call per batch (the reference loop)
  merge      + train.merge_calls (one call of each per-sample network on concatenated batches)
  cudnn      + train.cudnn_benchmark        fused   + train.fused_optim
  nhwc       + train.channels_last          bf16    + train.amp=bf16
  compile    + train.compile=default        graphs  + train.compile=reduce-overhead
  nhwc-ln, bf16-ln, compile-ln, graphs-ln, autotune-ln
             that variant + train.layout_norm (instance norms that keep channels_last)
  resident   plain + on-device data (dcgan only; the others have no in-memory dataset)
  pinned     plain + pinned host batches (on request)
  autotune   graphs with compile=max-autotune (on request: minutes of autotuning per shape)
  train      `edgegan train` with train.amp=bf16, train.channels_last=true and
             train.compile=reduce-overhead and every other switch at its default (pinned
             batches, resident data when it fits, layout norms by train.layout_norm's null),
             as tools/gpu_check.py's whole fast runs (on request); the cumulative rows keep
             plain's host path and plain norms

Each measurement builds a fresh Trainer through the same code as ``edgegan train`` (the
switches are the same config items), runs ``--warmup`` steps (compilation, autotuning), then
times ``--steps`` steps with the device synchronised. Useful FLOPs per image are counted once
per case with ``torch.utils.flop_counter`` (forward and backward of every network call in a
training step). Eager variants also count the ATen operators one training step dispatches
(``ops/step``): on a GPU each is a kernel launch or more, which is what bounds small-batch
steps, so the count explains the CUDA speed-ups on any machine. ``--profile N`` then runs N
more steps under torch.profiler and splits the step's kernel time (CPU: operator self time)
into convolution/matmul, normalisation/reduction, padding, pointwise, copies and optimizer,
with the TFLOP/s the convolutions reach inside their own kernels: where the time goes that
the useful FLOPs do not use. Prints tables and writes JSON.

    python tools/bench_train.py --device cuda --json runs/bench_train.json
    python tools/bench_train.py --device cpu --cases demo,dcgan --variants plain,merge,nhwc
    python tools/bench_train.py --device cuda --cases reference --variants graphs \
        --batch-sizes 16 --profile 5
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as `python tools/bench_train.py` from a checkout where edgegan is not installed (a GPU
# machine's image): the checkout's package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgegan import hookimpl  # noqa: E402
from edgegan.scripting import check_json_path, int_list, run, write_json  # noqa: E402

VARIANTS: dict[str, list[str]] = {
    "plain": [
        "train.merge_calls=false",
        "train.amp=off",
        "train.channels_last=false",
        "train.layout_norm=false",
        "train.compile=off",
        "train.cudnn_benchmark=false",
        "train.fused_optim=false",
        "train.pin_memory=false",
        "train.resident_data=false",
    ],
}
_STEPS = [
    ("merge", "train.merge_calls=true"),
    ("cudnn", "train.cudnn_benchmark=true"),
    ("fused", "train.fused_optim=true"),
    ("nhwc", "train.channels_last=true"),
    ("bf16", "train.amp=bf16"),
    ("compile", "train.compile=default"),
    ("graphs", "train.compile=reduce-overhead"),
]
for _name, _item in _STEPS:
    _prev = list(VARIANTS)[-1]
    _key = _item.split("=")[0]
    VARIANTS[_name] = [x for x in VARIANTS[_prev] if not x.startswith(_key + "=")] + [_item]
VARIANTS["resident"] = [x for x in VARIANTS["plain"] if "resident" not in x] + [
    "train.resident_data=true"
]
VARIANTS["pinned"] = [x for x in VARIANTS["plain"] if "pin_memory" not in x] + [
    "train.pin_memory=true"
]
# The full fast path with inductor's autotuned kernels (Triton conv/matmul templates timed
# against cuDNN, and CUDA graphs): minutes of compilation per shape, so only on request.
VARIANTS["autotune"] = [x for x in VARIANTS["graphs"] if not x.startswith("train.compile=")] + [
    "train.compile=max-autotune"
]
# Instance norms that keep the channels-last layout (train.layout_norm), each against the row
# it extends: eager FP32 and bf16, and the full fast path.
for _name in ("nhwc", "bf16", "compile", "graphs", "autotune"):
    VARIANTS[f"{_name}-ln"] = [*VARIANTS[_name], "train.layout_norm=true"]
# What `edgegan train` runs with the three fast-path switches set and the rest left at the
# defaults (gpu_check's FAST): the cumulative rows pin plain's host path and plain norms.
VARIANTS["train"] = ["train.amp=bf16", "train.channels_last=true", "train.compile=reduce-overhead"]
# On request: the layout-norm variants add a compile each, and mean nothing for the DCGAN.
ON_REQUEST = (
    *("pinned", "autotune", "nhwc-ln", "bf16-ln", "compile-ln", "graphs-ln", "autotune-ln"),
    "train",
)

# AMP, cuDNN autotuning and CUDA graphs are CUDA features (fused Adam has a CPU kernel too;
# "fused" there is "merge" plus fused Adam: cuDNN autotuning does nothing on the CPU).
CPU_VARIANTS = ("plain", "merge", "fused", "nhwc", "nhwc-ln", "compile", "resident")

COMMON = [
    "train.progress=false",
    "train.max_seconds=null",
    "train.sample_every=0",
    "train.checkpoint_every=0",
    "train.log_every=1000000",
    "train.tensorboard=false",
    "eval.at_end=false",
    "eval.every=0",
]
CASES: dict[str, tuple[str, list[str]]] = {
    "reference": ("cyclegan", ["data.name=bench-unpaired"]),
    "demo": ("cyclegan-digits", []),
    "dcgan": ("dcgan-mnist", []),
}


# -- a synthetic two-domain dataset for the reference case -----------------------------------
class SyntheticUnpaired:
    """``n`` random RGB images per domain at ``load_size``, randomly cropped to ``crop_size``
    and flipped per item as the reference pipeline does (tensor ops: no decoding cost)."""

    paired = False

    def __init__(self, load_size: int = 286, crop_size: int = 256, n: int = 32, split: str = ""):
        import torch

        g = torch.Generator().manual_seed(0)
        self.a = torch.rand(n, 3, load_size, load_size, generator=g) * 2 - 1
        self.b = torch.rand(n, 3, load_size, load_size, generator=g) * 2 - 1
        self.load, self.crop = load_size, crop_size
        self.image_shape = self.image_shape_b = (3, crop_size, crop_size)

    def __len__(self) -> int:
        return 1000  # as many items as a few hundred steps at the largest batch need

    def _view(self, images: Any, i: int) -> Any:
        import random

        x = images[i % len(images)]
        top, left = (random.randint(0, self.load - self.crop) for _ in range(2))
        x = x[:, top : top + self.crop, left : left + self.crop]
        return x.flip(-1) if random.random() < 0.5 else x

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"A": self._view(self.a, i), "B": self._view(self.b, i * 7 + 3)}


class _BenchPlugin:
    """Registers ``bench-unpaired`` through the public plugin hook, as a third party would."""

    @hookimpl
    def edgegan_register_datasets(self, register: Any) -> None:
        def build(load_size: int = 286, crop_size: int = 256, split: str = "train") -> Any:
            return SyntheticUnpaired(load_size, crop_size, split=split)

        register("bench-unpaired", build)


# -- measuring --------------------------------------------------------------------------------
def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_image(trainer: Any, batch: int) -> float:
    """Useful FLOPs of one training step divided by the batch (forward and backward of every
    network call: convolutions and matmuls, as torch's flop counter counts them)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step()
    return counter.get_total_flops() / batch


def ops_per_step(trainer: Any) -> int:
    """ATen operators dispatched by one eager training step (views and in-place updates
    included: each costs a dispatch, most a kernel launch on a GPU)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            self.n += 1
            return func(*args, **(kwargs or {}))

    with _Count() as count:
        trainer.train_step()
    return count.n


# Kernel (CUDA) or operator (CPU) names -> what the time is spent on; the first match wins.
# Inductor's kernels say what they are in their prefix: templates (matmul/conv), reductions
# (norms), pointwise; cuDNN's and cuBLAS's convolutions and GEMMs name their algorithm.
TIME_CLASSES: tuple[tuple[str, str], ...] = (
    ("optimizer", r"multi_tensor|adam|foreach|lerp"),
    ("conv/matmul", r"^triton_tem"),
    ("norm/reduction", r"^triton_(red|per)"),
    ("pad", r"^triton_poi.*(reflection|pad)"),
    ("pointwise", r"^triton_poi"),
    ("copy/layout", r"nchwToNhwc|nhwcToNchw|transpose|memcpy|memset|copy|contiguous|clone|"
     r"\bcat\b|CatArray|stack|fill|zero"),
    ("pad", r"reflection|pad"),
    ("norm/reduction", r"norm|welford|bn_[fb]w|reduce_kernel|reduction|\bsum\b|\bmean\b|\bvar\b"),
    ("conv/matmul", r"conv|gemm|xmma|cutlass|cudnn|dgrad|wgrad|fprop|\bmm\b|addmm|bmm|matmul"),
    ("pointwise", r""),
)  # fmt: skip


#: how many of the most expensive kernels (operators on the CPU) a profile lists
TOP_KERNELS = 15


def time_class(name: str) -> str:
    """The category of a kernel or operator name (:data:`TIME_CLASSES`)."""
    return next(c for c, pattern in TIME_CLASSES if re.search(pattern, name, re.IGNORECASE))


#: how many operator chains each listed kernel names as its launchers
LAUNCHERS = 3


def _launchers(events: Any, names: set[str], cuda: bool) -> dict[str, dict[str, float]]:
    """Kernel (CPU: operator) name -> the chains of operators that ran it -> microseconds.

    A chain is the innermost operator and up to three callers (``aten::copy_ <
    aten::contiguous < aten::convolution_backward``): which layer's ops pay for a copy
    kernel, where the kernel's name alone says nothing."""
    found: dict[str, dict[str, float]] = {}
    for evt in events:
        if cuda:
            pairs = [(k.name[:200], k.duration) for k in getattr(evt, "kernels", ())]
            chain_start = evt
        else:
            pairs = [(evt.key[:200], evt.self_cpu_time_total)]
            chain_start = evt.cpu_parent
        pairs = [(n, us) for n, us in pairs if n in names and us > 0]
        if not pairs:
            continue
        chain: list[str] = []
        node = chain_start
        while node is not None and len(chain) < 4:
            if not chain or chain[-1] != node.name:
                chain.append(node.name)
            node = node.cpu_parent
        key = " < ".join(chain) or "(top level)"
        for name, us in pairs:
            found.setdefault(name, {})
            found[name][key] = found[name].get(key, 0.0) + us
    return found


def profile_steps(trainer: Any, steps: int, flops_per_step: float | None) -> dict[str, Any]:
    """Run ``steps`` training steps under torch.profiler; the kernel time (CUDA) or operator
    self time (CPU) per step by :func:`time_class`, the busy fraction of the wall time, and
    the TFLOP/s of the convolution/matmul time alone."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        _sync(trainer.device)
        wall_us = (time.perf_counter() - t0) * 1e6
    kernels: dict[str, float] = {}
    for evt in prof.key_averages():
        if cuda:
            # Kernels only, as torch's own table sums them: CPU-side operators are counted
            # through their kernels, and GPU-side user annotations (optimizer steps, compiled
            # regions) span kernels already counted.
            if evt.device_type != DeviceType.CUDA or getattr(evt, "is_user_annotation", False):
                continue
            us = evt.self_device_time_total
        else:
            us = evt.self_cpu_time_total
        if us > 0:
            kernels[evt.key] = kernels.get(evt.key, 0.0) + us
    classes = {name: time_class(name) for name in kernels}
    totals: dict[str, float] = {}
    for name, us in kernels.items():
        totals[classes[name]] = totals.get(classes[name], 0.0) + us
    busy = sum(totals.values())
    out: dict[str, Any] = {
        "steps": steps,
        "wall_ms_per_step": wall_us / steps / 1e3,
        "busy_ms_per_step": busy / steps / 1e3,
        "busy_fraction": busy / wall_us if wall_us else 0.0,
        "ms_per_step": {c: t / steps / 1e3 for c, t in sorted(totals.items(), key=lambda x: -x[1])},
        "share": {c: t / busy for c, t in totals.items()} if busy else {},
        # the kernels behind the shares: which copies or norms a step spends its time on
        "top": [
            {
                "name": name[:200],
                "class": classes[name],
                "ms_per_step": us / steps / 1e3,
                "share": us / busy,
            }
            for name, us in sorted(kernels.items(), key=lambda x: -x[1])[:TOP_KERNELS]
        ],
    }
    launchers = _launchers(prof.events(), {t["name"] for t in out["top"]}, cuda)
    for entry in out["top"]:
        entry["launched_by"] = [
            {"ops": chain, "ms_per_step": us / steps / 1e3}
            for chain, us in sorted(launchers.get(entry["name"], {}).items(), key=lambda x: -x[1])[
                :LAUNCHERS
            ]
        ]
    if not busy:  # e.g. a CUPTI that does not trace the kernels of CUDA graph replays
        out["note"] = "no kernel time recorded: profile the compile variant (same kernels)"
        print(f"profile: {out['note']}", file=sys.stderr, flush=True)
    conv_us = totals.get("conv/matmul", 0.0) / steps
    if flops_per_step and conv_us:
        out["conv_tflops"] = flops_per_step / conv_us / 1e6
    return out


def run_overrides(case: str, device: Any, variant: str, batch: int | None) -> list[str]:
    """The config overrides of one measurement: the benchmark's, the case's, the device, the
    variant's switches and (when given) the batch size."""
    size = [] if batch is None else [f"train.batch_size={batch}"]
    return [*COMMON, *CASES[case][1], f"train.device={device}", *VARIANTS[variant], *size]


def make_trainer(preset: str, overrides: list[str], work: Path) -> Any:
    """A fresh Trainer built by the same code as ``edgegan train``."""
    from edgegan.config import load_config
    from edgegan.train.trainer import Trainer

    return Trainer(load_config(preset, overrides), work / f"run-{time.monotonic_ns()}")


def measure(preset: str, overrides: list[str], warmup: int, steps: int, work: Path) -> dict:
    import torch

    trainer = make_trainer(preset, overrides, work)
    config, device = trainer.config, trainer.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(warmup):
        trainer.train_step()
    _sync(device)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        values = trainer.train_step()
    _sync(device)
    seconds = time.perf_counter() - t0
    finite = all(bool(torch.isfinite(v).all()) for v in values.values())
    batch = config.train.batch_size
    row = {
        "batch_size": batch,
        "steps": steps,
        "seconds": seconds,
        "step_ms": 1000 * seconds / steps,
        "images_per_sec": steps * batch / seconds,
        "warmup_seconds": warm_s,
        "finite": finite,
        "device": str(device),
    }
    if device.type == "cuda":
        row["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    row["_trainer"] = trainer
    return row


def bf16_matmul_peak(device: Any, n: int = 8192, iters: int = 20) -> float:
    """Measured dense bf16 matmul TFLOP/s on this GPU (the yardstick of the 35% target)."""
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize(device)
    return 2 * n**3 * iters / (time.perf_counter() - t0) / 1e12


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--cases", default="reference,demo,dcgan")
    parser.add_argument(
        "--variants",
        default=None,
        help="Comma-separated (default: all but pinned,autotune on CUDA; plain,merge,nhwc on CPU).",
    )
    parser.add_argument(
        "--batch-sizes",
        type=int_list(1),
        default=[1],
        help="Reference case batch sizes, e.g. 1,4,16,32.",
    )
    parser.add_argument(
        "--curve-variant",
        default=None,
        help="Only this variant at batch sizes other than the first (the batch-size curve).",
    )
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30, help="timed steps (at least 1)")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="After timing, profile N more steps: where the step's time goes (0: off).",
    )
    parser.add_argument("--json", help="Write the results here.")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.profile < 0:
        parser.error("--steps must be at least 1, --warmup and --profile at least 0")
    check_json_path(args.json)

    import torch

    from edgegan.plugins.manager import get_manager
    from edgegan.train.device import resolve_device

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if args.variants:
        variants = args.variants.split(",")
    else:
        variants = (
            [v for v in VARIANTS if v not in ON_REQUEST] if cuda else ["plain", "merge", "nhwc"]
        )
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    cases = args.cases.split(",")
    if [c for c in cases if c not in CASES]:
        parser.error(f"--cases: choose from {list(CASES)}")
    batch_sizes = args.batch_sizes
    get_manager().register(_BenchPlugin(), "bench-train", version="tools")

    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": " ".join(["python", "tools/bench_train.py", *(argv or sys.argv[1:])]),
        "rows": [],
    }
    if cuda:
        results["bf16_matmul_tflops"] = bf16_matmul_peak(device)
        print(f"bf16 matmul peak: {results['bf16_matmul_tflops']:.0f} TFLOP/s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for case in cases:
            preset = CASES[case][0]
            sizes = batch_sizes if case == "reference" else [None]
            # Useful FLOPs per image depend on the networks, not on the switches or the batch:
            # counted once per case on a plain eager trainer (the counter cannot see into
            # compiled graphs).
            flop_trainer = make_trainer(
                preset, run_overrides(case, device, "plain", sizes[0]), work
            )
            flops = flops_per_image(flop_trainer, flop_trainer.config.train.batch_size)
            del flop_trainer
            for bi, batch in enumerate(sizes):
                for variant in variants:
                    if variant == "resident" and case != "dcgan":
                        continue
                    if bi > 0 and args.curve_variant and variant != args.curve_variant:
                        continue
                    if not cuda and variant not in CPU_VARIANTS:
                        continue  # AMP/cuDNN/CUDA-graph switches are CUDA features
                    try:
                        row = measure(
                            preset,
                            run_overrides(case, device, variant, batch),
                            args.warmup,
                            args.steps,
                            work,
                        )
                    except Exception as exc:  # one failing switch must not lose the others
                        row = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
                        print(f"{case}/{variant}: {row['error']}", file=sys.stderr, flush=True)
                    trainer = row.pop("_trainer", None)
                    if trainer is not None and trainer.config.train.compile == "off":
                        row["ops_per_step"] = ops_per_step(trainer)
                    if trainer is not None and args.profile > 0:
                        per_step = flops * trainer.config.train.batch_size
                        row["profile"] = profile_steps(trainer, args.profile, per_step)
                    del trainer
                    if cuda:
                        torch.cuda.empty_cache()
                    row.update(case=case, variant=variant, preset=preset)
                    if "images_per_sec" in row:
                        row["gflop_per_image"] = flops / 1e9
                        row["tflops"] = flops * row["images_per_sec"] / 1e12
                        if cuda:
                            row["peak_fraction"] = row["tflops"] / results["bf16_matmul_tflops"]
                    results["rows"].append(row)
                    _print_row(row)
                    if args.json:  # after each row: a run cut off by a time limit keeps them
                        write_json(args.json, results, follow_symlinks=True)
    _add_speedups(results["rows"])
    _print_table(results)
    if args.profile > 0:
        _print_profile(results)
    if args.json:
        print(f"wrote {write_json(args.json, results, follow_symlinks=True)}")
    if results["rows"] and all("error" in r for r in results["rows"]):
        print("error: every measurement failed (see above)", file=sys.stderr)
        return 1
    return 0


def _add_speedups(rows: list[dict]) -> None:
    """images/s of each row over the plain loop of the same case at batch 1 (or its batch)."""
    base = {}
    for r in rows:
        if r.get("variant") == "plain" and "images_per_sec" in r:
            base.setdefault(r["case"], r["images_per_sec"])
    for r in rows:
        if "images_per_sec" in r and r["case"] in base:
            r["speedup_vs_plain"] = r["images_per_sec"] / base[r["case"]]


def _print_row(row: dict) -> None:
    if "error" in row:
        return
    print(
        f"{row['case']:>9} {row['variant']:>8} batch {row['batch_size']:>3}: "
        f"{row['images_per_sec']:9.1f} img/s  {row['step_ms']:8.2f} ms/step",
        flush=True,
    )


def _print_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"training throughput on {results['device']} (torch {results['torch']})")
    cols = ("case", "variant", "batch", "img/s", "ms/step", "x plain", "ops/step", "GFLOP/img")
    cols = (*cols, "TFLOP/s")
    for col in (*cols, "% peak"):
        table.add_column(col, justify="right")
    for r in results["rows"]:
        if "error" in r:
            table.add_row(r["case"], r["variant"], "-", r["error"][:40], *[""] * 6)
            continue
        table.add_row(
            r["case"],
            r["variant"],
            str(r["batch_size"]),
            f"{r['images_per_sec']:.1f}",
            f"{r['step_ms']:.2f}",
            f"{r.get('speedup_vs_plain', float('nan')):.2f}",
            str(r.get("ops_per_step", "-")),
            f"{r['gflop_per_image']:.3g}" if "tflops" in r else "-",
            f"{r['tflops']:.2f}" if "tflops" in r else "-",
            f"{100 * r['peak_fraction']:.1f}" if "peak_fraction" in r else "-",
        )
    Console(width=120).print(table)


def _print_profile(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = [r for r in results["rows"] if "profile" in r]
    classes = [c for c, _ in TIME_CLASSES]
    classes = list(dict.fromkeys(classes))  # each once, in order
    kernel = "kernel" if any(r["device"].startswith("cuda") for r in rows) else "operator"
    table = Table(title=f"where a training step's {kernel} time goes (ms/step, share)")
    for col in ("case", "variant", "batch", "wall ms", "busy", *classes, "conv TFLOP/s"):
        table.add_column(col, justify="right")
    for r in rows:
        p = r["profile"]
        cells = [
            f"{p['ms_per_step'][c]:.2f} ({100 * p['share'][c]:.0f}%)" if c in p["share"] else "-"
            for c in classes
        ]
        table.add_row(
            r["case"],
            r["variant"],
            str(r["batch_size"]),
            f"{p['wall_ms_per_step']:.2f}",
            f"{100 * p['busy_fraction']:.0f}%",
            *cells,
            f"{p['conv_tflops']:.2f}" if "conv_tflops" in p else "-",
        )
    Console(width=160).print(table)
    top = Table(title=f"the most expensive {kernel}s of each profiled row (ms/step, share)")
    for col in ("case", "variant", "batch", "class", "ms", "share", kernel, "launched by (ms)"):
        top.add_column(col, justify="right" if col in ("batch", "ms", "share") else "left",
                       overflow="fold")  # fmt: skip
    for r in rows:
        for k in r["profile"]["top"][:8]:
            ms, share = f"{k['ms_per_step']:.2f}", f"{100 * k['share']:.1f}%"
            by = "; ".join(f"{c['ops']} ({c['ms_per_step']:.1f})" for c in k.get("launched_by", []))
            top.add_row(r["case"], r["variant"], str(r["batch_size"]), k["class"], ms, share,
                        k["name"][:60], by[:200])  # fmt: skip
    Console(width=160).print(top)


if __name__ == "__main__":
    raise SystemExit(run(main))
