"""The simulated fleet's GPU pools (`serving.gpu_pool`): full-model endpoints taking turns on
shared GPUs, accounted by one gemfinder.cost.ModelPool for the fleet, and exported to the
endpoints file a search accounts from; a search's own accounting against the fleet's figures
is bench.speed.serving_cost's gpu-pool row."""

from __future__ import annotations

from dataclasses import replace

import pytest
from gemfinder.errors import UserError
from gemfinder.oracles.endpoints import endpoint_config_from_dict
from gemfinder.search import gem
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.build import endpoints_for

from bench.speed import serving_cost
from bench.speed.serving_cost import _pool, _pooled_fleet, _run
from tests.fleet_support import fleet_config


def _endpoint(k: int, slots: int = 2, **extra) -> dict:
    return {"name": f"e{k}", "model_id": f"org/model-{k}", "server": "vllm",
            "serving": {"model_load_s": 30, "query_s": 0.2,
                        "gpu_pool": {"name": "rack", "slots": slots}, **extra}}  # fmt: skip


async def test_the_pool_keeps_at_most_its_slots_up_across_endpoints():
    matrix, items = _pool(6, 20, seed=1)
    config = fleet_config(*[_endpoint(k) for k in range(6)])
    async with Fleet(config, matrix, items) as fleet:
        states = [fleet.state(n) for n in fleet.names]
        # 0, 1 up; 2 takes 0 down; 1 stays up; 0 comes back and takes 2 down (LRU)
        for k in (0, 1, 2, 1, 0, 0):
            states[k].account(None)
        loads = [s.ledger.model_loads for s in states]
        assert loads[:3] == [2, 1, 1] and sum(loads) == 4
        (pool,) = fleet.pools.values()
        assert pool.max_up == 2 and pool.evictions == 2
        assert states[1].ledger.gpu_seconds == pytest.approx(30 + 2 * 0.2)
        # Exported for the search's accounting, as an endpoints file gives it.
        urls = {n: fleet.url(n) for n in fleet.names}
        exported = endpoints_for(config, urls, "openai_completions")
        assert exported[0]["gpu_pool"] == {"name": "rack", "slots": 2}
        config0 = endpoint_config_from_dict(exported[0], "endpoints[0]")
        assert config0.gpu_pool is not None and config0.gpu_pool.slots == 2


def test_a_pool_of_two_sizes_or_a_bad_pool_names_the_field():
    with pytest.raises(UserError) as err:
        fleet_config(_endpoint(0, 2), _endpoint(1, 3))
    assert err.value.field == "fleet.endpoints[1].serving.gpu_pool.slots"
    with pytest.raises(UserError) as err:
        fleet_config(_endpoint(0, 0))
    assert err.value.field == "fleet.endpoints[0].serving.gpu_pool.slots"


@pytest.mark.parametrize("load_aware", [False, True], ids=["item-major", "load-aware"])
async def test_a_search_accounts_the_pool_as_the_fleet_measures_it(load_aware):
    """16 full models, one endpoint each, sharing 4 GPUs (30 s a load): the search's own
    accounting is the fleet's measurement, loads and GPU-seconds. The runner keeps at most the
    pool's slots of its models in flight (search.runner `_take`); without that, queries for
    several models would reach the pool interleaved and the fleet measured 1,022-1,052 GPU-s
    in load-aware order where the search accounted 812."""
    matrix, items = _pool(16, 100, seed=3)
    result, measured, _ = await _run(matrix, items, _pooled_fleet(matrix), load_aware, 160, "gem")
    cost = result.cost
    assert cost.queries == sum(m["queries"] for m in measured) == 160
    assert cost.model_loads == sum(m["model_loads"] for m in measured)
    assert cost.gpu_seconds == pytest.approx(sum(m["gpu_seconds"] for m in measured))
    # Each model up once at best (16 loads); item-major brings them up and down per pull.
    assert cost.model_loads < 40 if load_aware else cost.model_loads > 60


async def test_a_search_with_a_gem_check_accounts_the_pool_as_the_fleet_measures_it(
    monkeypatch,
):
    """The gem check sends as the search does (`_take`): at most the pool's slots of its models
    in flight. Half of the 16 models are "popular" here (8 > the pool's 4 slots), so the check
    asks 8 models at once; without the limit the fleet measured 30 loads (1,125 GPU-s) where the
    search accounted 25 (975)."""

    def with_downloads(*args, **kwargs):
        candidates = serving_cost_candidates(*args, **kwargs)
        return [replace(c, downloads=float(len(candidates) - k)) for k, c in enumerate(candidates)]

    serving_cost_candidates = serving_cost.candidates_for
    monkeypatch.setattr(serving_cost, "candidates_for", with_downloads)
    monkeypatch.setattr(gem, "TOP_SHARE", 0.5)
    matrix, items = _pool(16, 100, seed=3)
    result, measured, _ = await _run(matrix, items, _pooled_fleet(matrix), True, 1200, "gem")
    assert result.gem_check_queries > 0
    cost = result.cost
    assert cost.queries == sum(m["queries"] for m in measured)
    assert cost.model_loads == sum(m["model_loads"] for m in measured)
    assert cost.gpu_seconds == pytest.approx(sum(m["gpu_seconds"] for m in measured))
