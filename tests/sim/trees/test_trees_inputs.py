"""`gemfinder trees`: a pool too large for memory and a directory as the matrix file are
one-line errors naming the flag or field."""

from __future__ import annotations

import gemfinder.cli.trees as trees_cli
from gemfinder.cli import main


def test_a_pool_too_large_for_memory_names_the_flag(tmp_path, capsys, monkeypatch):
    def oom(*args, **kwargs):
        raise MemoryError("Unable to allocate 7.45 GiB")

    monkeypatch.setattr(trees_cli, "generate", oom)
    out = tmp_path / "big.npz"
    argv = ["trees", "generate", "--preset", "gsm8k", "--out", str(out), "--items", "1000000000"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "gemfinder trees: error: --items: pool too large for this machine's memory "
        "(Unable to allocate 7.45 GiB)"
    ]
    assert not out.exists()


def test_stats_of_a_directory_says_directory(tmp_path, capsys):
    assert main(["trees", "stats", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gemfinder trees: error: file: {tmp_path} is a directory, not a matrix file"
