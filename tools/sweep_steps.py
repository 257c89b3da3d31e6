"""Quality against training length: train a preset once, scoring it at several step counts.

The run is continued with ``--resume`` between the step counts; since resume is exact, the
score at N steps is the score of a run of N steps. Prints one line per step count and a
table, and writes JSON.

    python tools/sweep_steps.py dcgan-mnist --steps 1500,2000,3000,4000 --json sweep.json \
        train.augment=translation,cutout
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

# Run as `python tools/sweep_steps.py` from a checkout where edgegan is not installed (a GPU
# machine's image): the checkout's package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgegan.config import load_config, load_run_config  # noqa: E402
from edgegan.scripting import check_json_path, int_list, run, stopped, write_json  # noqa: E402
from edgegan.train import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset")
    ap.add_argument("--steps", required=True, type=int_list(1), help="comma-separated, increasing")
    ap.add_argument("--out", type=Path, help="the run directory (default: a temp dir)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_intermixed_args()  # overrides before or after the options
    steps = args.steps
    if steps != sorted(set(steps)):
        ap.error("--steps must be increasing")
    check_json_path(args.json)
    fixed = ["train.max_seconds=null", "train.progress=false", "eval.at_end=true"]
    first = load_config(args.preset, [*args.overrides, *fixed, f"train.steps={steps[0]}"])
    # made once the config is known good (a bad one left an empty temp folder behind)
    run_dir = args.out or Path(tempfile.mkdtemp(prefix="edgegan-sweep-")) / "run"
    print(f"sweep: the run trains in {run_dir}", file=sys.stderr, flush=True)
    rows = []
    for i, n in enumerate(steps):
        if i == 0:
            result = stopped(train(first, out_dir=run_dir))
        else:
            result = stopped(train(load_run_config(run_dir, [f"train.steps={n}"]), resume=run_dir))
        row = {"steps": result.step, "train_seconds": round(result.seconds, 1)}
        row.update({k: round(v, 4) for k, v in result.eval.items()})
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    keys = ["steps", "train_seconds", "fd", "coverage", "confidence", "label_accuracy"]
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "-")) for k in keys) + " |")
    if args.json:
        meta = {"command": " ".join(sys.argv), "run_dir": str(run_dir)}
        write_json(args.json, {"meta": meta, "results": rows}, follow_symlinks=True)


if __name__ == "__main__":
    sys.exit(run(main))
