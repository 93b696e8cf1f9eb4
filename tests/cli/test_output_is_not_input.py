"""An output flag naming one of the command's own inputs is refused before anything is written:
`grade a.jsonl --out a.jsonl` emptied the answers before reading them (0 graded, exit 0),
`export --db run.db --out run.db` truncated the store mid-read (a sqlite traceback, every
search lost), `search --report items.jsonl` replaced the query set with HTML."""

from __future__ import annotations

import json

import pytest
from gemfinder.cli import main

from tests.cli.test_search_cli import files, search  # noqa: F401 - the fixture

__all__ = ["files"]


@pytest.fixture
def stored(files, capsys):
    tmp_path, _, _ = files
    db = tmp_path / "run.db"
    assert main(search(tmp_path, "--matrix", str(tmp_path / "m.npz"), "--store", str(db))) == 0
    capsys.readouterr()
    return tmp_path, db


def _refused(capsys, argv: list[str], flag: str, target) -> None:
    before = target.read_bytes()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{flag}: " in err and "is an input of this command" in err
    assert target.read_bytes() == before  # nothing written, nothing lost


def test_grade_out_onto_its_input(tmp_path, capsys):
    answers = tmp_path / "a.jsonl"
    row = {"task": "arc_challenge", "question": "q", "choices": ["a", "b"], "answer": "A"}
    answers.write_text(json.dumps({**row, "response": "A"}) + "\n", encoding="utf-8")
    _refused(capsys, ["grade", str(answers), "--out", str(answers)], "--out", answers)
    # Another path to the same file is the same file.
    other = tmp_path / "." / "a.jsonl"
    _refused(capsys, ["grade", str(answers), "--out", str(other)], "--out", answers)


def test_export_and_report_onto_the_store(stored, capsys):
    tmp_path, db = stored
    _refused(capsys, ["export", "--db", str(db), "--out", str(db)], "--out", db)
    _refused(capsys, ["report", "--db", str(db), "--html", str(db)], "--html", db)
    assert main(["export", "--db", str(db)]) == 0  # the store is intact
    assert json.loads(capsys.readouterr().out.splitlines()[0])["state"] == "succeeded"


def test_search_report_onto_the_query_set_or_the_store(stored, capsys):
    tmp_path, db = stored
    items = tmp_path / "items.jsonl"
    argv = search(tmp_path, "--matrix", str(tmp_path / "m.npz"), "--store", str(db))
    _refused(capsys, [*argv, "--report", str(items)], "--report", items)
    _refused(capsys, [*argv, "--report", str(db)], "--report", db)
