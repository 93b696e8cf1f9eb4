"""The store's heavy reads run on worker threads, on both stores: the per-task count at a
search's end (task_counts: 0.4 s at 5,000 models x 20 answers on SQLite) and reading a finished
search back (get_search parses its stored result: 20-40 ms at 1,000 models) held the event loop
for every RPC of the server (docs/service.md, "Health under load"). Store.off_loop reads what
the loop would: a read after a search's own writes sees them."""

from __future__ import annotations

import threading

from gemfinder import store as store_module
from gemfinder.candidates import Candidate
from gemfinder.search import events as ev
from gemfinder.search.manager import SearchManager
from gemfinder.search.spec import IncrementalAsk, SearchSpec
from gemfinder.store import open_store

from tests.fleet_support import make_items
from tests.pool_support import InstantOracle

COUNT_SQL = "GROUP BY p.model, t.task"  # task_counts' query
SEARCH_SQL = "FROM searches WHERE id = ?"  # get_search's query


def _on_loop() -> bool:
    return threading.current_thread() is threading.main_thread()


async def test_task_counts_and_a_finished_search_are_read_off_the_loop(new_db, monkeypatch):
    store = open_store(new_db("r.db"))
    calls: list[tuple[str, bool]] = []
    read = store._read

    def recording_read(template, *args, **kw):
        for name, sql in (("count", COUNT_SQL), ("search", SEARCH_SQL)):
            if sql in template:
                calls.append((name, _on_loop()))
        return read(template, *args, **kw)

    store._read = recording_read
    plain_row = store_module._row

    def recording_row(row):
        parsed = plain_row(row)
        if parsed.result is not None:  # the heavy parse: a stored result
            calls.append(("parse", _on_loop()))
        return parsed

    monkeypatch.setattr(store_module, "_row", recording_row)
    items = make_items(4, tasks=("mmlu", "gsm8k"))  # two tasks: the result counts per task
    candidates = [Candidate(f"m{k}", "http://h:80", adapter_id=f"a{k}") for k in range(3)]
    manager = SearchManager(store, InstantOracle(), max_active=2)
    try:
        row = await manager.start(SearchSpec(candidates, items, budget=12, seed=1))
        done = await manager.wait(row.id)
        assert done.state == "succeeded" and done.result is not None
        assert [t.task for t in done.result.per_task] == ["gsm8k", "mmlu"]
        # every graded answer counted once, in its own task (the store's count)
        per_task = [e.items_seen for t in done.result.per_task for e in t.estimates]
        assert sum(per_task) == 12, done.result.per_task
        assert (await manager.fetch(row.id)).result == done.result
        assert (await manager.cancel(row.id)).state == "succeeded"  # ended: answered as is
        events = [e async for e in manager.watch(row.id)]
        assert events[-1].type == ev.FINISHED
        # an incremental search reads its parent back as it starts
        newcomer = Candidate("m9", "http://h:80", adapter_id="a9")
        ask = IncrementalAsk(row.id, 2)
        child = await manager.start(
            SearchSpec([*candidates, newcomer], items, budget=12, seed=1, ask=ask)
        )
        assert child.spec["incremental"]["parent_search_id"] == row.id
        assert (await manager.wait(child.id)).state == "succeeded"
    finally:
        await manager.close()
        store.close()
    # start's own read of each new search (no result yet) stays on the loop (SearchManager.start)
    # and nothing else is read on the loop
    assert [c for c in calls if c[1]] == [("search", True)] * 2, calls
    off = [name for name, on_loop in calls if not on_loop]
    assert off.count("count") == 2, off  # each search's end
    # wait, fetch, cancel, watch and the child's start read the finished parent back, and the
    # child's wait reads it
    assert off.count("parse") >= 6 and off.count("search") >= 6, off


async def test_a_read_off_the_loop_sees_the_writes_given_before_it(new_db):
    """SQLite commits each write before its call returns; PostgreSQL queues them and a read
    with `after=` waits for the queue: either way the thread's read finds them."""
    store = open_store(new_db("w.db"))
    try:
        store.create_search("s", None, {"t": 1})
        assert (await store.off_loop(store.get_search, "s")).state == "pending"
        store.update_search("s", state="running")
        store.put_answers("s", [(f"k{m}", m, m % 3, m % 2) for m in range(30)])
        counts = await store.off_loop(store.task_counts, "s", [0, 1, 1])
        assert counts == store.task_counts("s", [0, 1, 1])  # as the loop reads it
        # model m answered item m % 3 (task 0 for item 0, else 1), right when m is odd
        assert counts == {m: {min(m % 3, 1): (1, m % 2)} for m in range(30)}
        store.put_answers("s", [("late", 0, 1, 1)])
        assert (await store.off_loop(store.task_counts, "s", [0, 1, 1]))[0] == {
            0: (1, 0),
            1: (1, 1),
        }
        assert (await store.off_loop(store.get_search, "s")).state == "running"
    finally:
        store.close()


async def test_a_memory_store_reads_on_the_loop(monkeypatch):
    """A second connection cannot see a memory database: it is read where it always was."""
    store = open_store(":memory:")
    try:
        store.create_search("s", None, {"t": 1})
        seen: list[bool] = []
        read = store.get_search

        def recording(search_id):
            seen.append(_on_loop())
            return read(search_id)

        assert (await store.off_loop(recording, "s")).id == "s"
        assert seen == [True]
    finally:
        store.close()
