"""`gemfinder search --incremental-from`: offline against a matrix, against a store."""

from __future__ import annotations

import json

import pytest
from gemfinder.cli import main
from gemfinder.cli.search import matrix_candidates
from gemfinder.sim.matrix import save_npz
from gemfinder.store import open_store

from tests.pool_support import BEST, clear_best_pool


@pytest.fixture
def files(tmp_path):
    """A matrix, its items, and two candidates files: the tree without BEST, and the whole."""
    matrix, items = clear_best_pool()
    save_npz(matrix, tmp_path / "m.npz")
    lines = [json.dumps({"id": it.id, "task": it.task, **it.fields}) for it in items]
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = [
        {"model_id": c.model_id, "endpoint": c.endpoint, "adapter_id": c.adapter_id}
        for c in matrix_candidates(matrix)
    ]
    (tmp_path / "old.json").write_text(json.dumps([r for r in rows if r["model_id"] != BEST]))
    (tmp_path / "new.json").write_text(json.dumps(rows))
    return tmp_path


def search(tmp_path, candidates: str, *extra: str) -> list[str]:
    return [
        "search", "--query-set", str(tmp_path / "items.jsonl"), "--matrix",
        str(tmp_path / "m.npz"), "--candidates", str(tmp_path / candidates), "--json", *extra,
    ]  # fmt: skip


def test_incremental_from_latest_finds_the_newcomer_and_chains(files, capsys, new_db):
    db = new_db("s.db")
    assert main(search(files, "old.json", "--store", db, "--budget-per-model", "20")) == 0
    parent = json.loads(capsys.readouterr().out)
    assert parent["recommended_model_id"] != BEST and "incremental" not in parent
    argv = search(files, "new.json", "--store", db, "--incremental-from", "latest")
    argv += ["--incumbents", "3", "--budget-per-model", "20"]
    assert main(argv) == 0
    child = json.loads(capsys.readouterr().out)
    inc = child["incremental"]
    assert child["recommended_model_id"] == BEST and inc["winner_changed"]
    assert inc["newcomers"] == [BEST]
    assert inc["incumbents"] == [e["model_id"] for e in parent["ranking"][:3]]
    assert inc["parent_winner_model_id"] == parent["recommended_model_id"]
    assert child["queries_cached"] > 0
    # The next run from the latest (this one) sees nothing new and keeps the winner.
    assert main(argv) == 0
    grandchild = json.loads(capsys.readouterr().out)
    store = open_store(db)
    try:
        newest = [row.id for row in store.list_searches(3, state="succeeded")]
    finally:
        store.close()
    assert grandchild["incremental"]["parent_search_id"] == newest[1]
    assert inc["parent_search_id"] == newest[2]
    assert grandchild["incremental"]["newcomers"] == []
    assert grandchild["recommended_model_id"] == BEST
    assert not grandchild["incremental"]["winner_changed"]


def test_text_report_says_whether_the_winner_changed(files, capsys, new_db):
    db = new_db("s.db")
    assert main(search(files, "old.json", "--store", db)) == 0
    capsys.readouterr()
    argv = search(files, "new.json", "--store", db, "--incremental-from", "latest")
    argv.remove("--json")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "incremental search from " in out and f"-> {BEST}" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--incremental-from", "latest"], "--incremental-from: needs --store"),
        (["--incumbents", "3"], "--incumbents: only with --incremental-from"),
    ],
)
def test_flags_without_their_partner_are_refused(files, capsys, extra, message):
    assert main(search(files, "new.json", *extra)) == 2
    assert message in capsys.readouterr().err


def test_unknown_or_missing_parent_names_the_field(files, capsys, new_db):
    db = new_db("s.db")
    argv = search(files, "new.json", "--store", db, "--incremental-from", "latest")
    assert main(argv) == 2
    assert "latest: --store holds no succeeded search" in capsys.readouterr().err
    argv[-1] = "nope"
    assert main(argv) == 2
    assert "--incremental-from: no search with id 'nope'" in capsys.readouterr().err


def test_a_seed_other_than_the_parents_names_the_flag(files, capsys, new_db):
    # The start's check named "spec.seed", a field the CLI user never typed.
    db = new_db("s.db")
    assert main(search(files, "old.json", "--store", db, "--budget-per-model", "20")) == 0
    capsys.readouterr()
    argv = search(files, "new.json", "--store", db, "--incremental-from", "latest", "--seed", "7")
    assert main(argv) == 2
    assert "--seed: an incremental search reads its parent's item order" in capsys.readouterr().err
