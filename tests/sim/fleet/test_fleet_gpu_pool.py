"""The simulated fleet's GPU pools (`serving.gpu_pool`): full-model endpoints taking turns on
shared GPUs, accounted by one gemfinder.cost.ModelPool for the fleet, and exported to the
endpoints file a search accounts from; a search's own accounting against the fleet's figures
is bench.speed.serving_cost's gpu-pool row."""

from __future__ import annotations

import pytest
from gemfinder.errors import UserError
from gemfinder.oracles.endpoints import endpoint_config_from_dict
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.build import endpoints_for

from bench.speed.serving_cost import _pool
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
