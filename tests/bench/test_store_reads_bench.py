"""bench.speed.store_reads (docs/service.md, "Health under load") runs as documented, small."""

from __future__ import annotations

import subprocess
import sys


def test_store_reads_bench_times_both_reads():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.speed.store_reads",
            "--models",
            "30",
            "--answers",
            "5",
            "--result-models",
            "10",
            "--repeat",
            "1",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith(("task_counts", "get_search"))]
    assert [r.split()[0] for r in rows] == ["task_counts", "get_search"], out
    assert all(len(r.split("/")) == 3 for r in rows), out  # CPU / wall on and off the loop
