"""A SQLite store damaged inside (a valid header, pages overwritten: a disk fault, a copy cut
short) is a one-line error naming the flag, exit status 2, not sqlite3's traceback."""

from __future__ import annotations

import pytest
from gemfinder.cli import main

from tests.cli.test_search_cli import files, search  # noqa: F401 - the fixture

__all__ = ["files"]


def test_a_damaged_store_is_one_line_naming_the_flag(files, capsys):
    tmp_path, _, _ = files
    db = tmp_path / "run.db"
    matrix = str(tmp_path / "m.npz")
    assert main(search(tmp_path, "--matrix", matrix, "--store", str(db))) == 0
    capsys.readouterr()
    with open(db, "r+b") as damaged:  # keep page 1 (header, schema root), ruin the rest
        damaged.seek(4096)
        damaged.write(b"\xff" * (db.stat().st_size - 4096))
    for argv, flag in [
        (["report", "--db", str(db)], "--db"),
        (["export", "--db", str(db)], "--db"),
        (search(tmp_path, "--matrix", matrix, "--store", str(db), "--seed", "3"), "--store"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"error: {flag}: the SQLite file is damaged" in err


@pytest.mark.parametrize("command", ["report", "export"])
def test_a_missing_store_is_not_called_damaged(tmp_path, capsys, command):
    assert main([command, "--db", str(tmp_path / "none.db")]) == 2
    assert "damaged" not in capsys.readouterr().err
