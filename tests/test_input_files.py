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


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-1", "true", '"5"'])
def test_candidates_downloads_must_be_a_finite_count(tmp_path, value):
    path = tmp_path / "c.jsonl"
    good = '{"model_id": "a/b", "endpoint": "http://x:80"}'
    bad = f'{{"model_id": "c/d", "endpoint": "http://x:80", "downloads": {value}}}'
    path.write_text(f"{good}\n{bad}\n")
    with pytest.raises(UserError) as err:
        load_candidates(path)
    assert err.value.field.endswith("downloads") and "finite number >= 0" in err.value.reason
    assert "2" in err.value.field  # the line is named
