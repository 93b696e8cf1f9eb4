"""`gemfinder export`: a local search's samples log from its --store file, as JSONL."""

from __future__ import annotations

import json

from gemfinder.cli import main

from tests.cli.test_search_cli import files, search  # noqa: F401 - the fixture

__all__ = ["files"]


def test_export_writes_provenance_then_samples_of_the_newest_or_named_search(files, capsys):
    tmp_path, _, items = files
    db = str(tmp_path / "run.db")
    matrix = str(tmp_path / "m.npz")
    assert main(search(tmp_path, "--matrix", matrix, "--store", db, "--seed", "1")) == 0
    named = capsys.readouterr().out.split("search id")[1].split()[0]
    assert main(search(tmp_path, "--matrix", matrix, "--store", db, "--seed", "2")) == 0
    newest = capsys.readouterr().out.split("search id")[1].split()[0]

    assert main(["export", "--db", db]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0]["search_id"] == newest and lines[0]["seed"] == 2
    assert lines[0]["provenance"]["gemfinder_version"]
    out = tmp_path / "s.jsonl"
    assert main(["export", named, "--store", db, "--out", str(out)]) == 0
    first = [json.loads(x) for x in out.read_text().splitlines()]
    assert first[0]["search_id"] == named and first[0]["seed"] == 1
    assert {x["item_id"] for x in first[1:]} <= {it.id for it in items}
    # The second search asked what the first had: cached, with the first as the original.
    assert any(x["cached"] and x["original_search_id"] == named for x in lines[1:])


def test_export_refuses_a_missing_store_or_search(files, capsys):
    tmp_path, _, _ = files
    assert main(["export", "--db", str(tmp_path / "none.db")]) == 2
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()  # not created
    db = str(tmp_path / "run.db")
    assert main(search(tmp_path, "--matrix", str(tmp_path / "m.npz"), "--store", db)) == 0
    capsys.readouterr()
    assert main(["export", "feedbeef", "--db", db]) == 2
    assert "no search 'feedbeef'" in capsys.readouterr().err
