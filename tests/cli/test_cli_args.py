"""cli._args, the argument parsing the subcommands share: NAME=number options refused with the
option and the reason, a subcommand's docstring printed as written, a missing store file
refused before it could be created."""

from __future__ import annotations

import argparse

import pytest
from gemfinder.cli._args import numbers_by_name, require_store, subcommand
from gemfinder.errors import UserError


def test_name_number_pairs_become_a_dict_and_anything_else_names_the_option():
    assert numbers_by_name(["a=1", " b = 2.5", "a=3"], "--param", "name") == {"a": 3.0, "b": 2.5}
    for bad in ("first_cut", "=1", "x=", "x=lots"):
        with pytest.raises(UserError, match=rf"--task-weight: expected task=number, got '{bad}'"):
            numbers_by_name([bad], "--task-weight", "task")


def test_a_subcommand_prints_its_docstring_as_written(capsys):
    parser = argparse.ArgumentParser(prog="gemfinder")
    doc = "`gemfinder x`: one line.\n\n  - kept indented\n  - and on its own line\n"
    subcommand(parser.add_subparsers(), "x", "the x command", doc, handler=len)
    with pytest.raises(SystemExit):
        parser.parse_args(["x", "--help"])
    assert doc.strip() in capsys.readouterr().out
    assert parser.parse_args(["x"]).handler is len


def test_a_store_file_that_is_not_there_is_refused_and_not_created(tmp_path):
    missing = tmp_path / "none.db"
    with pytest.raises(UserError, match=f"--db: no store at {missing}"):
        require_store(str(missing), "no store at")
    assert not missing.exists()
    require_store("postgresql://u@h/db", "no store at")  # the server says whether it is there
