"""The gem check: with the kept-back budget, the most downloaded 1% answer the winner's items."""

from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np
import pytest
from gemfinder import _core
from gemfinder.candidates import Candidate
from gemfinder.errors import UserError
from gemfinder.oracles import OracleResult, ReplayOracle
from gemfinder.oracles.base import FailureKind
from gemfinder.search import gem, gem_check
from gemfinder.search.manager import SearchManager
from gemfinder.search.runner import SearchRunner
from gemfinder.search.spec import Limits, SearchSpec
from gemfinder.server.convert import spec_from_proto, spec_to_proto
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.store import Store
from prometheus_client import REGISTRY

from tests.fleet_support import make_items

N_MODELS, WINNER, POPULAR = 40, 39, 0


class CountingReplay(ReplayOracle):
    """Answers from the pool's matrix and counts what each model was asked; `failing` models
    fail every query (an endpoint error, never a 0)."""

    def __init__(self, matrix: CorrectnessMatrix, failing=()) -> None:
        super().__init__(matrix)
        self.failing = {f"m{m}" for m in failing}
        self.asked: Counter[str] = Counter()

    async def answer(self, candidate, item, *, system_prompt: bool = False) -> OracleResult:
        self.asked[candidate.model_id] += 1
        if candidate.model_id in self.failing:
            return OracleResult(candidate.model_id, item.id, None, FailureKind.SERVER_ERROR)
        return await super().answer(candidate, item, system_prompt=system_prompt)


@pytest.fixture(scope="module")
def pool():
    """m39: a gem (0.95, few downloads); m0: the most downloaded (0.5), below the rest, so
    that correlated search drops it after a few items."""
    items = make_items(150, tasks=("mmlu",))
    rng = np.random.default_rng(5)
    acc = rng.uniform(0.55, 0.9, N_MODELS)
    acc[POPULAR], acc[WINNER] = 0.5, 0.95
    correct = (rng.random((N_MODELS, len(items))) < acc[:, None]).astype(np.uint8)
    downloads = rng.uniform(10, 1000, N_MODELS)
    downloads[POPULAR], downloads[WINNER] = 1e6, 5.0
    candidates = [
        Candidate(f"m{k}", f"http://h{k % 4}:80", adapter_id=f"a{k}", downloads=downloads[k])
        for k in range(N_MODELS)
    ]
    matrix = CorrectnessMatrix(correct, [c.model_id for c in candidates], [it.id for it in items])
    return candidates, items, matrix


async def search(pool, share: float, failing=(), store=None):
    candidates, items, matrix = pool
    spec = SearchSpec(candidates, items, budget=10 * N_MODELS, gem_check_share=share, seed=2)
    spec.validate()
    store = store or Store()
    store.create_search("s", None, spec.to_dict())
    oracle = CountingReplay(matrix, failing)
    result = await SearchRunner("s", spec, oracle, store).run()
    return spec, store, oracle, result


async def test_the_check_gives_the_verdict_shared_items_within_the_budget(pool):
    _, _, _, off = await search(pool, 0.0)
    spec, _, oracle, on = await search(pool, 0.1)
    assert off.recommended_model_id == on.recommended_model_id == f"m{WINNER}"
    assert off.gem_check_queries == 0
    assert off.most_popular.items_seen <= 4 and off.gem_verdict == gem.UNDETERMINED
    # Without the check the popular model is known from the few items it saw before its
    # elimination; with it, from those and up to the reserve more.
    after = on.most_popular.items_seen
    assert 0 < after - on.gem_check_queries <= 4 < on.gem_check_queries
    # One estimate per model: the ranking shows the popular model as most_popular does.
    ranked = next(r for r in on.ranking if r.model_id == f"m{POPULAR}")
    assert ranked == on.most_popular
    winner = next(r for r in on.ranking if r.model_id == on.recommended_model_id)
    assert winner == on.winner and winner.rank == 1
    assert on.gem_check_queries <= spec.gem_check_reserve == 40
    assert on.queries_spent == oracle.asked.total() <= spec.budget
    assert on.gem_evidence[0].shared_items > off.gem_evidence[0].shared_items
    assert on.gem_verdict == gem.HIDDEN_GEM
    # The popular model's estimate covers every item it answered.
    assert on.most_popular.accuracy == pytest.approx(on.most_popular.successes / after)
    lo, hi = _core.wilson_interval(on.most_popular.successes, after)
    assert (on.most_popular.lower, on.most_popular.upper) == (lo, hi)


async def test_a_resumed_check_pays_nothing_twice(pool):
    spec, store, _, first = await search(pool, 0.1)
    # A restart after the check began: same plan, every answer is in the evaluation cache.
    restored = _core.Scheduler.restore(store.load_snapshot("s"))
    oracle = CountingReplay(pool[2])
    again = await SearchRunner("s", spec, oracle, store, scheduler=restored).run()
    assert oracle.asked.total() == 0
    for key in ("gem_check_queries", "gem_verdict", "most_popular", "queries_spent"):
        assert getattr(again, key) == getattr(first, key)


async def test_a_failing_popular_model_is_not_counted_as_wrong(pool):
    _, _, oracle, result = await search(pool, 0.1, failing=[POPULAR])
    assert oracle.asked[f"m{POPULAR}"] > 0
    assert result.gem_check_queries == 0
    assert result.most_popular.items_seen == 0
    assert result.gem_verdict == gem.UNDETERMINED


