"""Bench scripts without the reference data: one line saying what is missing and how to point
to it, exit status 2, no traceback (run as a user would, with GEMFINDER_SHARED_DATA set to a
folder that does not exist)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize(
    ("script", "missing", "option"),
    [
        (["tree_realism.py"], "matrices/routerdc-mistral7", "--data DIR"),
        (["grader_agreement.py"], "routerbench", "--data DIR"),
        (["mbpp_reference.py"], "mbpp/mbpp.jsonl", "--data DIR"),
        (["reproduce_table.py", "--real"], "matrices/opencompass-12/combine.csv", "--matrices"),
        (["ablation.py", "--trials", "1"], "matrices/opencompass-12/combine.csv", None),
        (["fixed_confidence.py", "--trials", "1"], "matrices/opencompass-12/combine.csv", None),
    ],
)
def test_missing_shared_data_is_one_line_and_exit_2(tmp_path, script, missing, option):
    gone = tmp_path / "no-such-data"
    env = {**os.environ, "GEMFINDER_SHARED_DATA": str(gone)}
    out = subprocess.run(
        [sys.executable, str(BENCH / script[0]), *script[1:]],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith(f"{script[0]}: error: reference data not found: {gone / missing}")
    assert "GEMFINDER_SHARED_DATA" in lines[0] and "../shared/data" in lines[0]
    if option:
        assert option in lines[0]
