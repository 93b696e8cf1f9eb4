"""bench/studies/fixed_confidence.py end to end on one small preset: one row per (epsilon,
delta), the error rates and their Clopper-Pearson bounds consistent with the trial count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_one_row_per_target_with_bounds_above_the_rates():
    args = ["--presets", "gsm8k", "--trials", "40", "--fixed-trials", "40", "--no-real"]
    args += ["--epsilons", "0.5", "2", "--deltas", "0.05", "0.1"]
    out = subprocess.run(
        [sys.executable, "-m", "bench.studies.fixed_confidence", *args],
        capture_output=True, text=True, timeout=300, cwd=REPO, check=True,
    )  # fmt: skip
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines() if "gsm8k/s3" in line]
    assert [(r[1].strip(), r[2].strip()) for r in rows] == [
        (e, d) for e in ("0.5", "2") for d in ("0.05", "0.1")
    ]
    for r in rows:
        certified, spent, rate, upper, beyond = (float(r[i]) for i in (3, 4, 5, 6, 7))
        assert 0 <= certified <= 1 and 0 < spent <= 1
        saved = r[9].strip()
        assert saved == "n/a" or -100 < float(saved) < 1
        assert rate <= upper and upper >= 1 - 0.05 ** (1 / 40) - 1e-4  # 0 of 40: 0.0722
        assert beyond >= 1 - 0.05 ** (1 / 40) - 1e-4
