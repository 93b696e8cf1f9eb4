"""`gemfinder simulate`: numbers outside the core's range are one-line errors, not tracebacks."""

from __future__ import annotations

import numpy as np
import pytest
from gemfinder.cli import main
from gemfinder.sim.matrix import load_matrix
from gemfinder.sim.simulation import simulate_grid

U64_MAX = 2**64 - 1


@pytest.fixture()
def small_npz(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "m.npz"
    np.savez(path, correct=(rng.random((4, 30)) < 0.5).astype(np.uint8))
    return path


def _simulate(path, *extra: str) -> list[str]:
    return ["simulate", "--matrix", str(path), "--trials", "5", *extra]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--budget-per-model", "5", "--seed", "-1"], "seed: must be between 0 and"),
        (["--budget-per-model", "5", "--seed", str(U64_MAX + 1)], "seed: must be between 0 and"),
        (["--budget-per-model", "5", "--seed", "99999999999999999999999"], "seed: must be"),
        (["--budget-per-model", "5", "--trials", str(U64_MAX + 1)], "trials: must be at most"),
        (["--budget-per-model", "5", "inf"], "--budget-per-model: too large"),
        (["--budget-per-model", "1e30"], "--budget-per-model: too large"),
    ],
)
def test_out_of_range_numbers_are_one_line_errors(small_npz, capsys, extra, expected):
    assert main(_simulate(small_npz, *extra)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gemfinder simulate: error: ")
    assert expected in lines[0]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--budget-per-model", "0"], "--budget-per-model: must be positive, got 0.0"),
        (
            ["--budget-per-model", "0.1", "--algorithms", "sh"],
            "--budget-per-model: budget 0.1 per model (0 queries for 4 models) is below",
        ),
        (["--budget-per-model", "5", "--seed", "-1"], "--seed: must be between 0 and"),
        (["--budget-per-model", "5", "--trials", "0"], "--trials: must be at least 1, got 0"),
        (["--budget-per-model", "5", "--algorithms", "nope"], "--algorithms: unknown algorithm"),
        (["--budget-per-model", "5", "--algorithms", "gem:first_cut"], "--algorithms: 'gem:"),
        (["--budget-per-model", "5", "--algorithms", "gem:x=1"], "--algorithms gem:x: gem has"),
        (["--budget-per-model", "5", "--algorithms", "best_base"], "--matrix: best_base needs"),
    ],
)
def test_errors_name_the_flag_not_the_python_argument(small_npz, capsys, extra, expected):
    assert main(_simulate(small_npz, *extra)) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"gemfinder simulate: error: {expected}"), line
    assert "budget_per_model" not in line  # the advice too: "raise --budget-per-model to 2"


def test_a_missing_matrix_names_its_flag(tmp_path, capsys):
    assert main(_simulate(tmp_path / "none.npz", "--budget-per-model", "5")) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gemfinder simulate: error: --matrix: no such file: {tmp_path / 'none.npz'}"


def test_largest_seed_is_accepted(small_npz, capsys):
    assert main(_simulate(small_npz, "--budget-per-model", "5", "--seed", str(U64_MAX))) == 0
    assert "best model accuracy" in capsys.readouterr().out


def test_a_bad_late_budget_fails_before_any_trial_runs(small_npz):
    """A budget below the minimum at the end of the grid must not cost the finished rows'
    work: every combination is checked first."""
    matrix = load_matrix(small_npz)
    ticks: list[int] = []
    with pytest.raises(Exception, match="below the"):
        simulate_grid(matrix, ["default"], [5, 0.1], 20, 0, ticks.append)
    assert ticks == []
