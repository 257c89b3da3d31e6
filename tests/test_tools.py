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
