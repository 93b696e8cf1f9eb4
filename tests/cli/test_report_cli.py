"""`gemfinder report` and `gemfinder search --report`: the HTML report of a real (offline)
search, read back from the store; the text report, the same as `gemfinder search` prints; bad
input."""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import replace

import pytest
from gemfinder.cli import main
from gemfinder.cost import Cost
from gemfinder.search.values import Incremental
from gemfinder.store import open_store


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A generated tree of 40 models and its multiple-choice items (two tasks)."""
    d = tmp_path_factory.mktemp("report")
    tree, items = d / "tree.npz", d / "items.jsonl"
    argv = ["trees", "generate", "--preset", "qwen2.5-7b", "--models", "40", "--items", "150"]
    assert main([*argv, "--out", str(tree)]) == 0
    assert main(["fleet", "items", "--matrix", str(tree), "--tasks", "arc_challenge,mmlu",
                 "--out", str(items)]) == 0  # fmt: skip
    return tree, items


def search(world, *extra: str) -> list[str]:
    tree, items = world
    return ["search", "--matrix", str(tree), "--query-set", str(items), *extra]


def test_search_report_and_report_from_the_store_agree(world, tmp_path, capsys, new_db):
    db, first, second = new_db("s.db"), tmp_path / "a.html", tmp_path / "b.html"
    argv = search(world, "--store", str(db), "--budget-per-model", "20", "--json")
    assert main([*argv, "--report", str(first)]) == 0
    result = json.loads(capsys.readouterr().out)
    winner = result["recommended_model_id"]
    assert main(["report", "--db", str(db), "--html", str(second)]) == 0  # the newest search
    out = capsys.readouterr().out
    assert out.splitlines()[2].split()[1] == winner  # the ranking's first row
    assert f"wrote {second}" in out
    page = first.read_text(encoding="utf-8")
    assert page == second.read_text(encoding="utf-8")  # same search, same bytes
    assert f"Winner: <b>{winner}</b>" in page
    assert page.count("<svg") == 3  # the picture, the per-task panels (two tasks), the rounds
    assert "<td class=id>round 1</td><td>40</td>" in page
    # the rounds add up to what the search graded (the gem check apart)
    graded = sum(int(q) for q in re.findall(r"<td class=id>round [\d-]+</td><td>\d+</td>"
                                            r"<td>([\d,]+)</td>", page))  # fmt: skip
    assert graded == result["queries_spent"] - result["gem_check_queries"]
    search_id = re.search(r"gemfinder report: (\w+)</h1>", page).group(1)
    store = open_store(str(db))
    try:
        request_id = store.get_search(search_id).request_id
    finally:
        store.close()
    assert main(["report", request_id, "--db", str(db)]) == 0  # by request id, text only
    assert capsys.readouterr().out.startswith(f"search {search_id} (succeeded)")


def test_bad_input_is_named(world, tmp_path, capsys):
    db = tmp_path / "s.db"
    assert main(["report", "--db", str(db)]) == 2
    assert "--db: no database file" in capsys.readouterr().err
    store = open_store(str(db))
    store.create_search("pending1", "req-1", {"items": []})
    store.close()
    assert main(["report", "nope", "--db", str(db)]) == 2
    assert "SEARCH_ID: no search 'nope' (newest in the database: pending1)" in (
        capsys.readouterr().err)  # fmt: skip
    assert main(["report", "req-1", "--db", str(db), "--html", str(tmp_path / "x.html")]) == 1
    assert "search pending1 is pending and has no result" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()
    assert main(["report", "--db", str(db), "--html", str(tmp_path)]) == 2
    assert "--html: " in capsys.readouterr().err
    # A report that cannot be written is refused before the search runs.
    assert main(search(world, "--report", str(tmp_path / "no" / "r.html"))) == 2
    err = capsys.readouterr().err
    assert "--report: cannot write" in err and "no directory" in err


def test_without_matplotlib_the_report_options_say_what_to_install(world, monkeypatch, capsys):
    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "matplotlib" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert main(search(world, "--report", "r.html")) == 2
    assert "--report: the HTML report needs matplotlib: pip install 'gemfinder[report]'" in (
        capsys.readouterr().err)  # fmt: skip


def test_report_prints_what_search_printed(world, capsys, new_db):
    """The text of `gemfinder report` is `gemfinder search`'s (the certificate of a fixed-budget
    search included), under its own header; a serving cost and an incremental search's parent
    stored with the result are printed too, and nothing of them when absent."""
    db = new_db("s.db")
    assert main(search(world, "--store", db, "--budget-per-model", "20")) == 0
    searched = capsys.readouterr().out
    assert "certificate: the winner is within " in searched  # no target: a fixed budget
    assert "(target" not in searched and "serving " not in searched
    search_id = searched.split("search id")[1].split()[0]
    assert main(["report", "--db", db]) == 0
    reported = capsys.readouterr().out
    expected = searched.replace(f"search id     {search_id}\n", "")
    assert reported == f"search {search_id} (succeeded)\n{expected}"
    assert "task arc_challenge:" in reported and "incremental" not in reported

    store = open_store(db)
    try:
        result = store.get_search(search_id).result
        extras = dict(
            cost=Cost(95.5, 40.0, 278, 1, 3, 7, 60.25),
            incremental=Incremental("parent-9", "org/old", winner_changed=True),
        )
        store.update_search(search_id, result=replace(result, **extras))  # fmt: skip
    finally:
        store.close()
    assert main(["report", search_id, "--db", db]) == 0
    out = capsys.readouterr().out
    assert (
        "serving       95.5 GPU-seconds (40.0 loading: 1 model loads, 3 adapter loads, 7 slot "
        "swaps) for 278 queries sent; wall 60.2 s (accounted)\ncertificate: "
    ) in out
    assert (
        f"incremental search from parent-9: winner changed: org/old -> "
        f"{result.recommended_model_id}"
    ) in out


def test_no_certificate_without_shared_items(world, capsys):
    # `sh` draws different items for each model: no certificate to print (docs/service.md)
    assert main(search(world, "--budget-per-model", "20", "--algorithm", "sh")) == 0
    out = capsys.readouterr().out
    assert "exhaustive evaluation" in out and "certificate" not in out
