"""Matrix loader (matrix.py): every bad file is one UserError naming the field and saying what
is wrong, for every command that loads a matrix (simulate, trees stats, fleet config)."""

from __future__ import annotations

import numpy as np
import pytest
from gemfinder.cli import main
from gemfinder.errors import UserError
from gemfinder.sim.matrix import load_matrix

CORRECT = (np.arange(4 * 12).reshape(4, 12) % 3 == 0).astype(np.uint8)


def _npz(path, **arrays):
    np.savez(path, **{"correct": CORRECT, **arrays})
    return path


def _error(path) -> UserError:
    with pytest.raises(UserError) as info:
        load_matrix(path, field="--matrix")
    assert info.value.field == "--matrix"
    return info.value


def test_duplicate_model_names_are_rejected_with_an_example(tmp_path):
    path = _npz(tmp_path / "m.npz", models=["a", "b", "a", "c"])
    reason = _error(path).reason
    assert "'models' must be unique: 'a'" in reason and "model 0 and model 2" in reason


def test_duplicate_item_ids_are_rejected_with_an_example(tmp_path):
    items = [f"i{i}" for i in range(11)] + ["i3"]
    reason = _error(_npz(tmp_path / "m.npz", items=items)).reason
    assert "'items' must be unique" in reason and "'i3'" in reason


def test_duplicates_in_a_csv_are_rejected(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("model,q1,q2\nx,1,0\nx,0,1\n")
    assert "'models' must be unique: 'x'" in _error(path).reason
    path.write_text("model,q1,q1\nx,1,0\ny,0,1\n")
    assert "'items' must be unique: 'q1'" in _error(path).reason


def test_empty_model_name_is_rejected(tmp_path):
    assert "empty name" in _error(_npz(tmp_path / "m.npz", models=["a", "", "b", "c"])).reason


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("garbage.npz", b"hello, not a zip", "not a valid .npz file"),
        ("garbage.npy", b"hello, not numpy", "not a valid .npy file"),
        (
            "empty.npz",
            b"",
            "cannot read empty.npz: not a valid .npz file (a zip of NumPy arrays); it is empty",
        ),
        ("cut.npz", b"PK\x03\x04" + b"\0" * 40, "not a valid .npz file"),
    ],
)
def test_files_that_are_not_numpy_say_so(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    reason = _error(path).reason
    assert expected in reason and "pickled" not in reason


def test_a_truncated_npz_is_an_error_not_a_traceback(tmp_path):
    whole = _npz(tmp_path / "whole.npz", models=["a", "b", "c", "d"])
    cut = tmp_path / "cut.npz"
    cut.write_bytes(whole.read_bytes()[:100])
    assert "not a valid .npz file" in _error(cut).reason


def test_object_arrays_still_say_pickled(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    assert "pickled" in _error(path).reason


def test_a_directory_is_called_a_directory(tmp_path):
    reason = _error(tmp_path).reason
    assert "is a directory" in reason and "no such file" not in reason


@pytest.mark.parametrize("bad", [[np.nan, 1, 2, 3], [np.inf, 1, 2, 3], ["a", "b", "c", "d"]])
def test_downloads_must_be_finite_numbers(tmp_path, bad):
    path = _npz(tmp_path / "m.npz", downloads=np.array(bad))
    assert "'downloads' must be 4 non-negative numbers" in _error(path).reason


def test_values_are_shown_as_plain_numbers(tmp_path):
    path = tmp_path / "m.npy"
    np.save(path, np.array([[0.5, 1.0], [0.0, 1.0]]))
    assert _error(path).reason == "values must be 0 or 1, found 0.5"


@pytest.mark.parametrize(
    "command",
    [
        ["simulate", "--budget-per-model", "5", "--trials", "3", "--matrix", "{m}"],
        ["trees", "stats", "{m}"],
        ["fleet", "config", "--out", "{out}", "--matrix", "{m}"],
    ],
)
def test_every_command_rejects_duplicate_model_ids(tmp_path, capsys, command):
    path = _npz(tmp_path / "m.npz", models=["a", "b", "a", "c"])
    args = [a.format(m=path, out=tmp_path / "fleet.json") for a in command]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'models' must be unique: 'a'" in err[0], err
    assert not (tmp_path / "fleet.json").exists()
