"""Quality per CPU-minute: the default preset against the textbook DCGAN recipe.

Trains each preset through the same trainer for the same wall-clock budget, then scores the
final (EMA, where the preset uses it) generator with `edgegan eval`'s digit metric on 2,000
samples against the bundled test digits. Prints a table and writes JSON.

    python tools/bench_default.py --seconds 600 --json docs/bench_default.json

With ``--seconds 0`` the default preset runs its own step count and the other presets get
the time it took (equal CPU time).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from edgegan.config import load_config
from edgegan.train import train


def run_one(preset: str, seconds: float | None, out: Path, extra: list[str]) -> dict:
    overrides = ["train.progress=false", "eval.at_end=true", "eval.num_samples=2000", *extra]
    if seconds:
        overrides += ["train.steps=1000000", f"train.max_seconds={seconds}"]
    config = load_config(preset, overrides)
    t0 = time.monotonic()
    result = train(config, out_dir=out / preset)
    wall = time.monotonic() - t0
    row = {
        "preset": preset,
        "steps": result.step,
        "train_seconds": round(result.seconds, 1),
        "wall_seconds": round(wall, 1),
        "run_dir": str(result.run_dir),
        **{k: round(v, 4) for k, v in result.eval.items()},
    }
    print(f"  {preset}: {row}", file=sys.stderr, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="dcgan-mnist,dcgan-textbook")
    ap.add_argument(
        "--seconds",
        type=float,
        default=0.0,
        help="budget per preset; 0: the first preset's own run time",
    )
    ap.add_argument("--out", type=Path, help="keep the runs here (default: a temp dir)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("overrides", nargs="*", help="key=value applied to every preset")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgegan-bench-"))
    presets = args.presets.split(",")
    rows = []
    budget = args.seconds or None
    for i, preset in enumerate(presets):
        row = run_one(preset, budget, out, args.overrides)
        rows.append(row)
        if i == 0 and budget is None:
            budget = row["train_seconds"]
    header = ["preset", "steps", "train_seconds", "fd", "coverage", "confidence", "label_accuracy"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(str(r.get(h, "-")) for h in header) + " |")
    if len(rows) >= 2 and rows[0].get("fd") and rows[1].get("fd"):
        print(
            f"\nFD ratio {rows[1]['preset']} / {rows[0]['preset']}: "
            f"{rows[1]['fd'] / rows[0]['fd']:.2f}x"
        )
    if args.json:
        meta = {
            "command": " ".join(sys.argv),
            "machine": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
