"""The runner reads the evaluation cache once per batch the scheduler hands out (and once for
the gem check's plan), not once per pull: on PostgreSQL each read is a round trip on the event
loop. A search whose every pull is cached is decided by the cache alone, as the first run was."""

from __future__ import annotations

import pytest
from gemfinder.candidates import Candidate
from gemfinder.oracles import OracleResult
from gemfinder.search.runner import SearchRunner
from gemfinder.search.spec import SearchSpec
from gemfinder.store import open_store

from tests.fleet_support import make_items


class TableOracle:
    """Right or wrong by a fixed table (m0 the most often right); counts the queries sent."""

    def __init__(self) -> None:
        self.sent = 0

    async def prepare(self, candidates) -> None:
        pass

    async def release(self, candidates) -> None:
        pass

    async def answer(self, candidate, item, *, system_prompt: bool = False) -> OracleResult:
        self.sent += 1
        k = int(candidate.model_id[1:])
        reward = int((k * 31 + sum(map(ord, item.id))) % 10 < 9 - k)
        return OracleResult(candidate.model_id, item.id, reward)

    async def aclose(self) -> None:
        pass


class CountingStore:
    """A store that records the size of each cache read; everything else passes through."""

    def __init__(self, store) -> None:
        self.store = store
        self.lookups: list[int] = []

    def cached_many(self, keys: list[str]) -> dict[str, int]:
        self.lookups.append(len(keys))
        return self.store.cached_many(keys)

    def __getattr__(self, name: str):
        return getattr(self.store, name)


class CountingRunner(SearchRunner):
    """Counts the scheduler's ask() calls (each hands out one batch)."""

    asks = 0

    async def _core(self, call, *args):
        self.asks += getattr(call, "__name__", "") == "ask"
        return await super()._core(call, *args)


async def _run(store: CountingStore, search_id: str, spec: SearchSpec, oracle: TableOracle):
    store.lookups.clear()
    store.create_search(search_id, None, spec.to_dict())
    runner = CountingRunner(search_id, spec, oracle, store)
    return runner, await runner.run()


@pytest.mark.parametrize("algorithm", ["sh", "ttts"])  # round-based; sequential
async def test_one_read_per_batch_and_a_cached_search_sends_nothing(new_db, algorithm):
    candidates = [
        Candidate(f"m{k}", f"http://h{k % 2}:80", adapter_id=f"m{k}", downloads=10.0 * k + 1)
        for k in range(6)
    ]
    spec = SearchSpec(candidates, make_items(40, tasks=("mmlu",)), 90, algorithm=algorithm)
    store = CountingStore(open_store(new_db("c.db")))
    first, paid = TableOracle(), TableOracle()
    runner, result = await _run(store, "s1", spec, first)
    assert runner.asks > 1 and first.sent == result.queries_spent
    assert len(store.lookups) == runner.asks + 1  # one per batch, one for the gem check's plan
    assert sum(store.lookups) == first.sent  # every pull looked up once, and nothing was cached
    assert store.count_evals() == first.sent  # (on PostgreSQL: after the queued writes)

    runner, again = await _run(store, "s2", spec, paid)
    assert paid.sent == 0 and runner.cached == first.sent
    assert len(store.lookups) == runner.asks + 1
    assert again.recommended_model_id == result.recommended_model_id
    assert again.ranking == result.ranking and again.gem_verdict == result.gem_verdict
    store.close()