def test_plan_asks_the_winners_items_the_popular_model_lacks(pool):
    candidates, items, _ = pool
    spec = SearchSpec(candidates, items, budget=400, gem_check_share=0.1, seed=1)
    outcomes = {WINNER: {i: 1 for i in range(60)}, POPULAR: {i: 0 for i in range(5)}}
    wanted = gem_check.plan(spec, WINNER, outcomes)
    assert list(wanted) == [POPULAR]
    asked = wanted[POPULAR]
    assert set(asked) <= set(range(5, 60)) and 35 <= len(asked) <= 40
    assert asked == gem_check.plan(spec, WINNER, outcomes)[POPULAR]  # fixed by the seed
    # Nothing to check: the winner is popular, the share is 0, or nobody has downloads.
    assert gem_check.plan(spec, POPULAR, outcomes) == {}
    spec.gem_check_share = 0.0
    assert gem_check.plan(spec, WINNER, outcomes) == {}
    bare = [Candidate(c.model_id, c.endpoint, adapter_id=c.adapter_id) for c in candidates]
    assert SearchSpec(bare, items, budget=400).gem_check_reserve == 0


def test_spec_keeps_back_the_share_and_old_specs_keep_their_budget(pool):
    candidates, items, _ = pool
    spec = SearchSpec(candidates, items, budget=401)
    assert (spec.gem_check_reserve, spec.search_budget) == (40, 361)
    assert spec.scheduler().budget == 361
    assert SearchSpec.from_dict(spec.to_dict()).gem_check_share == spec.gem_check_share
    old = spec.to_dict()
    del old["gem_check_share"]
    assert SearchSpec.from_dict(old).search_budget == 401
    for bad in (-0.1, 0.6):
        spec.gem_check_share = bad
        with pytest.raises(UserError) as err:
            spec.validate()
        assert err.value.field == "spec.gem_check_share"


def test_the_request_field_defaults_and_overrides(pool):
    candidates, items, _ = pool
    unset = spec_from_proto(spec_to_proto(candidates, items, 10), {}, 10, _limits())
    assert unset.gem_check_share == 0.1
    off = spec_from_proto(
        spec_to_proto(candidates, items, 10, gem_check_share=0.0), {}, 10, _limits()
    )
    assert off.gem_check_share == 0.0 and off.search_budget == off.budget
    with pytest.raises(UserError) as err:
        spec_from_proto(
            spec_to_proto(candidates, items, 10, gem_check_share=0.9), {}, 10, _limits()
        )
    assert err.value.field == "spec.gem_check_share"


def _limits() -> Limits:
    return Limits()


class StallingReplay(CountingReplay):
    """Gives `answers` gem-check answers, then hangs every query: the process dies there.
    `checking()` says whether the gem check has begun (the search's scheduler is finished)."""

    def __init__(self, matrix: CorrectnessMatrix, answers: int) -> None:
        super().__init__(matrix)
        self.answers = answers
        self.checking = lambda: False
        self.stalled = asyncio.Event()

    async def answer(self, candidate, item, *, system_prompt: bool = False) -> OracleResult:
        if self.checking():
            if self.answers <= 0:
                self.stalled.set()
                await asyncio.Event().wait()  # until the "crash" cancels it
            self.answers -= 1
        return await super().answer(candidate, item, system_prompt=system_prompt)


def _search_queries_sum() -> float:
    return REGISTRY.get_sample_value("gemfinder_search_queries_sum", {"outcome": "succeeded"}) or 0


async def test_a_crash_during_the_check_leaves_spent_and_the_metric_whole(pool, tmp_path):
    """Progress.spent, queries_spent and gemfinder_search_queries agree (gem check included)
    after a restart in the middle of the gem check."""
    candidates, items, matrix = pool
    spec = SearchSpec(candidates, items, budget=10 * N_MODELS, gem_check_share=0.1, seed=2)
    spec.validate()
    _, _, _, clean = await search(pool, 0.1)
    assert clean.gem_check_queries > 10

    store = Store(tmp_path / "g.db")
    oracle = StallingReplay(matrix, answers=7)
    manager = SearchManager(store, oracle)
    sid = (await manager.start(spec)).id
    oracle.checking = lambda: manager._live[sid].runner.sched.finished
    await asyncio.wait_for(oracle.stalled.wait(), 30)
    await asyncio.sleep(0.05)  # the 7 answers are stored, the rest hang
    seen = store.outcomes(sid, [POPULAR])[POPULAR]
    assert len(seen) >= 7 and store.get_search(sid).state == "running"
    await manager.close()  # the crash: nothing more is written
    store.close()

    before = _search_queries_sum()
    store = Store(tmp_path / "g.db")
    oracle = CountingReplay(matrix)
    manager = SearchManager(store, oracle)
    assert await manager.resume_all() == [sid]
    row = await manager.wait(sid)
    await manager.close()
    assert row.state == "succeeded", row.error
    result = row.result
    assert result.gem_check_queries == clean.gem_check_queries
    assert result.queries_spent == clean.queries_spent
    assert row.progress.spent == result.queries_spent
    assert _search_queries_sum() - before == result.queries_spent
    # Only what the crash lost was asked again: the check's unanswered items.
    assert oracle.asked[f"m{POPULAR}"] <= clean.gem_check_queries - 7


async def test_a_cancel_during_the_check_ends_cancelled(pool, tmp_path):
    """CancelSearch while the popular models answer ends the search cancelled, not succeeded."""
    candidates, items, matrix = pool
    spec = SearchSpec(candidates, items, budget=10 * N_MODELS, gem_check_share=0.1, seed=2)
    spec.validate()
    store = Store(tmp_path / "c.db")
    oracle = StallingReplay(matrix, answers=3)
    manager = SearchManager(store, oracle)
    sid = (await manager.start(spec)).id
    oracle.checking = lambda: manager._live[sid].runner.sched.finished
    await asyncio.wait_for(oracle.stalled.wait(), 30)
    await manager.cancel(sid)
    row = await asyncio.wait_for(manager.wait(sid), 30)
    await manager.close()
    store.close()
    assert row.state == "cancelled", row.state
