"""`gemfinder ... | head`: a reader that closes stdout early ends the command quietly, no
traceback, for every subcommand (cli/__init__.py main)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from gemfinder.cli import main

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


def _run_with_closed_stdout(*args: str) -> subprocess.CompletedProcess:
    """Run gemfinder with stdout a pipe whose reader is already gone: every write fails
    with EPIPE (Python ignores SIGPIPE), as after `| head -3` has read its lines."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "gemfinder", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)


@pytest.fixture()
def matrix_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "m.npz"
    items = [f"{t}/{i}" for t in ("arc", "gsm") for i in range(40)]
    np.savez(path, correct=(rng.random((6, 80)) < 0.5).astype(np.uint8), items=items)
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["trees", "stats", "{m}"],
        ["trees", "list"],
        ["simulate", "--matrix", "{m}", "--budget-per-model", "5", "--trials", "20", "--json"],
        ["--help"],
    ],
)
def test_closed_stdout_ends_quietly(matrix_npz, args):
    out = _run_with_closed_stdout(*(a.format(m=matrix_npz) for a in args))
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr, out.stderr
    assert "BrokenPipeError" not in out.stderr
    assert out.returncode in (0, EXIT_BROKEN_PIPE), out.stderr


def test_trees_stats_reports_the_closed_pipe_by_exit_code(matrix_npz):
    out = _run_with_closed_stdout("trees", "stats", str(matrix_npz))
    assert out.returncode == EXIT_BROKEN_PIPE and out.stderr == ""


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error(monkeypatch, capsys):
    """Only the reader of stdout going away is quiet; another BrokenPipeError (a socket of
    our own) is a one-line error."""
    import gemfinder.cli as cli
    import gemfinder.cli.trees as trees

    def boom(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_stdout_gone", lambda: False)
    monkeypatch.setattr(trees, "_list", boom)  # registered when main builds the parser
    assert main(["trees", "list"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gemfinder trees: error: [Errno 32] Broken pipe"]
