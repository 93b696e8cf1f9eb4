"""bench.speed.result_build (docs/service.md, "Health under load") runs as documented, small."""

from __future__ import annotations

import subprocess
import sys


def test_result_build_bench_times_both_ways():
    out = subprocess.run(
        [sys.executable, "-m", "bench.speed.result_build", "--models", "20", "--per-task", "5"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith(("sh_", "bayes_"))]
    assert [row[:2] for row in rows] == [
        ["sh_correlated", "loop"],
        ["sh_correlated", "thread"],
        ["bayes_elim", "loop"],
        ["bayes_elim", "thread"],
    ], out
    assert all(float(x) >= 0 for row in rows for x in row[2:]), out
