"""`gemfinder grade` grades an answer whose pattern is not known linear as the server does: in
a grading process within --grading-timeout-s. A pathological answer in the file (200,000
spaces under lm-eval's quadratic `\\s+$`: minutes of `re`) cannot hang the command: its line is
written back as a `grading_timeout` - neither right nor wrong - and the other lines are graded.
"""

from __future__ import annotations

import io
import json
import time

import pytest
from gemfinder.cli import main
from gemfinder.cli.grade import grade_stream

pytest.importorskip("lm_eval")

QUADRATIC = r"\s+$|(-?[0-9]+)"  # as tests/oracles/test_grading_pool.py
HOSTILE = " " * 200_000 + "x"
ARC = {"task": "arc_challenge", "question": "q", "choices": ["a", "b", "c", "d"], "answer": "C"}


def _line(response: str, pattern: str = QUADRATIC, group: int = 0) -> str:
    fields = {
        "task": "lm_eval", "output_type": "generate_until", "lm_eval": {"task": "t"}, "doc": {},
        "metric": {"name": "exact_match", "kwargs": {}}, "prompt": "p", "until": ["\n\n"],
        "max_gen_toks": 16, "target": "42", "multiple_target": False,
        "filter": {"name": "f", "steps": [
            ["regex", {"regex_pattern": pattern, "group_select": group}], ["take_first", None]]},
    }  # fmt: skip
    return json.dumps({**fields, "response": response})


def test_a_pathological_answer_is_a_grading_timeout_and_the_rest_is_graded():
    lines = [
        _line("It is 42."),
        _line(HOSTILE),
        _line("41"),
        _line("1 2", group=5),  # lm-eval's filter raises: the grader's failure, not a 0
        json.dumps({**ARC, "response": "The answer is C."}),
    ]
    out = io.StringIO()
    t0 = time.perf_counter()
    graded, errors = grade_stream(io.StringIO("\n".join(lines)), out, grading_timeout_s=1.0)
    took = time.perf_counter() - t0
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert (graded, errors) == (3, 2)
    assert took < 15.0, took  # grading HOSTILE inline takes minutes
    assert [r["correct"] for r in rows] == [True, None, False, None, True]
    assert rows[1]["failure"] == "grading_timeout" and "longer than 1 s" in rows[1]["error"]
    assert rows[1]["response"] == HOSTILE and rows[1]["extracted"] is None
    assert rows[3]["failure"] == "grading" and rows[3]["error"]
    assert "failure" not in rows[0] and "failure" not in rows[4]


def test_cli_grading_timeout_flag(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(_line(HOSTILE) + "\n" + _line("42") + "\n")
    dst = tmp_path / "out.jsonl"
    assert main(["grade", str(src), "--out", str(dst), "--grading-timeout-s", "0.5"]) == 1
    rows = [json.loads(x) for x in dst.read_text().splitlines()]
    assert rows[0]["failure"] == "grading_timeout" and "longer than 0.5 s" in rows[0]["error"]
    assert rows[1]["correct"] is True
    assert "1 graded, 1 malformed line(s) or grading failure(s)" in capsys.readouterr().err
    assert main(["grade", str(src), "--grading-timeout-s", "0"]) == 2
    assert "--grading-timeout-s: must be above 0" in capsys.readouterr().err
