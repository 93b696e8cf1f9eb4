"""`gemfinder demo --lm-eval-task`: the client names an lm-eval task (here the custom example's
multiple-choice task, scored by log-likelihood) and the server builds it from the data the demo
registered; the search finishes on the task's documents and leaves no process behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gemfinder.cli import main
from gemfinder.store import open_store

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "lm-eval-custom"


def test_demo_on_an_lm_eval_task_named_by_the_client(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable, "-m", "gemfinder", "demo", "--models", "30", "--per-model", "10",
            "--endpoints", "2", "--no-progress", "--workdir", str(tmp_path),
            "--lm-eval-task", "unit_conversion_mc", "--lm-eval-include", str(EXAMPLE / "tasks"),
            "--lm-eval-data", f"test={EXAMPLE / 'data' / 'test.jsonl'}",
            f"train={EXAMPLE / 'data' / 'train.jsonl'}",
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "20 documents of lm-eval task unit_conversion_mc (multiple_choice, 3-shot)" in out.stdout
    assert "winner" in out.stdout and "truth" in out.stdout
    store = open_store(str(tmp_path / "gemfinder.db"), option="--db")
    try:
        (row,) = store.list_searches(10)
    finally:
        store.close()
    assert row.state == "succeeded" and row.spec["query_set"] == "lm_eval:unit_conversion_mc"
    assert len(row.spec["items"]) == 20
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True
    ).stdout.split()
    assert leftovers == []


def test_lm_eval_flags_need_a_task(capsys) -> None:
    assert main(["demo", "--lm-eval-data", "test=x.jsonl"]) == 2
    assert "--lm-eval-data: needs --lm-eval-task" in capsys.readouterr().err
    assert main(["demo", "--lm-eval-task", "gsm8k"]) == 2
    assert "--lm-eval-data: needs the task's data files" in capsys.readouterr().err
