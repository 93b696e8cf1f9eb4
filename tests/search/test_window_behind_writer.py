"""On a store that writes behind (PostgreSQL), a search hands the oracle no more queries than
its endpoints run at once: the endpoints would otherwise go on answering a whole round while
the search waits for the writer, and a kill -9 would lose all those answers unstored (once
123 past the bound of tests/server/test_crash_resume.py on a loaded machine). SQLite, which
stores each batch before the search goes on, keeps the wide window that keeps endpoints busy.
"""

from __future__ import annotations

import asyncio

import pytest
from gemfinder.oracles import OracleResult
from gemfinder.search.manager import SearchManager
from gemfinder.store import Store

from tests.store.test_leases import _pool

SLOTS = 4  # the endpoint's concurrency, as the oracle reports it


class CountingOracle:
    """Answers from a table after a short sleep; records the most queries handed at once."""

    def __init__(self, correct: dict[tuple[str, str], int]) -> None:
        self.correct = correct
        self.active = self.most = 0

    def concurrency(self, url: str) -> int:
        return SLOTS

    async def prepare(self, candidates) -> None:
        pass

    async def release(self, candidates) -> None:
        pass

    async def answer(self, candidate, item, *, system_prompt: bool = False) -> OracleResult:
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            await asyncio.sleep(0.002)
            reward = self.correct[candidate.model_id, item.id]
            return OracleResult(model_id=candidate.model_id, item_id=item.id, reward=reward)
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        pass


class BehindStore(Store):
    """SQLite, flagged as a store whose writes are queued behind the caller."""

    writes_behind = True


@pytest.mark.parametrize("store_class", [Store, BehindStore], ids=["sqlite", "writes-behind"])
async def test_a_search_on_a_store_that_writes_behind_hands_out_no_more_than_the_slots(
    store_class,
):
    spec, correct = _pool()
    oracle = CountingOracle(correct)
    manager = SearchManager(store_class(), oracle)
    try:
        row = await manager.wait((await manager.start(spec)).id)
    finally:
        await manager.close()
    assert row.state == "succeeded" and row.progress.spent > 0
    if store_class.writes_behind:
        assert oracle.most == SLOTS  # the slots kept busy, never more handed out
    else:
        assert oracle.most > SLOTS  # a round at once: what the cap is for elsewhere
