"""Progress and result of a search as plain JSON-ready dicts (the gem verdict: search.gem)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gemfinder import _core
from gemfinder.search import gem_check
from gemfinder.search.gem import HIDDEN_GEM, most_downloaded, verdict
from gemfinder.search.spec import SearchSpec


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


def progress(
    spec: SearchSpec, sched: _core.Scheduler, cached: int, elapsed: float, checked: int = 0
) -> dict[str, Any]:
    """`checked`: gem-check answers so far (search.gem_check), counted in `spent`."""
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
        "budget": spec.budget,
        "spent": sched.spent + checked,
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


def result(
    spec: SearchSpec,
    sched: _core.Scheduler,
    cached: int,
    elapsed: float,
    outcomes: Callable[[list[int]], dict[int, dict[int, int]]],
) -> dict[str, Any]:
    """`outcomes(models)` gives {model: {item: reward}} of this search, for the gem verdict."""
    ranking = sched.ranking()
    by_model = {r.model: r for r in ranking}
    winner_idx = sched.recommendation
    if winner_idx is None:  # cancelled mid-search: the current leader
        winner_idx = ranking[0].model
    winner = by_model[winner_idx]
    top = most_downloaded(spec)
    seen = outcomes([winner_idx, *top])
    gem, evidence = verdict(spec, winner_idx, seen)
    checked = gem_check.spent({m: by_model[m].seen for m in top}, seen)
    popular = None
    if top:
        popular = estimate(spec, by_model[top[0]]) | answered(seen.get(top[0], {}))
    return {
        "recommended_model_id": spec.candidates[winner_idx].model_id,
        "ranking": [estimate(spec, r) for r in ranking],
        "queries_spent": sched.spent + checked,
        "queries_failed": sched.failed,
        "queries_cached": cached,
        "exhaustive_queries": spec.exhaustive,
        "elapsed_s": elapsed,
        "winner": estimate(spec, winner),
        "most_popular": popular,
        "hidden_gem": gem == HIDDEN_GEM,
        "gem_verdict": gem,
        "gem_evidence": evidence,
        "gem_check_queries": checked,
    }


def answered(rewards: dict[int, int]) -> dict[str, Any]:
    """Estimate fields from every item a model answered (the search's and the gem check's)."""
    n, hits = len(rewards), sum(rewards.values())
    lower, upper = _core.wilson_interval(hits, n)
    return {
        "accuracy": hits / n if n else 0.0,
        "lower": lower,
        "upper": upper,
        "items_seen": n,
        "successes": hits,
    }
