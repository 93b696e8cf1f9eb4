"""`gemfinder grade`: per-line results, per-line errors, stdin, --out, order preserved."""

from __future__ import annotations

import io
import json

import pytest
from gemfinder.cli import main
from gemfinder.cli.grade import grade_stream

ARC = {"task": "arc_challenge", "question": "q", "choices": ["a", "b", "c", "d"], "answer": "C"}
MBPP = {"task": "mbpp", "text": "t", "test_list": ["assert f(2) == 4"]}


def _lines():
    return [
        json.dumps({**ARC, "response": "The answer is C."}),
        "{broken",
        json.dumps({"task": "gsm8k", "question": "q", "answer": "#### 72", "response": "72.0"}),
        json.dumps({**MBPP, "response": "def f(x):\n    return 2 * x\n[DONE]"}),
        json.dumps({**MBPP, "response": "def f(x):\n    return x\n"}),
        json.dumps({"task": "nope", "response": "x"}),
        json.dumps({**ARC, "response": "no idea"}),
        json.dumps(ARC),
    ]


def test_grade_stream_results_and_errors():
    out = io.StringIO()
    graded, errors = grade_stream(io.StringIO("\n".join(_lines()) + "\n"), out)
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert (graded, errors) == (5, 3)
    assert [r.get("correct") for r in rows] == [True, None, True, True, False, None, False, None]
    assert rows[0]["extracted"] == "C" and rows[2]["extracted"] == "72.0"
    assert rows[6]["extracted"] is None
    assert rows[1]["line"] == 2 and "bad JSON" in rows[1]["error"]
    assert rows[5]["line"] == 6 and "unknown task" in rows[5]["error"]
    assert rows[7]["line"] == 8 and "response" in rows[7]["error"]


def test_many_mbpp_lines_keep_order():
    lines = [
        json.dumps({**MBPP, "id": i, "response": f"def f(x):\n    return {i % 3} * x\n"})
        for i in range(12)
    ]
    out = io.StringIO()
    grade_stream(io.StringIO("\n".join(lines)), out)
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r["id"] for r in rows] == list(range(12))
    assert [r["correct"] for r in rows] == [i % 3 == 2 for i in range(12)]


def test_cli_file_and_out(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(_lines()[:3]) + "\n")
    dst = tmp_path / "out.jsonl"
    # A line that could not be graded makes the exit status 1; the others are still written.
    assert main(["grade", str(src), "--out", str(dst)]) == 1
    assert len(dst.read_text().splitlines()) == 3
    assert "2 graded, 1 malformed" in capsys.readouterr().err


def test_cli_exit_status_is_0_only_when_every_line_is_graded(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(_lines()[0] + "\n" + _lines()[2] + "\n")
    assert main(["grade", str(src), "--out", str(tmp_path / "ok.jsonl")]) == 0
    src.write_text(_lines()[0] + "\n" + json.dumps(ARC) + "\n")  # no response on line 2
    assert main(["grade", str(src), "--out", str(tmp_path / "bad.jsonl")]) == 1
    rows = [json.loads(x) for x in (tmp_path / "bad.jsonl").read_text().splitlines()]
    assert rows[0]["correct"] is True and rows[1]["line"] == 2


def test_help_documents_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["grade", "--help"])
    assert "1 when some line could not be graded" in capsys.readouterr().out


def test_cli_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(_lines()[0] + "\n"))
    assert main(["grade", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["correct"] is True


def test_cli_missing_file_is_a_user_error(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("bad_out", ["/nonexistent-dir/x.jsonl"])
def test_cli_bad_out(tmp_path, bad_out):
    src = tmp_path / "in.jsonl"
    src.write_text(_lines()[0] + "\n")
    assert main(["grade", str(src), "--out", bad_out]) == 2
