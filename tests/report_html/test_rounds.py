"""Queries per round derived from a result's estimates (report_html.rounds), checked against
what the core scheduler actually spent in each round."""

from __future__ import annotations

import numpy as np
import pytest
from gemfinder import _core
from gemfinder.report_html.rounds import Round, queries_per_round
from gemfinder.search.values import Estimate, Result


def run(algorithm: str, n_models: int, n_items: int, budget: int, seed: int):
    """Drive the scheduler to the end on a random 0/1 matrix; returns the result's estimates
    and the graded queries of each round as the scheduler counted them (spent before and after
    each round's ask)."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n_models)
    answers = rng.random((n_models, n_items)) < truth[:, None]
    sched = _core.Scheduler(algorithm, n_models, n_items, budget, seed)
    spent: list[int] = []
    while not sched.finished:
        before = sched.spent
        for model, item in sched.ask():
            sched.tell(model, item, bool(answers[model, item]))
        spent.append(sched.spent - before)
    ranking = tuple(
        Estimate(
            model_id=f"m{r.model}",
            items_seen=r.seen,
            eliminated_in_round=0 if r.eliminated_in_round is None else r.eliminated_in_round + 1,
        )
        for r in sched.ranking()
    )
    return Result(ranking=ranking, queries_spent=sched.spent), spent


@pytest.mark.parametrize(
    "algorithm, n_models, n_items, budget",
    [
        ("sh_correlated", 64, 200, 64 * 20),
        ("sh", 50, 300, 50 * 15),
        ("sr", 12, 200, 12 * 30),
        ("sh_correlated", 30, 20, 30 * 40),  # items run out: the last rounds grade every item
    ],
)
@pytest.mark.parametrize("seed", [0, 3])
def test_derived_rounds_match_what_the_scheduler_spent(algorithm, n_models, n_items, budget, seed):
    result, spent = run(algorithm, n_models, n_items, budget, seed)
    rounds = queries_per_round(result)
    assert [r.queries for r in rounds] == spent
    assert [r.label for r in rounds] == [str(k) for k in range(1, len(spent) + 1)]
    assert rounds[0].survivors == n_models
    assert all(a.survivors > b.survivors for a, b in zip(rounds, rounds[1:], strict=False))


def test_gem_check_answers_are_not_counted_in_any_round():
    """The winner and a popular model eliminated in round 1 were asked again by the gem check:
    their extra items must not move round 1's count (the most common count among its models)."""
    e = [
        Estimate("winner", items_seen=30 + 7, eliminated_in_round=0),  # 7 from the gem check
        Estimate("second", items_seen=30, eliminated_in_round=2),
        Estimate("popular", items_seen=10 + 20, eliminated_in_round=1),  # 20 from the check
        Estimate("a", items_seen=10, eliminated_in_round=1),
        Estimate("b", items_seen=10, eliminated_in_round=1),
    ]
    result = Result(ranking=tuple(e), gem_check_queries=27)
    assert queries_per_round(result) == [Round(1, 1, 5, 50), Round(2, 2, 2, 40)]


def test_a_round_without_elimination_is_merged_into_the_next():
    e = [
        Estimate("w", items_seen=40, eliminated_in_round=0),
        Estimate("x", items_seen=40, eliminated_in_round=3),
        Estimate("y", items_seen=20, eliminated_in_round=3),  # failures: fewer than the rest
        Estimate("z", items_seen=10, eliminated_in_round=1),
    ]
    rounds = queries_per_round(Result(ranking=tuple(e)))
    assert rounds == [Round(1, 1, 4, 40), Round(2, 3, 3, 30 + 30 + 10)]
    assert rounds[1].label == "2-3"


def test_algorithms_without_rounds_have_none():
    result, _ = run("ucb", 10, 50, 200, 0)
    assert queries_per_round(result) == []
    assert queries_per_round(Result()) == []
