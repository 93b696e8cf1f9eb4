"""Bench scripts without the reference data: one line saying what is missing and how to point
to it, exit status 2, no traceback (run as a user would, with GEMFINDER_SHARED_DATA set to a
folder that does not exist)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMBINE = "matrices/opencompass-12/combine.csv"


@pytest.mark.parametrize(
    ("script", "missing", "option"),
    [
        (["studies.tree_realism"], "matrices/routerdc-mistral7", "--data DIR"),
        (["studies.grader_agreement"], "routerbench", "--data DIR"),
        (["studies.mbpp_reference"], "mbpp/mbpp.jsonl", "--data DIR"),
        (["studies.reproduce_table", "--real"], COMBINE, "--matrices"),
        (["studies.ablation", "--trials", "1"], COMBINE, None),
        (["studies.fixed_confidence", "--trials", "1"], COMBINE, None),
    ],
)
def test_missing_shared_data_is_one_line_and_exit_2(tmp_path, script, missing, option):
    gone = tmp_path / "no-such-data"
    # The checkout on PYTHONPATH, as `python -m bench...` from its root has it; run elsewhere.
    env = {**os.environ, "GEMFINDER_SHARED_DATA": str(gone), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", f"bench.{script[0]}", *script[1:]],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    name = script[0].split(".")[-1] + ".py"
    assert lines[0].startswith(f"{name}: error: reference data not found: {gone / missing}")
    assert "GEMFINDER_SHARED_DATA" in lines[0] and "../shared/data" in lines[0]
    if option:
        assert option in lines[0]
