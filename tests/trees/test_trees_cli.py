"""`gemfinder trees` commands: output files usable by the loader, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from gemfinder.cli import main
from gemfinder.sim.matrix import load_matrix


def test_generate_writes_a_loadable_npz(tmp_path, capsys):
    out = tmp_path / "pool.npz"
    args = ["trees", "generate", "--preset", "mistral-7b", "--out", str(out), "--seed", "4"]
    assert main([*args, "--models", "30", "--items", "100"]) == 0
    m = load_matrix(out)
    assert m.correct.shape == (30, 100)
    assert m.models[0] == "mistralai/Mistral-7B-v0.1" and m.items[0].startswith("arc_challenge/")
    assert m.downloads is not None and m.is_base is not None and m.is_base[:2].all()
    assert "wrote" in capsys.readouterr().out
    assert main(["trees", "stats", str(out)]) == 0
    text = capsys.readouterr().out
    assert "random_mean" in text and "task gsm8k" in text and "kappa_mean" in text
    keys = [line.split()[0] for line in text.splitlines() if not line.startswith("task ")]
    assert keys.count("models") == 1 and len(keys) == len(set(keys)), text


def test_generate_is_deterministic_through_the_cli(tmp_path):
    for name in ("a.npz", "b.npz"):
        out = str(tmp_path / name)
        main(["trees", "generate", "--preset", "gsm8k", "--out", out, "--models", "9"])
    a, b = load_matrix(tmp_path / "a.npz"), load_matrix(tmp_path / "b.npz")
    assert np.array_equal(a.correct, b.correct) and a.models == b.models


def test_list_shows_every_preset(capsys):
    assert main(["trees", "list"]) == 0
    text = capsys.readouterr().out
    for name in ("qwen2.5-3b", "qwen2.5-7b", "mistral-7b", "llama3.1-8b", "gsm8k"):
        assert name in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--preset", "nope", "--out", "{d}/x.npz"], "unknown preset 'nope'"),
        (["--preset", "gsm8k", "--out", "{d}/x.csv"], "must end in .npz"),
        (["--preset", "gsm8k", "--out", "{d}/missing/x.npz"], "does not exist"),
        (["--preset", "gsm8k", "--out", "{d}/x.npz", "--models", "1"], "--models"),
        (["--preset", "qwen2.5-7b", "--out", "{d}/x.npz", "--items", "3"], "--items"),
    ],
)
def test_generate_errors_are_one_line(tmp_path, capsys, extra, message):
    args = [a.replace("{d}", str(tmp_path)) for a in extra]
    assert main(["trees", "generate", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_stats_of_missing_file_is_a_user_error(tmp_path, capsys):
    assert main(["trees", "stats", str(tmp_path / "none.npz")]) == 2
    assert "no such file" in capsys.readouterr().err
