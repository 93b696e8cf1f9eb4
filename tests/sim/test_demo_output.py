"""What `gemfinder demo` prints: the budget up front, why part of it was not spent, readable
model ids in the progress bar, metrics said while they are served, and no dead paths."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from gemfinder.cli import build_parser
from gemfinder.cli.demo import budget_line, progress_text, short_id, unspent_text
from gemfinder.cli.search import build, run_search
from gemfinder.search.spec import SearchSpec
from gemfinder.search.values import Progress
from gemfinder.server.convert import result_from_proto, result_to_proto
from gemfinder.sim.matrix import save_npz
from gemfinder.store import Store

from tests.pool_support import clear_best_pool


def test_short_id_keeps_the_name_and_the_start_of_the_org():
    assert short_id("org/model", 32) == "org/model"
    long = "vector-collective/Qwen2.5-7B-reasoning"
    assert short_id(long, 32) == "vector-col…/Qwen2.5-7B-reasoning"
    assert len(short_id(long, 32)) == 32
    # A name too long to keep whole: both ends of the id.
    assert short_id("org/" + "x" * 20 + "-the-end", 16) == "org/xxx…-the-end"
    assert short_id("a" * 40, 10) == "aaaa…aaaaa"


def _progress(**kw):
    base = dict(total_rounds=9, round=1, survivors=300, spent=0, budget=15000)
    return Progress(**(base | kw), leader_model_id="org/m", leader_accuracy=0.0)


def test_progress_text_has_no_leader_before_answers():
    assert "waiting for the first answers" in progress_text(_progress(), 300, True)
    assert "first answers" in progress_text(_progress(spent=128), 300, True)
    assert "0.000" not in progress_text(_progress(spent=128), 300, True)
    text = progress_text(_progress(spent=400), 300, True)
    assert text.startswith("round 1/9, 300 left, leader org/m 0.000")
    after = progress_text(_progress(spent=14000, total_rounds=0, survivors=1), 300, True)
    assert after.startswith("search done, gem check")


def _spec_and_result(tmp_path, per_model: int):
    """A real search over a matrix (the service's runner, spec and gem check)."""
    matrix, items = clear_best_pool()
    save_npz(matrix, tmp_path / "m.npz")
    path = tmp_path / "items.jsonl"
    path.write_text(
        "".join(json.dumps({"id": it.id, "task": it.task, **it.fields}) + "\n" for it in items)
    )
    args = build_parser().parse_args(
        ["search", "--query-set", str(path), "--matrix", str(tmp_path / "m.npz"),
         "--budget-per-model", str(per_model)]
    )  # fmt: skip
    spec, oracle = build(args)
    store = Store(":memory:")
    try:
        row = asyncio.run(run_search(spec, oracle, store, progress=False))
    finally:
        store.close()
    return spec, result_from_proto(result_to_proto(row.result))  # as the demo receives it


@pytest.mark.parametrize("per_model", [30, 40])
def test_budget_and_unspent_lines_account_for_every_query(tmp_path, per_model):
    spec, result = _spec_and_result(tmp_path, per_model)
    budget, reserve = per_model * 16, int(0.1 * per_model * 16)
    assert isinstance(spec, SearchSpec) and spec.budget == budget
    first, second = budget_line(spec, per_model).splitlines()
    assert first == (
        f"budget: {budget} queries ({per_model} per model x 16 models; evaluating every model "
        "on every item would take 768)"
    )
    assert second.strip().startswith(
        f"{budget - reserve} for the search, {reserve} (10%) kept back for the gem check"
    )
    text = unspent_text(spec, result)
    left = budget - result.queries_spent
    assert text.splitlines()[0].startswith(f"unspent       {left} of the {budget} queries (")
    searched = result.queries_spent - result.gem_check_queries
    if searched < budget - reserve:
        assert f"the search spent {searched} of its {budget - reserve}: " in text
    else:
        assert f"the search spent all of its {budget - reserve}" in text
    assert f"the gem check spent {result.gem_check_queries} of its {reserve}: " in text
    assert "the most downloaded model was to answer up to" in text  # one popular model here


def test_unspent_search_budget_is_explained_by_an_exhaustive_last_round(tmp_path):
    # 16 models x 48 items = 768 < the search's 792: every model answers every item. (Below
    # that, rounds are planned knowing the item cap and the search spends its whole budget.)
    spec, result = _spec_and_result(tmp_path, 55)
    searched = result.queries_spent - result.gem_check_queries
    assert searched == 768 < spec.search_budget
    assert "its last round could afford all 48 items for every model" in unspent_text(spec, result)


def test_demo_without_workdir_names_no_removed_directory(tmp_path):
    out = subprocess.run(
        [
            sys.executable, "-m", "gemfinder", "demo", "--models", "40", "--items", "200",
            "--per-model", "20", "--endpoints", "2", "--no-progress",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("budget: 800 queries (20 per model x 40 models;") for line in lines)
    assert any(line.startswith("unspent ") for line in lines)
    metrics = next(line for line in lines if line.startswith("metrics:"))
    assert "/metrics (until the demo ends)" in metrics
    assert lines[-1] == (
        "logs and data were in a temporary directory, now removed (--workdir DIR keeps them)"
    )
    assert "gemfinder-demo-" not in out.stdout + out.stderr  # the removed directory


def test_demo_with_workdir_keeps_it_and_says_how_to_remove_it(tmp_path):
    work = tmp_path / "work"
    out = subprocess.run(
        [
            sys.executable, "-m", "gemfinder", "demo", "--models", "30", "--items", "150",
            "--per-model", "10", "--endpoints", "2", "--no-progress", "--workdir", str(work),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    last = out.stdout.splitlines()[-1]
    assert last == f"logs and data kept in {work} (remove with: rm -r {work})"
    for name in ("tree.npz", "items.jsonl", "candidates.jsonl", "endpoints.json", "fleet.log"):
        assert (work / name).is_file(), name
    assert (work / "server.log").is_file()


def test_bad_flags_are_one_line_errors_before_anything_starts(capsys):
    from gemfinder.cli import main

    for argv, flag in [
        (["--preset", "nope"], "--preset"),
        (["--models", "1"], "--models"),
        (["--per-model", "0"], "--per-model"),
        (["--endpoints", "0"], "--endpoints"),
    ]:
        assert main(["demo", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"gemfinder demo: error: {flag}: ") and len(err.splitlines()) == 1
