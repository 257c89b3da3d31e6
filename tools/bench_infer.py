"""Inference speed target of issue 4: the DCGAN generator at batch 1, ONNX Runtime vs PyTorch.

Target: ONNX Runtime (CPU, FP32) latency at least 3x lower than PyTorch eager at batch 1.
Exports the default preset's generator (``dcgan-mnist``: conditional, latent 64, ngf 32,
28x28), or the run given with ``--run``, and times it through ``edgegan.runtime.bench`` (the
code behind ``edgegan bench``): torch eager FP32 with its default threads and with one, and
ONNX Runtime FP32/INT8 with the tuned thread count (physical cores) and with one thread. The
load average is recorded: another busy process on the machine skews every figure. Prints the
tables and writes JSON.

    python tools/bench_infer.py --json docs/bench_infer.json
    python tools/bench_infer.py --run runs/dcgan-mnist --iters 5000

Without ``--run``, a one-step run of the default preset is trained in a temporary folder:
the graph, and so the speed, is the same as a fully trained one's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

# Run as `python tools/bench_infer.py` from a checkout where edgegan is not installed (a GPU
# machine's image): the checkout's package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgegan.scripting import check_json_path, int_list, run, write_json  # noqa: E402

TARGET_SPEEDUP = 3.0


def make_bundle(run: str | None, work: Path, int8: bool) -> tuple[Path, Path]:
    from edgegan.config import load_config
    from edgegan.export import export
    from edgegan.train import train

    if run is None:
        overrides = ["train.steps=1", "train.progress=false", "eval.at_end=false"]
        run_dir = train(load_config("dcgan-mnist", overrides), out_dir=work / "run").run_dir
    else:
        run_dir = Path(run)
    bundle = work / "bundle"
    export(run_dir, out=bundle, int8=int8)
    return Path(run_dir), bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="A trained run directory (default: a 1-step default run).")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument(
        "--batch-sizes", type=int_list(1), default=[1], help="Comma-separated, e.g. 1,8,64."
    )
    parser.add_argument("--no-int8", action="store_true", help="Skip the INT8 graph.")
    parser.add_argument("--json", help="Write the results here.")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        parser.error("--iters must be at least 1 and --warmup at least 0")
    check_json_path(args.json)

    from rich.console import Console

    from edgegan.runtime.bench import bench, load_averages
    from edgegan.runtime.bench_table import print_table

    batches = args.batch_sizes
    precisions = ["fp32"] if args.no_int8 else ["fp32", "int8"]
    import torch

    load_before = load_averages()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir, bundle = make_bundle(args.run, Path(tmp), not args.no_int8)
        common = {"batch_sizes": batches, "warmup": args.warmup, "iters": args.iters}
        tuned = bench(bundle, ["torch", "onnxruntime"], precisions, **common)
        single = bench(bundle, ["onnxruntime"], precisions, threads=1, **common)
        # torch eager with one intra-op thread too: the fairest torch figure when the CPU
        # is shared (a descheduled OpenMP worker stalls every op of a tiny model)
        default_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            torch1 = bench(bundle, ["torch"], ["fp32"], **common)
        finally:
            torch.set_num_threads(default_threads)
    load_after = load_averages()
    console = Console()
    for result in (tuned, single, torch1):
        print_table(result, console)

    def p50(result: dict, backend: str, precision: str, batch: int) -> float | None:
        for r in result["results"]:
            if (r["backend"], r["precision"], r["batch"], r["status"]) == (
                backend,
                precision,
                batch,
                "ok",
            ):
                return r["latency_ms"]["p50"]
        return None

    summary = []
    for b in batches:
        torch_ms = p50(tuned, "torch", "fp32", b)
        torch1_ms = p50(torch1, "torch", "fp32", b)
        ort_ms = p50(tuned, "onnxruntime", "fp32", b)
        ort1_ms = p50(single, "onnxruntime", "fp32", b)
        if None in (torch_ms, torch1_ms, ort_ms, ort1_ms):
            console.print(f"batch {b}: no comparison: a row did not run (see the tables above)")
            continue
        best = min(ort_ms, ort1_ms)
        torch_best = min(torch_ms, torch1_ms)
        row = {
            "batch": b,
            "torch_eager_fp32_p50_ms": torch_ms,
            "torch_eager_fp32_1thread_p50_ms": torch1_ms,
            "onnxruntime_fp32_p50_ms": ort_ms,
            "onnxruntime_fp32_1thread_p50_ms": ort1_ms,
            "speedup_tuned": round(torch_ms / ort_ms, 2),
            "speedup_best": round(torch_ms / best, 2),
            "speedup_vs_best_torch": round(torch_best / best, 2),
        }
        if not args.no_int8:
            row["onnxruntime_int8_p50_ms"] = p50(tuned, "onnxruntime", "int8", b)
        summary.append(row)
        cores = tuned["environment"]["physical_cores"]
        console.print(
            f"batch {b}: torch eager {torch_ms:.3f} ms ({cores} threads), {torch1_ms:.3f} ms "
            f"(1 thread); onnxruntime {ort_ms:.3f} ms ({cores} threads), {ort1_ms:.3f} ms "
            f"(1 thread): {row['speedup_tuned']:.2f}x lower with default/tuned threads, "
            f"{row['speedup_vs_best_torch']:.2f}x best against best "
            f"(target >= {TARGET_SPEEDUP:g}x at batch 1)"
        )
    at1 = next((r for r in summary if r["batch"] == 1), None)
    result = {
        "target": f"onnxruntime fp32 batch-1 latency >= {TARGET_SPEEDUP:g}x lower than torch eager",
        "target_met": bool(at1 and at1["speedup_tuned"] >= TARGET_SPEEDUP),
        "run": str(run_dir) if args.run else "1-step run of the dcgan-mnist preset",
        "command": "python tools/bench_infer.py " + " ".join(argv or sys.argv[1:]),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "summary": summary,
        "tuned": tuned,
        "onnxruntime_one_thread": single,
        "torch_one_thread": torch1,
    }
    if args.json:
        console.print(f"wrote {write_json(args.json, result, follow_symlinks=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
