"""gemfinder.outputs: user-named output files are checked first, written whole, and replaced
only when asked."""

from __future__ import annotations

import os
import stat

import pytest
from gemfinder.errors import UserError
from gemfinder.outputs import check_writable, write_whole


def test_written_whole_with_the_mode_open_would_give(tmp_path):
    target = tmp_path / "c.jsonl"
    old = os.umask(0o022)
    try:
        write_whole(target, "a\n", "--out")
    finally:
        os.umask(old)
    assert target.read_text() == "a\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    write_whole(target, "b\n", "--out")  # overwrite is the default
    assert target.read_text() == "b\n" and [p.name for p in tmp_path.iterdir()] == ["c.jsonl"]


def test_an_existing_file_is_kept_without_overwrite(tmp_path):
    target = tmp_path / "c.jsonl"
    target.write_text("keep\n")
    with pytest.raises(UserError) as err:
        write_whole(target, "new\n", "--out", overwrite=False)
    assert err.value.field == "--out" and "pass --force" in err.value.reason
    assert target.read_text() == "keep\n" and [p.name for p in tmp_path.iterdir()] == ["c.jsonl"]


@pytest.mark.parametrize(
    "name, kwargs, words",
    [
        ("x.csv", {"suffix": ".npz"}, "must end in .npz"),
        ("missing/x.npz", {}, "does not exist"),
        (".", {}, "is a directory"),
    ],
)
def test_checks_name_the_flag(tmp_path, name, kwargs, words):
    with pytest.raises(UserError) as err:
        check_writable(tmp_path / name, "--out", **kwargs)
    assert err.value.field == "--out" and words in err.value.reason
