"""The runner follows the core's load-aware round order: the same queries and the same winner as
the item-major order for the same seed, far fewer adapter swaps on endpoints with few slots."""

from __future__ import annotations

import numpy as np
import pytest
from gemfinder import _core
from gemfinder.candidates import Candidate
from gemfinder.cost import CostModel, SlotLedger
from gemfinder.oracles import OracleResult, ReplayOracle
from gemfinder.search.runner import SearchRunner
from gemfinder.search.serving_cost import SearchCost, load_groups
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.store import Store

from tests.fleet_support import make_items

N_MODELS, ENDPOINTS = 24, 3
SLOTS = CostModel(adapter_load_s=2, swap_s=0.5, query_s=0.2, max_loras=4, max_cpu_loras=8)


class OrderedReplay(ReplayOracle):
    """Answers from the matrix and records the order it was asked in."""

    def __init__(self, matrix: CorrectnessMatrix) -> None:
        super().__init__(matrix)
        self.asked: list[tuple[str, str]] = []

    async def answer(self, candidate, item, *, system_prompt: bool = False) -> OracleResult:
        self.asked.append((candidate.model_id, item.id))
        return await super().answer(candidate, item, system_prompt=system_prompt)


@pytest.fixture(scope="module")
def pool():
    items = make_items(120, tasks=("mmlu",))
    rng = np.random.default_rng(11)
    acc = rng.uniform(0.5, 0.85, N_MODELS)
    acc[17] = 0.93
    correct = (rng.random((N_MODELS, len(items))) < acc[:, None]).astype(np.uint8)
    candidates = [
        Candidate(f"m{k}", f"http://h{k % ENDPOINTS}:80", adapter_id=f"a{k}")
        for k in range(N_MODELS)
    ]
    matrix = CorrectnessMatrix(correct, [c.model_id for c in candidates], [it.id for it in items])
    return candidates, items, matrix


async def _search(pool, algorithm: str, load_aware: bool):
    candidates, items, matrix = pool
    spec = SearchSpec(candidates, items, budget=30 * N_MODELS, algorithm=algorithm, seed=4)
    spec.validate()
    store = Store()
    store.create_search("s", None, spec.to_dict())
    oracle = OrderedReplay(matrix)
    # The runner's largest batch (2,048 by default) would hold whole rounds here: a small one
    # makes the order of its batches matter, as on a large tree.
    runner = SearchRunner("s", spec, oracle, store, load_aware=load_aware, max_pending=64)
    result = await runner.run()
    return result, oracle.asked


def _swaps(asked, candidates) -> int:
    by_id = {c.model_id: c for c in candidates}
    cost = SearchCost({f"http://h{e}:80": SlotLedger(SLOTS) for e in range(ENDPOINTS)})
    for model_id, _ in asked:
        cost.sent(by_id[model_id])
    found = cost.cost()
    assert found is not None
    return found.swaps


@pytest.mark.parametrize("algorithm", ["gem", "sh", "sr"])
async def test_same_queries_same_winner_fewer_swaps(pool, algorithm):
    plain, asked_plain = await _search(pool, algorithm, load_aware=False)
    aware, asked_aware = await _search(pool, algorithm, load_aware=True)
    assert aware.winner == plain.winner and aware.ranking == plain.ranking
    assert sorted(asked_aware) == sorted(asked_plain)  # the same queries, in another order
    assert asked_aware != asked_plain
    candidates = pool[0]
    swaps_plain, swaps_aware = _swaps(asked_plain, candidates), _swaps(asked_aware, candidates)
    assert swaps_aware * 5 < swaps_plain, (swaps_aware, swaps_plain)


async def test_sequential_algorithms_keep_their_order(pool):
    """UCB chooses each pull from the grades: there is no round to reorder."""
    plain, asked_plain = await _search(pool, "ucb", load_aware=False)
    aware, asked_aware = await _search(pool, "ucb", load_aware=True)
    assert asked_aware == asked_plain and aware.winner == plain.winner


def test_groups_are_the_endpoints_and_must_cover_every_model(pool):
    candidates = pool[0]
    assert load_groups(candidates[:5]) == [0, 1, 2, 0, 1]
    sched = _core.Scheduler("sh", N_MODELS, 50, 400, 1)
    assert not sched.load_aware_round
    sched.set_load_groups(load_groups(candidates))
    assert sched.load_aware_round
    with pytest.raises(ValueError, match="load_groups"):
        sched.set_load_groups([0, 1])
    # Not saved: a restored scheduler finishes its round load-aware, then needs the groups.
    restored = _core.Scheduler.restore(sched.snapshot())
    assert restored.load_aware_round
