"""Progress and result of a search (search.values; the gem verdict: search.gem).

Every number is finite (strict JSON): a model without a graded answer has accuracy 0, items_seen
0 and the interval [0, 1]. Each model has one estimate per result: the ranking, `winner` and
`most_popular` all rest on every answer the model gave in this search, the gem check's
included; the order of the ranking is the search's (recommended model first, then survivors,
then by how late each model was eliminated), which the check does not change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gemfinder import _core
from gemfinder.search import gem_check, incremental
from gemfinder.search.gem import HIDDEN_GEM, most_downloaded, verdict
from gemfinder.search.per_task import Counts, per_task
from gemfinder.search.spec import AnyScheduler, SearchSpec
from gemfinder.search.values import Certificate, Estimate, Progress, Result


def estimate(
    spec: SearchSpec, ranked: _core.RankedModel, rewards: dict[int, int] | None = None
) -> Estimate:
    """A ranked model's estimate; with `rewards` ({item: reward} of every answer it gave in
    this search) when they are more than the search's, the estimate rests on all of them."""
    cand = spec.candidates[ranked.model]
    elim = ranked.eliminated_in_round
    out = Estimate(
        model_id=cand.model_id,
        rank=ranked.rank,
        accuracy=ranked.mean if ranked.seen else 0.0,  # the core's mean is NaN when unseen
        lower=ranked.lower,
        upper=ranked.upper,
        items_seen=ranked.seen,
        successes=ranked.successes,
        eliminated_in_round=0 if elim is None else elim + 1,
        downloads=cand.downloads,
        official=cand.official,
    )
    if rewards is not None and len(rewards) > ranked.seen:
        out = replace(out, **answered(rewards))
    return out


OUTCOME_CHUNK = 500  # models per store query when reading every answer for the certificate


def progress(
    spec: SearchSpec, sched: AnyScheduler, cached: int, elapsed: float, checked: int = 0
) -> Progress:
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
        leader_acc = next((r.mean for r in ranking if r.model == leader and r.seen), 0.0)
    return Progress(
        budget=spec.budget,
        spent=sched.spent + checked,
        failed=sched.failed,
        skipped=sched.skipped,
        cached=cached,
        round=rnd[0] + 1 if rnd else 0,
        total_rounds=rnd[1] if rnd else 0,
        survivors=len(sched.survivors()),
        leader_model_id=spec.candidates[leader].model_id if leader is not None else "",
        leader_accuracy=leader_acc,
        elapsed_s=elapsed,
        certificate=certificate(sched),
    )


def certificate(
    sched: AnyScheduler,
    delta: float = 0.0,
    outcomes: Callable[[list[int]], dict[int, dict[int, int]]] | None = None,
) -> Certificate | None:
    """The certificate of a fixed-confidence search (its leader's, while it runs); of a
    fixed-budget one at `delta` from the graded answers of every model (`outcomes`), when it
    has finished with correlated sampling; else None."""
    if not isinstance(sched, _core.CertifiedScheduler):
        if outcomes is None or sched.recommendation is None:
            return None
        grades = {}
        models = list(range(sched.n_models))
        for start in range(0, len(models), OUTCOME_CHUNK):  # SQL's limit on parameters
            for m, rewards in outcomes(models[start : start + OUTCOME_CHUNK]).items():
                grades.update({(m, item): reward > 0 for item, reward in rewards.items()})
        reached = sched.certificate(delta, grades)
        return None if reached is None else Certificate(epsilon_reached=reached, delta=delta)
    reached = sched.epsilon_reached
    return Certificate(
        epsilon_reached=reached,
        delta=sched.delta,
        epsilon=sched.epsilon,
        certified=reached <= sched.epsilon,
    )


def result(
    spec: SearchSpec,
    sched: AnyScheduler,
    cached: int,
    elapsed: float,
    outcomes: Callable[[list[int]], dict[int, dict[int, int]]],
) -> Result:
    """`outcomes(models)` gives {model: {item: reward}} of this search, for the gem verdict.
    Without the per-task results of a mixed query set: `with_per_task` adds them."""
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
    estimates = tuple(estimate(spec, r, seen.get(r.model)) for r in ranking)
    by_id = {e.model_id: e for e in estimates}
    recommended = spec.candidates[winner_idx].model_id
    lineage = spec.incremental
    return Result(
        recommended_model_id=recommended,
        ranking=estimates,
        queries_spent=sched.spent + checked,
        queries_failed=sched.failed,
        queries_cached=cached,
        exhaustive_queries=spec.exhaustive,
        elapsed_s=elapsed,
        winner=by_id[spec.candidates[winner.model].model_id],
        most_popular=by_id[spec.candidates[top[0]].model_id] if top else None,
        hidden_gem=gem == HIDDEN_GEM,
        gem_verdict=gem,
        gem_evidence=tuple(evidence),
        gem_check_queries=checked,
        incremental=None if lineage is None else incremental.outcome(lineage, recommended),
        certificate=certificate(sched, spec.delta, outcomes),
    )


def with_per_task(found: Result, spec: SearchSpec, counts: Counts) -> Result:
    """`found` with the per-task results and the overall ranking of a mixed query set, from
    `counts` ({model: {task: (graded, successes)}} of every model, counted by the store: one
    row per model and task). CPU only (0.8 s at 5,000 models): the runner calls it on a
    worker thread, so the event loop keeps answering RPCs as a search ends."""
    tasks, overall = per_task(spec, found.ranking, counts)
    return replace(found, per_task=tasks, overall=overall)


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
