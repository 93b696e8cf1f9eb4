"""Full-model endpoints sharing a GPU pool (`gpu_pool` in the endpoints file): at most `slots`
of their models up at once in the serving-cost accounting, the pool's models served one after
another by the load-aware order, and every bad pool named by its field."""

from __future__ import annotations

import json

import pytest
from fleet_support import FAST_RETRY
from gemfinder.candidates import Candidate
from gemfinder.cost import CostModel, GpuPool, ModelPool, SlotLedger
from gemfinder.errors import UserError
from gemfinder.oracles import InferenceOracle
from gemfinder.oracles.endpoints import endpoint_config_from_dict, load_endpoint_configs
from gemfinder.search.runner import SearchRunner
from gemfinder.search.serving_cost import SearchCost, load_groups
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.build import candidates_for, endpoints_for, fleet_from_matrix
from gemfinder.store import Store

from tests.pool_support import BEST, clear_best_pool

COST = {"model_load_s": 30, "query_s": 0.2}
POOL_SLOTS = 2


def _entry(k: int, **extra) -> dict:
    return {"url": f"http://gpu-{k}:80", "cost": COST, **extra}


@pytest.mark.parametrize(
    ("pool", "field"),
    [
        ("big", "endpoints[0].gpu_pool"),
        ({"slots": 2}, "endpoints[0].gpu_pool.name"),
        ({"name": "", "slots": 2}, "endpoints[0].gpu_pool.name"),
        ({"name": "a" * 201, "slots": 2}, "endpoints[0].gpu_pool.name"),
        ({"name": "a"}, "endpoints[0].gpu_pool.slots"),
        ({"name": "a", "slots": 0}, "endpoints[0].gpu_pool.slots"),
        ({"name": "a", "slots": True}, "endpoints[0].gpu_pool.slots"),
        ({"name": "a", "slots": 2.5}, "endpoints[0].gpu_pool.slots"),
        ({"name": "a", "slots": 2, "gpus": 8}, "endpoints[0].gpu_pool.gpus"),
    ],
)
def test_a_bad_pool_names_the_field(pool, field):
    with pytest.raises(UserError) as err:
        endpoint_config_from_dict(_entry(0, gpu_pool=pool), "endpoints[0]")
    assert err.value.field == field


def test_a_pool_needs_the_cost_block_and_one_size(tmp_path):
    with pytest.raises(UserError) as err:
        endpoint_config_from_dict(
            {"url": "http://gpu-0:80", "gpu_pool": {"name": "a", "slots": 2}}, "endpoints[0]"
        )
    assert err.value.field == "endpoints[0].gpu_pool" and "cost" in err.value.reason
    path = tmp_path / "endpoints.json"
    entries = [_entry(0, gpu_pool={"name": "a", "slots": 2}), _entry(1)]
    entries.append(_entry(2, gpu_pool={"name": "a", "slots": 3}))
    path.write_text(json.dumps(entries))
    with pytest.raises(UserError) as err:
        load_endpoint_configs(path)
    assert err.value.field == "endpoints[2].gpu_pool.slots"
    assert "endpoints[0]" in err.value.reason
    entries[2]["gpu_pool"]["slots"] = 2
    path.write_text(json.dumps(entries))
    configs = load_endpoint_configs(path)
    assert configs[0].gpu_pool == configs[2].gpu_pool == GpuPool("a", 2)
    assert configs[1].gpu_pool is None


def test_at_most_slots_models_are_up_and_a_model_taken_down_loads_again():
    pool = ModelPool(GpuPool("a", 2))
    model = CostModel(model_load_s=30.0, adapter_load_s=2.0, query_s=0.5, max_loras=1)
    ledgers = [SlotLedger(model, pool=pool) for _ in range(3)]
    order = [0, 1, 2, 0, 0, 1, 2, 2]  # loads: 0, 1, 2 (0 down), 0 (1 down), 1 (2 down), 2
    for k in order:
        ledgers[k].serve("ft" if k == 2 else None)
        assert len(pool.up()) <= 2
    assert pool.max_up == 2 and pool.evictions == 4
    loads = [ledger.model_loads for ledger in ledgers]
    assert loads == [2, 2, 2]
    # Endpoint 2's adapter went down with its model: read again when it came back up.
    assert ledgers[2].adapter_loads == 2
    total = sum(ledger.gpu_seconds for ledger in ledgers)
    assert total == pytest.approx(6 * 30.0 + 2 * 2.0 + len(order) * 0.5)
    # Without a pool each model is loaded once and stays up.
    alone = [SlotLedger(model) for _ in range(3)]
    for k in order:
        alone[k].serve(None)
    assert [ledger.model_loads for ledger in alone] == [1, 1, 1]


