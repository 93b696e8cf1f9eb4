"""`gemfinder grade`: a line's error says what is wrong with it, and bad lines (wrong type,
not UTF-8) never stop the lines after them from being graded."""

from __future__ import annotations

import io
import json

import pytest
from gemfinder.cli import main
from gemfinder.cli.grade import grade_stream

ARC = {"task": "arc_challenge", "question": "q", "choices": ["a", "b"], "answer": "A"}


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (5, "'response' must be a string, got int"),
        (None, "'response' must be a string, got null"),
        (["A"], "'response' must be a string, got list"),
    ],
)
def test_non_string_response_says_it_must_be_a_string(response, expected):
    out = io.StringIO()
    assert grade_stream(io.StringIO(json.dumps({**ARC, "response": response})), out) == (0, 1)
    assert json.loads(out.getvalue()) == {"line": 1, "error": expected}


def test_absent_response_is_still_missing():
    out = io.StringIO()
    grade_stream(io.StringIO(json.dumps(ARC)), out)
    assert json.loads(out.getvalue())["error"] == "missing 'response' (a string)"


def _mixed_bytes() -> bytes:
    good = json.dumps({**ARC, "response": "A"}).encode()
    bad = json.dumps({**ARC, "question": "qX", "response": "A"}).encode().replace(b"X", b"\xff")
    return good + b"\n" + bad + b"\n" + good + b"\n"


def _check(rows: list[dict]) -> None:
    assert [r.get("correct") for r in rows] == [True, None, True]
    assert rows[1]["line"] == 2 and "not UTF-8" in rows[1]["error"]


def test_a_line_that_is_not_utf8_is_that_lines_error(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes(_mixed_bytes())
    assert main(["grade", str(src)]) == 1  # one line could not be graded
    captured = capsys.readouterr()
    _check([json.loads(x) for x in captured.out.splitlines()])
    assert "2 graded, 1 malformed" in captured.err


def test_stdin_that_is_not_utf8_is_graded_line_by_line(monkeypatch, capsys):
    stdin = io.TextIOWrapper(io.BytesIO(_mixed_bytes()), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert main(["grade", "-"]) == 1
    _check([json.loads(x) for x in capsys.readouterr().out.splitlines()])
    assert not stdin.buffer.closed  # grade leaves stdin open for its caller


def test_item_fields_nested_under_item_say_where_they_go():
    # `gemfinder --help` read "task, response, item fields per line": a nested "item" object
    # got only "task arc_challenge needs field(s) ...", which the user had given.
    nested = {
        "task": "arc_challenge",
        "response": "A",
        "item": {k: ARC[k] for k in ARC if k != "task"},
    }
    out = io.StringIO()
    assert grade_stream(io.StringIO(json.dumps(nested)), out) == (0, 1)
    error = json.loads(out.getvalue())["error"]
    assert error.startswith("task arc_challenge needs field(s) question, choices, answer")
    assert "beside task and response, not under 'item'" in error


def test_the_help_shows_a_whole_input_line_and_that_line_is_graded(capsys):
    """`gemfinder grade --help` shows an input line as it is written, the item's fields at the
    top level (the summary once read "task, response, item fields per line", and users nested
    the item under "item"); the line shown is one grade accepts and grades right."""
    with pytest.raises(SystemExit):
        main(["grade", "--help"])
    text = capsys.readouterr().out
    shown = [line.strip() for line in text.splitlines() if line.strip().startswith('{"task"')]
    assert len(shown) == 1, text
    line = json.loads(shown[0])
    assert {"task", "response"} <= set(line) and "item" not in line
    assert not any(isinstance(v, dict) for v in line.values())  # nothing nested
    assert 'not nested under an "item" key' in text
    out = io.StringIO()
    assert grade_stream(io.StringIO(shown[0]), out) == (1, 0)
    assert json.loads(out.getvalue())["correct"] is True
    with pytest.raises(SystemExit):
        main(["--help"])
    summary = " ".join(capsys.readouterr().out.split())
    assert "a JSON object per line: task, response and the item's fields, all top-level" in summary
