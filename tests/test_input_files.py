"""Candidates and query-set files that are directories or not text: one UserError each, saying
so, never "no such file" or a UnicodeDecodeError traceback."""

from __future__ import annotations

import pytest
from gemfinder.candidates import load_candidates
from gemfinder.errors import UserError
from gemfinder.tasks import load_query_set


def test_candidates_directory_is_called_a_directory(tmp_path):
    with pytest.raises(UserError) as err:
        load_candidates(tmp_path, field="--candidates")
    assert err.value.field == "--candidates"
    assert "is a directory" in err.value.reason and "no such file" not in err.value.reason


def test_missing_candidates_file_is_still_no_such_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_candidates(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("name", ["c.jsonl", "c.json"])
def test_candidates_file_that_is_not_text(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(UserError) as err:
        load_candidates(path)
    assert err.value.field == "candidates" and "not UTF-8" in err.value.reason


def test_query_set_that_is_not_text(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"id": "a"}\n\xff\xfe\n')
    with pytest.raises(UserError) as err:
        load_query_set(path)
    assert "not UTF-8" in err.value.reason