def test_a_pools_endpoints_are_one_load_group():
    urls = ["http://a:1", "http://b:1", "http://c:1", "http://d:1"]
    configs = {
        url: endpoint_config_from_dict(
            _entry(0, url=url, gpu_pool={"name": "p", "slots": 2}) if k < 3 else _entry(0, url=url),
            f"endpoints[{k}]",
        )
        for k, url in enumerate(urls)
    }
    candidates = [Candidate(f"org/m{k}", url) for k, url in enumerate(urls + urls[:1])]
    assert load_groups(candidates) == [0, 1, 2, 3, 0]
    assert load_groups(candidates, configs) == [0, 0, 0, 1, 0]


async def _search(matrix, items, load_aware: bool):
    config = fleet_from_matrix(matrix, endpoints=len(matrix.models))
    async with Fleet(config, matrix, items) as fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        candidates = candidates_for(config, urls, matrix)
        entries = [
            {**e, "cost": COST, "gpu_pool": {"name": "rack", "slots": POOL_SLOTS}}
            for e in endpoints_for(config, urls)
        ]
        configs = [endpoint_config_from_dict(e, f"endpoints[{k}]") for k, e in enumerate(entries)]
        oracle = InferenceOracle(configs, policy=FAST_RETRY)
        spec = SearchSpec(candidates, items, budget=20 * len(candidates), seed=5)
        spec.validate()
        store = Store()
        store.create_search("s", None, spec.to_dict())
        await oracle.prepare(candidates)
        runner = SearchRunner("s", spec, oracle, store, load_aware=load_aware)
        result = await runner.run()
        await oracle.aclose()
    return result, runner.cost


async def test_a_search_on_a_pool_never_has_more_models_up_than_its_slots():
    """16 full models on 16 endpoints sharing 2 GPUs: the accounting never has more than 2 up,
    and the load-aware order (the pool as one group) brings them up far fewer times than
    the item-major one, with the same winner."""
    matrix, items = clear_best_pool(per_task=6)
    aware, aware_cost = await _search(matrix, items, load_aware=True)
    plain, plain_cost = await _search(matrix, items, load_aware=False)
    for cost in (aware_cost, plain_cost):
        assert isinstance(cost, SearchCost)
        assert cost.pools["rack"].max_up == POOL_SLOTS
    assert aware.winner.model_id == plain.winner.model_id == BEST
    assert aware.cost is not None and plain.cost is not None
    assert aware.cost.queries == plain.cost.queries
    assert aware.cost.model_loads * 4 < plain.cost.model_loads
    assert aware.cost.gpu_seconds < plain.cost.gpu_seconds


async def test_a_plan_of_a_pool_loads_about_what_the_search_loads():
    """`gemfinder plan` accounts a GPU pool as the search does (the pool's ModelPool shared by
    its endpoints' ledgers, the pool as one load group): its predicted model loads stay near
    what the search then loads, far from the item-major order's (tenfold)."""
    from gemfinder.search import plan

    matrix, items = clear_best_pool(per_task=6)
    aware, _ = await _search(matrix, items, load_aware=True)
    config = fleet_from_matrix(matrix, endpoints=len(matrix.models))
    urls = {name: f"http://{name}:80" for name in (e.name for e in config.endpoints)}
    candidates = candidates_for(config, urls, matrix)
    entries = [
        {**e, "cost": COST, "gpu_pool": {"name": "rack", "slots": POOL_SLOTS}}
        for e in endpoints_for(config, urls)
    ]
    configs = {
        c.url: c
        for c in (endpoint_config_from_dict(e, f"endpoints[{k}]") for k, e in enumerate(entries))
    }
    spec = SearchSpec(candidates, items, budget=20 * len(candidates), seed=5)
    spec.validate()
    predicted = plan.plan(spec, configs, trials=4)
    assert aware.cost is not None
    assert predicted.model_loads.mean <= 2 * aware.cost.model_loads


def test_a_restored_pool_ledger_is_up_without_a_new_load():
    """A search resumed after a restart restores each ledger's state: a pooled model that was up
    is up in its pool again, so its next query counts no load it never had; beyond the pool's
    slots the rest are down (and load again when asked)."""
    spec = GpuPool("rack", 1)
    before = ModelPool(spec)
    a, b = (SlotLedger(CostModel(model_load_s=30, query_s=1), pool=before) for _ in range(2))
    a.serve(None)
    pool = ModelPool(spec)
    again = SlotLedger(CostModel(model_load_s=30, query_s=1), pool=pool)
    again.restore(a.state())
    assert again.serve(None) == 1 and again.model_loads == 1
    other = SlotLedger(CostModel(model_load_s=30, query_s=1), pool=pool)
    other.restore(a.state())  # a second "up" model where the pool has one slot: down
    assert other.serve(None) == 31 and pool.max_up == 1
