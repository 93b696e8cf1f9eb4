"""Progress and result of a search as plain JSON-ready dicts, and the hidden-gem report.

Hidden gem (the published definition): the winner is not among the most downloaded 1% of the
candidates, and its estimated accuracy is strictly higher than that of every one of them.
"""

from __future__ import annotations

import math
from typing import Any

from gemfinder import _core
from gemfinder.search.spec import SearchSpec

TOP_SHARE = 0.01


def estimate(spec: SearchSpec, ranked: _core.RankedModel) -> dict[str, Any]:
    cand = spec.candidates[ranked.model]
    elim = ranked.eliminated_in_round
    return {
        "model_id": cand.model_id,
        "rank": ranked.rank,
        "accuracy": ranked.mean,
        "lower": ranked.lower,
        "upper": ranked.upper,
        "items_seen": ranked.seen,
        "successes": ranked.successes,
        "eliminated_in_round": 0 if elim is None else elim + 1,
        "downloads": cand.downloads,
        "official": cand.official,
    }


def most_downloaded(spec: SearchSpec) -> list[int]:
    """Indices of the most downloaded 1% of candidates (at least one); [] without downloads."""
    if all(c.downloads is None for c in spec.candidates):
        return []
    k = max(1, math.ceil(TOP_SHARE * len(spec.candidates)))
    order = sorted(
        range(len(spec.candidates)), key=lambda i: (-(spec.candidates[i].downloads or 0.0), i)
    )
    return order[:k]


def progress(
    spec: SearchSpec, sched: _core.Scheduler, cached: int, elapsed: float
) -> dict[str, Any]:
    rnd = sched.round
    leader = sched.recommendation
    ranking = None
    if leader is None:
        ranking = sched.ranking()
        leader = ranking[0].model if ranking else None
    leader_acc = 0.0
    if leader is not None:
        ranking = ranking or sched.ranking()
        leader_acc = next((r.mean for r in ranking if r.model == leader), 0.0)
    return {
        "budget": sched.budget,
        "spent": sched.spent,
        "failed": sched.failed,
        "skipped": sched.skipped,
        "cached": cached,
        "round": rnd[0] + 1 if rnd else 0,
        "total_rounds": rnd[1] if rnd else 0,
        "survivors": len(sched.survivors()),
        "leader_model_id": spec.candidates[leader].model_id if leader is not None else "",
        "leader_accuracy": leader_acc,
        "elapsed_s": elapsed,
    }


def result(spec: SearchSpec, sched: _core.Scheduler, cached: int, elapsed: float) -> dict[str, Any]:
    ranking = sched.ranking()
    by_model = {r.model: r for r in ranking}
    winner_idx = sched.recommendation
    if winner_idx is None:  # cancelled mid-search: the current leader
        winner_idx = ranking[0].model
    winner = by_model[winner_idx]
    top = most_downloaded(spec)
    gem = bool(top) and winner_idx not in top and all(winner.mean > by_model[t].mean for t in top)
    return {
        "recommended_model_id": spec.candidates[winner_idx].model_id,
        "ranking": [estimate(spec, r) for r in ranking],
        "queries_spent": sched.spent,
        "queries_failed": sched.failed,
        "queries_cached": cached,
        "exhaustive_queries": spec.exhaustive,
        "elapsed_s": elapsed,
        "winner": estimate(spec, winner),
        "most_popular": estimate(spec, by_model[top[0]]) if top else None,
        "hidden_gem": gem,
    }
