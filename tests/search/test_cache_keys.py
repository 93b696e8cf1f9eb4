"""Evaluation-cache keys change with the grader, so a changed grader is never served old grades."""

from __future__ import annotations

from gemfinder.candidates import Candidate
from gemfinder.search.spec import CacheKeys, SearchSpec
from gemfinder.tasks.registry import get_task

from tests.pool_support import clear_best_pool


def _keys(n_models: int = 3) -> tuple[list[str], list]:
    matrix, items = clear_best_pool(n_models=n_models, per_task=2)
    candidates = [Candidate(m, "http://h:80", adapter_id=m) for m in matrix.models]
    keys = CacheKeys(SearchSpec(candidates, items, budget=8))
    return [keys(m, i) for m in range(n_models) for i in range(len(items))], items


def test_a_new_grader_version_changes_every_key_of_its_task(monkeypatch):
    before, items = _keys()
    bumped = items[0].task
    monkeypatch.setattr(type(get_task(bumped)), "grader_version", "2")
    after, _ = _keys()
    changed = {i % len(items) for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b}
    # Every key of the bumped task's items changed; no other task's keys did.
    assert changed == {i for i, it in enumerate(items) if it.task == bumped}


def test_lm_eval_items_are_keyed_by_the_lm_eval_version(monkeypatch):
    task = get_task("lm_eval")
    monkeypatch.setattr("gemfinder.tasks.lmeval.task._lm_eval_version", lambda: "0.4.13")
    old = task.grader_version
    monkeypatch.setattr("gemfinder.tasks.lmeval.task._lm_eval_version", lambda: "0.5.0")
    assert task.grader_version != old and "0.5.0" in task.grader_version
