"""The plan of an incremental search (gemfinder.search.plan_incremental): the pool its start
narrows it to, its incumbents' answers told from the evaluation cache as the runner tells them,
and then within 20% of what the incremental search spends on the simulated fleet."""

from __future__ import annotations

import asyncio

import pytest
from gemfinder.oracles import InferenceOracle
from gemfinder.oracles.allowlist import ANY_ENDPOINT
from gemfinder.search import plan, plan_incremental
from gemfinder.search.manager import SearchManager
from gemfinder.search.spec import IncrementalAsk, SearchSpec
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.config import fleet_from_dict
from gemfinder.store import Store

from bench.speed.serving_cost import _fleet, _pool, served

MODELS, NEW, PER_MODEL, PER_NEWCOMER = 32, 8, 20, 20


async def _parent_then_child(full_models: bool, algorithm: str):
    """A search of the first MODELS - NEW models, then an incremental one on all of them: the
    child's plan (made from the store before it starts), its result, the queries the fleet
    answered for it, and the plan made as if nothing were cached."""
    matrix, items = _pool(MODELS, 100, seed=3)
    config = fleet_from_dict(_fleet(matrix, 2, full_models))
    async with Fleet(config, matrix, items) as fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        candidates, configs = served(config, urls, matrix)
        by_url = {c.key: c for c in configs}
        oracle = InferenceOracle(configs)
        store = Store()
        manager = SearchManager(store, oracle, allowlist=ANY_ENDPOINT)
        try:
            old = [c for c in candidates if int(c.model_id.rsplit("-", 1)[1]) < MODELS - NEW]
            parent = SearchSpec(old, items, budget=PER_MODEL * len(old), algorithm=algorithm)
            parent.validate()
            row = await manager.wait((await manager.start(parent)).id)
            assert row.state == "succeeded"
            ask = IncrementalAsk(row.id, incumbents=8, per_newcomer=PER_NEWCOMER)
            child = SearchSpec(
                candidates, items, budget=PER_MODEL * MODELS, algorithm=algorithm, ask=ask
            )
            child.validate()
            run, cached = await store.off_loop(plan_incremental.narrowed, store, child, oracle)
            looked_up = []
            lookup = store.cached_many
            store.cached_many = lambda keys: looked_up.extend(keys) or lookup(keys)
            predicted = await asyncio.to_thread(plan.plan, run, by_url, 16, cached)
            del store.cached_many
            # Each incumbent's cell once over the 16 trials (they read one item order).
            assert len(looked_up) == len(set(looked_up)) <= run.budget
            blind = await asyncio.to_thread(plan.plan, run, by_url, 16)
            sent = sum(fleet.state(n).ledger.summary()["queries"] for n in fleet.names)
            row = await manager.wait((await manager.start(child)).id)
            answered = sum(fleet.state(n).ledger.summary()["queries"] for n in fleet.names)
        finally:
            await manager.close()
            await oracle.aclose()
    assert row.state == "succeeded", row.error
    return predicted, row.result, answered - sent, blind, run


@pytest.mark.parametrize("full_models", [False, True], ids=["adapter-heavy", "full-model-heavy"])
def test_the_plan_of_an_incremental_search_is_within_20_percent(full_models):
    predicted, result, answered, blind, run = asyncio.run(_parent_then_child(full_models, "gem"))
    print(f"plan: {predicted.queries.mean:.0f} queries + {predicted.cached.mean:.0f} cached, "
          f"{predicted.gpu_seconds.mean:.0f} GPU-s, {predicted.wall_s.mean:.0f} s wall "
          f"(as if nothing were cached: {blind.queries.mean:.0f} queries, "
          f"{blind.gpu_seconds.mean:.0f} GPU-s); search: {answered} queries + "
          f"{result.queries_cached} cached, {result.cost.gpu_seconds:.0f} GPU-s, "
          f"{result.cost.wall_s:.0f} s")  # fmt: skip
    assert result.incremental is not None and predicted.models == len(run.candidates)
    assert predicted.budget == run.budget  # the narrowed pool's budget, as the start sets it
    # The parent's answers: cache hits in the search, free pulls in the plan.
    assert result.queries_cached > 0
    assert predicted.cached.mean == pytest.approx(result.queries_cached, rel=0.2)
    assert predicted.queries.mean == pytest.approx(answered, rel=0.2)
    assert answered == result.cost.queries
    assert predicted.gpu_seconds.mean == pytest.approx(result.cost.gpu_seconds, rel=0.2)
    assert predicted.wall_s.mean == pytest.approx(result.cost.wall_s, rel=0.2)
    # Planned as if nothing were cached, the queries would be off by the parent's answers.
    assert blind.cached.mean == 0
    assert blind.queries.mean > 1.2 * answered
