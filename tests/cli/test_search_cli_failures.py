"""`gemfinder search` when nothing can be recommended, and inputs the core cannot take.

Every endpoint down: refused before the search (exit 2) or, when allowed, a failed search
(exit 1) naming the endpoints, never a winner that answered nothing. Zero budgets, seeds outside
the core's u64 and unusable --store paths are one-line errors naming the option.
"""

from __future__ import annotations

import json

import pytest
from gemfinder.cli import main
from gemfinder.sim.matrix import save_npz

from tests.pool_support import clear_best_pool


@pytest.fixture
def files(tmp_path):
    matrix, items = clear_best_pool(n_models=6, per_task=3)
    save_npz(matrix, tmp_path / "m.npz")
    lines = [json.dumps({"id": it.id, "task": it.task, **it.fields}) for it in items]
    (tmp_path / "q.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    dead = [
        {"model_id": "org/g1", "endpoint": "http://127.0.0.1:1"},
        {"model_id": "org/g2", "endpoint": "http://127.0.0.1:2"},
    ]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(d) for d in dead) + "\n")
    return tmp_path


def dead_search(tmp_path, *extra):
    return ["search", "--candidates", str(tmp_path / "c.jsonl"), "--query-set",
            str(tmp_path / "q.jsonl"), "--budget-per-model", "3", *extra]  # fmt: skip


def test_every_endpoint_down_is_refused_before_the_search(files, capsys):
    assert main(dead_search(files)) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert "spec.candidates[0].endpoint" in err and "127.0.0.1:1" in err and "127.0.0.1:2" in err
    assert "--allow-unreachable" in err


@pytest.mark.parametrize("as_json", [False, True])
def test_every_endpoint_down_fails_the_search_when_allowed(files, capsys, as_json):
    argv = dead_search(files, "--allow-unreachable", *(["--json"] if as_json else []))
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""  # no winner, no NaN
    last = err.strip().splitlines()[-1]
    assert last.startswith("gemfinder search: search failed: "), err
    # Names the endpoints whose queries failed: which of the two got queries before the failures
    # passed the budget depends on dispatch timing (the in-flight window shrinks under load).
    failing = last.split("failing endpoints: ", 1)[1]
    named = {url for url in ("http://127.0.0.1:1", "http://127.0.0.1:2") if url in failing}
    assert named and failing.count("failed: connection") == len(named), last


def test_json_results_are_strict(files, capsys):
    argv = ["search", "--matrix", str(files / "m.npz"), "--query-set", str(files / "q.jsonl")]
    assert main([*argv, "--json", "--budget-per-model", "4"]) == 0
    json.loads(capsys.readouterr().out, parse_constant=pytest.fail)  # NaN would call it


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--budget-per-model", "0"], "--budget-per-model: must be at least 1, got 0"),
        (["--budget-per-model", "-3"], "--budget-per-model: must be at least 1, got -3"),
        (["--seed", "-1"], "error: --seed: must be between 0 and 2^64 - 1, got -1"),
        (["--seed", "99999999999999999999999"], "error: --seed: must be between 0 and 2^64"),
        (["--gem-check-share", "2"], "error: --gem-check-share: must be between 0 and 0.5"),
        (["--prior-strength", "-1"], "error: --prior-strength: must be above 0"),
        (["--matrix", "{tmp}/none.npz"], "error: --matrix: no such file: {tmp}/none.npz"),
        (["--store", "{tmp}/nonexist/x.db"], "--store: cannot create"),
        (["--store", "{tmp}"], "--store: {tmp} is a directory"),
        (["--store", "{tmp}/m.npz"], "--store: {tmp}/m.npz is not a SQLite database"),
    ],
)
def test_bad_values_are_one_line_errors(files, capsys, extra, message):
    before = (files / "m.npz").read_bytes()
    extra = [a.format(tmp=files) for a in extra]
    argv = ["search", "--matrix", str(files / "m.npz"), "--query-set", str(files / "q.jsonl")]
    assert main([*argv, *extra]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert message.format(tmp=files) in err, err
    assert (files / "m.npz").read_bytes() == before
    assert not (files / "nonexist").exists()


def test_the_largest_seed_is_accepted(files, capsys):
    argv = ["search", "--matrix", str(files / "m.npz"), "--query-set", str(files / "q.jsonl")]
    assert main([*argv, "--seed", str(2**64 - 1), "--json"]) == 0
