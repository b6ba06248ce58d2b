"""`gis batch` throughput: tasks per hour with 1 and 2 local workers and with Ray, side by side
in one run, on the default settings (the seller recipe, 10 random users a task).

    pytest benchmarks/test_batch_bench.py --benchmark-enable -s     # ~8 min on 2 cores

Each case is one `gis batch` process from start to end (model loading, catalogue embedding,
the tasks, reports, summary), as a user runs it: tasks/hour = tasks / wall seconds. GIS_BATCH_
BENCH_ITEMS sets the number of tasks (default 4). Figures: benchmarks/RESULTS.md, "gis batch".
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time

import pytest

ITEMS = int(os.environ.get("GIS_BATCH_BENCH_ITEMS", "4"))
CASES = {"1 worker": ["--workers", "1"],
         "2 workers": ["--workers", "2", "--threads", "1"],
         "ray (local)": ["--ray", "auto"]}
#: Ray on a machine without a cluster: no usage statistics, no token (loopback only)
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


@pytest.mark.parametrize("case", list(CASES))
def test_batch_throughput(benchmark, tmp_path, case):
    if case.startswith("ray"):
        pytest.importorskip("ray")
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "from gis.cli import main; main()", "batch", "--items",
           str(ITEMS), "--n-users", "10", "--out", str(out), "--quiet", *CASES[case]]
    record: dict = {}

    def run():
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=3600)
        record["wall_s"] = time.perf_counter() - t0
        assert res.returncode == 0, res.stderr[-2000:]

    benchmark.pedantic(run, rounds=1, iterations=1)
    with open(out / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == ITEMS and all(r["status"] == "done" for r in rows)
    per_task = sum(float(r["seconds"]) for r in rows) / ITEMS
    benchmark.group = f"gis batch --items {ITEMS} --n-users 10 (seller recipe)"
    benchmark.extra_info.update(case=case, tasks=ITEMS, wall_s=record["wall_s"],
                                tasks_per_hour=3600 * ITEMS / record["wall_s"],
                                engine_s_per_task=per_task, cpu_count=os.cpu_count())
    print(f"\n{case}: {ITEMS} tasks in {record['wall_s']:.1f} s = "
          f"{3600 * ITEMS / record['wall_s']:.0f} tasks/hour (engine {per_task:.1f} s a task)")
