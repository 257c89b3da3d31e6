"""The benchmark tools run end to end on the CPU and write the JSON they document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def test_bench_train_counts_what_merging_saves(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(TOOLS / "bench_train.py"), "--device", "cpu", "--cases", "dcgan"]
    cmd += ["--variants", "plain,merge", "--warmup", "1", "--steps", "2", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ops/step" in proc.stdout
    results = json.loads(out.read_text())
    rows = {r["variant"]: r for r in results["rows"]}
    assert set(rows) == {"plain", "merge"}
    for row in rows.values():
        assert row["case"] == "dcgan" and row["batch_size"] == 64 and row["finite"]
        assert row["images_per_sec"] > 0 and row["gflop_per_image"] > 0
    # One discriminator call on real + fake instead of two: fewer operators per step.
    assert rows["merge"]["ops_per_step"] < 0.9 * rows["plain"]["ops_per_step"]
    assert rows["plain"]["speedup_vs_plain"] == 1.0


def test_bench_default_repeats_the_comparison_per_seed(tmp_path):
    out = tmp_path / "default.json"
    cmd = [sys.executable, str(TOOLS / "bench_default.py"), "--seeds", "0,1"]
    cmd += ["--out", str(tmp_path / "runs"), "--json", str(out)]
    cmd += ["train.steps=4", "eval.num_samples=64"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Over seeds 0,1" in proc.stdout and "mean FD ratio" in proc.stdout
    results = json.loads(out.read_text())
    rows = results["results"]
    assert [(r["preset"], r["seed"]) for r in rows] == [
        ("dcgan-mnist", 0),
        ("dcgan-textbook", 0),
        ("dcgan-mnist", 1),
        ("dcgan-textbook", 1),
    ]
    # Each seed is its own run directory; the default preset ran its own step count.
    assert len({r["run_dir"] for r in rows}) == 4
    assert all(r["steps"] == 4 for r in rows if r["preset"] == "dcgan-mnist")
    fd = results["summary"]["dcgan-mnist"]["fd"]
    mine = [r["fd"] for r in rows if r["preset"] == "dcgan-mnist"]
    assert fd["min"] == min(mine) and fd["max"] == max(mine)
    assert abs(fd["mean"] - sum(mine) / 2) < 1e-3
    assert results["meta"]["seeds"] == [0, 1]


def test_bench_default_rejects_bad_seeds():
    cmd = [sys.executable, str(TOOLS / "bench_default.py"), "--seeds", "0,x"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--seeds wants comma-separated integers" in proc.stderr
