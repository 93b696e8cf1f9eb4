"""Smoke test of `gemfinder demo` on a small tree: exits 0, prints the report, writes the HTML
report, both with the certificate, leaves no process."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_end_to_end(tmp_path):
    out = subprocess.run(
        [
            sys.executable, "-m", "gemfinder", "demo", "--models", "40", "--items", "200",
            "--per-model", "20", "--endpoints", "2", "--no-progress", "--workdir", str(tmp_path),
            "--report", str(tmp_path / "report.html"),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "winner" in out.stdout and "most popular" in out.stdout
    assert "cheaper" in out.stdout and "/metrics" in out.stdout
    # sh_correlated's models share items: the result carries a certificate over gRPC, and at
    # 20 queries per model it is too wide to be of use, which the report says
    assert "\ncertificate: the winner is within " in out.stdout
    assert "which certifies nothing useful" in out.stdout and "--epsilon" in out.stdout
    # per-task results over gRPC: the demo's items mix three tasks
    assert all(f"task {t}:" in out.stdout for t in ("arc_challenge", "mmlu", "winogrande"))
    winner = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("winner"))
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    # the overview, the per-task panels (the result's per_task) and the queries per round
    assert f"Winner: <b>{winner}</b>" in page and page.count("<svg") == 3
    assert "<p>Certificate: the winner is within " in page and "nothing useful" in page
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True
    ).stdout.split()
    assert leftovers == []
