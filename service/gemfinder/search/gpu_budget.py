"""A budget in GPU-seconds (SearchSpec.gpu_seconds): planned from estimates, enforced as it runs.

Planned: before a search starts, the cap is turned into the queries it buys at the endpoints'
cost models, so that the algorithm lays its rounds out for what it will be able to spend:

    queries = (cap - loads) / mean query time

where `loads` brings every candidate up once (each endpoint's base model, each adapter into host
memory and a GPU slot) and the mean query time is over the candidates (configured `query_s`; an
endpoint that measures it counts 0 until measured). That misses the reloads of adapters (and
pooled models) evicted between rounds, so a round-based algorithm's budget is then laid out by
replaying the search (gemfinder.search.plan, on its synthetic tree): the largest budget whose
replay spends at most the cap, in a bounded number of replays (`_replayed`). The search's query
budget becomes the smaller of its own and this. A cap that buys fewer queries than the algorithm
needs is refused, naming the field, before anything is sent.

Enforced: the runner asks `SearchCost.would_pass` before each query it sends and stops once the
next one would take the spend past the cap (search.runner; the result says the cap stopped it
and ranks what was reached). The plan is an estimate: the replay's answers are synthetic, a
sequential algorithm's reloads and measured query times are not in it, and then the cap may stop
the search before its algorithm would; docs/service.md "A budget in GPU-seconds" says how far
the spend may pass the cap.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from gemfinder import _core
from gemfinder.errors import UserError
from gemfinder.search import plan
from gemfinder.search.serving_cost import SearchCost
from gemfinder.search.spec import SearchSpec

# Replays of the search at most when a start plans its budget (each one simulated search of
# at most the budget's pulls; docs/service.md "A budget in GPU-seconds" has the time it takes).
MAX_REPLAYS = 8
REPLAY_PULLS = 1_000_000  # pulls of the replays together (fewer replays of a larger budget)


def plan_queries(spec: SearchSpec, cost: SearchCost) -> tuple[float, int | None]:
    """(GPU-seconds of bringing every candidate up once, queries the rest of the cap buys);
    None: no query time is known up front, so the cap does not bound the queries planned."""
    assert spec.gpu_seconds is not None
    loads = 0.0
    query_s: list[float] = []
    up: set[str] = set()
    for cand in spec.candidates:
        ledger = cost.ledger(cand.endpoint)
        if ledger is None:
            continue
        base = ledger.would_cost(None) - ledger.model.query_s  # the model load, if not up
        url = cand.endpoint.rstrip("/")
        if url not in up:
            up.add(url)
            loads += base
        adapter = cand.adapter_id or None
        loads += ledger.would_cost(adapter) - ledger.model.query_s - base
        query_s.append(ledger.query_s)
    mean = sum(query_s) / len(query_s) if query_s else 0.0
    if mean <= 0.0:
        return loads, None
    return loads, max(int(math.floor((spec.gpu_seconds - loads) / mean)), 0)


def planned(spec: SearchSpec, configs: dict[str, Any], prefix: str = "spec") -> SearchSpec:
    """`spec` with its query budget planned down to what its GPU-second cap buys (the spec
    itself when it has no cap or the cap buys more); `configs`: the endpoint settings by URL
    (an oracle's `configs`). UserError naming `{prefix}.gpu_seconds` when the cap cannot pay
    for the search the algorithm needs. CPU-bound for up to a second or so (the replays):
    callers on an event loop run it on a worker thread."""
    if spec.gpu_seconds is None:
        return spec
    configs = {url.rstrip("/"): c for url, c in configs.items()}
    where = f"{prefix}.gpu_seconds"
    loads, queries = plan_queries(
        spec, SearchCost.of(plan._Configs(configs), spec.candidates, spec.gpu_seconds)
    )
    if loads >= spec.gpu_seconds:
        raise UserError(
            where,
            f"{spec.gpu_seconds:g} GPU-seconds do not cover bringing every candidate up once "
            f"({loads:,.1f} GPU-seconds of loads at the endpoints' cost models)",
        )
    if queries is None:
        return spec
    budget = min(queries, spec.budget)
    if _lays_out_rounds(spec):
        budget = min(_replayed(spec, configs, budget), spec.budget)
    if budget >= spec.budget:
        return spec
    out = replace(spec, budget=budget)
    try:
        out.scheduler()
    except _core.SearchError as err:
        if err.kind != "budget_too_small":
            raise
        raise UserError(
            where,
            f"{spec.gpu_seconds:g} GPU-seconds buy about {budget:,} queries at the endpoints' "
            f"cost models ({loads:,.1f} of them loading), fewer than {spec.algorithm} needs "
            f"({err.why}; at least {err.needed:,} for the search)",
        ) from None
    return out


def _lays_out_rounds(spec: SearchSpec) -> bool:
    """Whether the algorithm lays its rounds out from the budget (then reloads between rounds
    follow from the budget and a replay predicts them); a sequential algorithm or a
    fixed-confidence search moves between models as the grades say, which a replay on
    synthetic answers would only guess."""
    if spec.epsilon is not None or spec.budget > REPLAY_PULLS:
        return False
    try:
        return spec.scheduler().round_based
    except _core.SearchError:
        return False


def _replayed(spec: SearchSpec, configs: dict[str, Any], formula: int) -> int:
    """The largest query budget up to the spec's whose replayed search (gemfinder.search.plan:
    the scheduler's own pulls through the endpoints' ledgers, reloads between rounds included)
    spends at most the cap, to within 1%: a bracket from the formula's budget, narrowed by the
    GPU-seconds a query costs in the last replay, or halved where that guess would hardly
    narrow it (a layout's spend jumps where the algorithm's rounds change). At most
    MAX_REPLAYS replays, deterministic (the spec's seed, trial 0). When no budget the algorithm
    takes fits (reloads alone pass the cap), the cap stops the search whatever its layout: the
    formula's budget, which buys the most queries."""
    cap = spec.gpu_seconds
    assert cap is not None
    least = _least(spec)
    if least is None or least > spec.budget:
        return formula  # the caller refuses it
    correct = plan.synthetic_answers(spec)
    fits, passes = least - 1, spec.budget + 1  # budgets known (or taken) to fit / to pass
    found = False  # whether a replay fitted
    guess = min(max(formula, least), spec.budget)
    for _ in range(min(MAX_REPLAYS, REPLAY_PULLS // spec.budget)):
        spent, loads, queries = plan.replayed_spend(replace(spec, budget=guess), configs, correct)
        if spent <= cap:
            fits, found = guess, True
        else:
            passes = guess
        if passes - fits <= max(1, fits // 100) or queries == 0 or spent <= loads:
            break
        # More budget for what the cap leaves, less for what passes it, at this replay's query
        # time (a layout's loads hardly change with its budget, between its jumps).
        step = math.floor((cap - spent) / ((spent - loads) / queries))
        guess = _within(guess + step, fits, passes, spec.budget)
    return fits if found else formula


def _within(guess: int, fits: int, passes: int, most: int) -> int:
    """`guess` where it narrows the bracket (fits, passes) by a tenth at least, else its middle;
    the spec's own budget when the guess reaches it (it may fit as it is)."""
    if passes > most and guess >= most:
        return most
    margin = max((passes - fits) // 10, 1)
    if fits + margin <= guess <= passes - margin:
        return guess
    return (fits + passes) // 2


def _least(spec: SearchSpec) -> int | None:
    """The smallest query budget the algorithm takes (its gem-check reserve included); None:
    it refuses the spec for another reason."""
    budget = 1
    for _ in range(32):  # the reserve is a share of the budget: a few steps
        try:
            replace(spec, budget=budget).scheduler()
            return budget
        except _core.SearchError as err:
            if err.kind != "budget_too_small":
                return None
            short = err.needed - replace(spec, budget=budget).search_budget
            budget += max(short, 1)
    return None
