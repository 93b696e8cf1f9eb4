"""A budget in GPU-seconds (SearchSpec.gpu_seconds): planned from estimates, enforced as it runs.

Planned: before a search starts, the cap is turned into the queries it buys at the endpoints'
cost models, so that the algorithm lays its rounds out for what it will be able to spend:

    queries = (cap - loads) / mean query time

where `loads` brings every candidate up once (each endpoint's base model, each adapter into host
memory and a GPU slot) and the mean query time is over the candidates (configured `query_s`; an
endpoint that measures it counts 0 until measured). The search's query budget becomes the smaller
of its own and this. A cap that buys fewer queries than the algorithm needs is refused, naming
the field, before anything is sent.

Enforced: the runner asks `SearchCost.would_pass` before each query it sends and stops once the
next one would take the spend past the cap (search.runner; the result says the cap stopped it
and ranks what was reached). The plan is an estimate: reloads of adapters evicted between rounds
and measured query times are not in it, and then the cap stops the search before its algorithm
would; docs/service.md "A budget in GPU-seconds" says how far the spend may pass the cap.
"""

from __future__ import annotations

import math
from dataclasses import replace

from gemfinder import _core
from gemfinder.errors import UserError
from gemfinder.search.serving_cost import SearchCost
from gemfinder.search.spec import SearchSpec


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


def planned(spec: SearchSpec, cost: SearchCost, prefix: str = "spec") -> SearchSpec:
    """`spec` with its query budget planned down to what its GPU-second cap buys (the spec
    itself when it has no cap or the cap buys more); UserError naming `{prefix}.gpu_seconds`
    when the cap cannot pay for the search the algorithm needs."""
    if spec.gpu_seconds is None:
        return spec
    where = f"{prefix}.gpu_seconds"
    loads, queries = plan_queries(spec, cost)
    if loads >= spec.gpu_seconds:
        raise UserError(
            where,
            f"{spec.gpu_seconds:g} GPU-seconds do not cover bringing every candidate up once "
            f"({loads:,.1f} GPU-seconds of loads at the endpoints' cost models)",
        )
    if queries is None or queries >= spec.budget:
        return spec
    out = replace(spec, budget=queries)
    try:
        out.scheduler()
    except _core.SearchError as err:
        if err.kind != "budget_too_small":
            raise
        raise UserError(
            where,
            f"{spec.gpu_seconds:g} GPU-seconds buy about {queries:,} queries at the endpoints' "
            f"cost models ({loads:,.1f} of them loading), fewer than {spec.algorithm} needs "
            f"({err.why}; at least {err.needed:,} for the search)",
        ) from None
    return out
