"""Quality per CPU-minute: the default preset against the textbook DCGAN recipe.

Trains each preset through the same trainer for the same wall-clock budget, then scores the
final (EMA, where the preset uses it) generator with `edgegan eval`'s digit metric on 2,000
samples against the bundled test digits. Prints a table and writes JSON.

    python tools/bench_default.py --seconds 600 --json docs/bench_default.json

With ``--seconds 0`` the default preset runs its own step count and the other presets get
the time it took (equal CPU time). A GAN's score spreads widely over seeds, so
``--seeds 0,1,2`` repeats the whole comparison per seed (each seed sets its own budget) and
adds the mean, min and max per preset and the ratio of the means.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

# Run as `python tools/bench_default.py` from a checkout where edgegan is not installed (a GPU
# machine's image): the checkout's package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgegan.config import load_config  # noqa: E402
from edgegan.errors import EdgeganError  # noqa: E402
from edgegan.scripting import check_json_path, int_list, run, stopped, write_json  # noqa: E402
from edgegan.train import train  # noqa: E402

METRICS = ("fd", "coverage", "confidence", "label_accuracy")


def run_one(preset: str, seconds: float | None, out: Path, extra: list[str]) -> dict:
    overrides = ["train.progress=false", "eval.at_end=true", "eval.num_samples=2000", *extra]
    if seconds:
        overrides += ["train.steps=1000000", f"train.max_seconds={seconds}"]
    config = load_config(preset, overrides)
    t0 = time.monotonic()
    result = stopped(train(config, out_dir=out))
    wall = time.monotonic() - t0
    row = {
        "preset": preset,
        "seed": config.seed,
        "steps": result.step,
        "train_seconds": round(result.seconds, 1),
        "wall_seconds": round(wall, 1),
        "run_dir": str(result.run_dir),
        **{k: round(v, 4) for k, v in result.eval.items()},
    }
    print(f"  {preset} seed {config.seed}: {row}", file=sys.stderr, flush=True)
    return row


def summarise(rows: list[dict], presets: list[str]) -> dict:
    """Mean, min and max of each metric per preset over the seeds it ran."""
    summary: dict = {}
    for preset in presets:
        mine = [r for r in rows if r["preset"] == preset]
        entry: dict = {"runs": len(mine)}
        for key in ("steps", "train_seconds", *METRICS):
            values = [r[key] for r in mine if key in r]
            if values:
                entry[key] = {
                    "mean": round(statistics.fmean(values), 4),
                    "min": min(values),
                    "max": max(values),
                }
        summary[preset] = entry
    return summary


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="dcgan-mnist,dcgan-textbook")
    ap.add_argument(
        "--seconds",
        type=float,
        default=0.0,
        help="budget per preset; 0: the first preset's own run time (per seed)",
    )
    ap.add_argument(
        "--seeds", type=int_list(0), default=[0], help="comma-separated seeds, e.g. 0,1,2"
    )
    ap.add_argument("--out", type=Path, help="keep the runs here (default: a temp dir)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("overrides", nargs="*", help="key=value applied to every preset")
    args = ap.parse_args()
    seeds = args.seeds
    presets = args.presets.split(",")
    for preset in presets:  # every name and override checked before the first run
        load_config(preset, args.overrides)
    check_json_path(args.json)
    for name, values in (("--presets", presets), ("--seeds", seeds)):
        if len(set(values)) != len(values):  # two runs would want one folder
            raise EdgeganError(f"{name} names one twice: {','.join(map(str, values))}")
    out = args.out or Path(tempfile.mkdtemp(prefix="edgegan-bench-"))
    run_dirs = {
        (seed, preset): out / (preset if len(seeds) == 1 else f"{preset}-seed{seed}")
        for seed in seeds
        for preset in presets
    }
    for run_dir in run_dirs.values():  # all free before the first run, not at the second
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise EdgeganError(f"{run_dir} already exists and is not empty; choose another --out")
    rows = []
    for seed in seeds:
        budget = args.seconds or None
        for i, preset in enumerate(presets):
            run_dir = run_dirs[seed, preset]
            row = run_one(preset, budget, run_dir, [*args.overrides, f"seed={seed}"])
            rows.append(row)
            if i == 0 and budget is None:
                budget = max(row["train_seconds"], 0.1)  # 0 would mean no budget

    header = ["preset", "seed", "steps", "train_seconds", *METRICS]
    print(_table(header, [[r.get(h, "-") for h in header] for r in rows]))
    summary = summarise(rows, presets)
    if len(seeds) > 1:
        print(f"\nOver seeds {','.join(map(str, seeds))}:")
        stats = [
            [p, s["runs"], *(_spread(s.get(m)) for m in ("steps", "fd", "coverage"))]
            for p, s in summary.items()
        ]
        print(_table(["preset", "runs", "steps", "fd mean (min-max)", "coverage"], stats))
    fds = [summary[p].get("fd", {}).get("mean") for p in presets[:2]]
    if len(presets) >= 2 and all(fds):
        what = "mean FD" if len(seeds) > 1 else "FD"
        print(f"\n{what} ratio {presets[1]} / {presets[0]}: {fds[1] / fds[0]:.2f}x")
    if args.json:
        meta = {
            "command": " ".join(sys.argv),
            "machine": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "seeds": seeds,
        }
        payload = {"meta": meta, "results": rows, "summary": summary}
        write_json(args.json, payload, follow_symlinks=True)


def _spread(stat: dict | None) -> str:
    if not stat:
        return "-"
    return f"{stat['mean']:.4g} ({stat['min']:.4g}-{stat['max']:.4g})"


if __name__ == "__main__":
    sys.exit(run(main))
