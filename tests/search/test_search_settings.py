"""Per-search settings reach every pull (prompt variant) and survive a resume (budget grant)."""

from __future__ import annotations

import asyncio

import pytest
from gemfinder import metrics
from gemfinder.candidates import Candidate
from gemfinder.oracles import OracleResult
from gemfinder.search.manager import SearchManager
from gemfinder.search.runner import SearchRunner
from gemfinder.search.spec import SearchSpec
from gemfinder.store import Store

from tests.fleet_support import make_items


class RecordingOracle:
    """Answers every item correctly for model 0 and wrongly otherwise; records the variant."""

    def __init__(self) -> None:
        self.variants: list[bool] = []

    async def prepare(self, candidates: list[Candidate]) -> None:
        pass

    async def release(self, candidates) -> None:
        pass

    async def answer(self, candidate, item, *, system_prompt: bool = False) -> OracleResult:
        self.variants.append(system_prompt)
        reward = int(candidate.model_id == "m0")
        return OracleResult(candidate.model_id, item.id, reward)

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("system_prompt", [True, False])
async def test_every_pull_uses_the_spec_prompt_variant(system_prompt):
    candidates = [Candidate(f"m{k}", f"http://h{k}:80") for k in range(4)]
    spec = SearchSpec(
        candidates, make_items(2, tasks=("mmlu",)), budget=24, system_prompt=system_prompt
    )
    oracle = RecordingOracle()
    store = Store()
    store.create_search("s1", None, spec.to_dict())
    await SearchRunner("s1", spec, oracle, store).run()
    assert oracle.variants and set(oracle.variants) == {system_prompt}


async def test_a_resumed_search_is_granted_what_it_has_left():
    """After a restart the new process grants the remaining budget, so spent <= allocated."""
    candidates = [Candidate(f"m{k}", f"http://h{k}:80") for k in range(4)]
    spec = SearchSpec(candidates, make_items(2, tasks=("mmlu",)), budget=24)
    store = Store()
    store.create_search("s1", None, spec.to_dict())
    sched = spec.scheduler()
    for model, item in sched.ask():
        sched.tell(model, item, model == 0)
    store.save_snapshot("s1", sched.snapshot())
    before = metrics.BUDGET_ALLOCATED._value.get()
    manager = SearchManager(store, RecordingOracle())
    assert await manager.resume(store.unfinished()[0])
    assert metrics.BUDGET_ALLOCATED._value.get() - before == spec.budget - sched.spent
    await manager.close()


class ConcurrencyProbe(RecordingOracle):
    """Yields once per answer and records how many answers were in flight at most."""

    def __init__(self) -> None:
        super().__init__()
        self.active = self.peak = 0

    async def answer(self, candidate, item, *, system_prompt: bool = False) -> OracleResult:
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0)
        self.active -= 1
        return await super().answer(candidate, item, system_prompt=system_prompt)


@pytest.mark.parametrize(("algorithm", "limit"), [("sh_correlated", 7), ("ucb", 3)])
async def test_pulls_in_flight_stay_within_the_window(algorithm, limit):
    """Round-based searches hand out at most `max_pending` pulls at once, sequential ones at most
    `sequential_batch` (they must see grades to choose the next pull)."""
    candidates = [Candidate(f"m{k}", f"http://h{k}:80") for k in range(6)]
    spec = SearchSpec(candidates, make_items(3, tasks=("mmlu",)), budget=60, algorithm=algorithm)
    store = Store()
    store.create_search("s1", None, spec.to_dict())
    oracle = ConcurrencyProbe()
    runner = SearchRunner("s1", spec, oracle, store, max_pending=7, sequential_batch=3)
    await runner.run()
    assert runner.sched.finished and 1 < oracle.peak <= limit


async def test_an_ended_search_keeps_its_verdict_but_not_its_pulls():
    candidates = [Candidate(f"m{k}", f"http://h{k}:80", downloads=float(k)) for k in range(4)]
    spec = SearchSpec(candidates, make_items(3, tasks=("mmlu",)), budget=40)
    store = Store()
    manager = SearchManager(store, RecordingOracle())
    row = await manager.start(spec)
    for _ in range(500):  # the search runs in the background; it takes milliseconds
        if store.get_search(row.id).state not in ("pending", "running"):
            break
        await asyncio.sleep(0.01)
    ended = store.get_search(row.id)
    assert ended.state == "succeeded" and ended.result.gem_verdict
    assert store.outcomes(row.id, [0, 1, 2, 3]) == {0: {}, 1: {}, 2: {}, 3: {}}
    assert store.count_evals() > 0
