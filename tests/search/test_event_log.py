"""The events log behind WatchSearch (search.events) on both stores, in one process: numbered
from 1 without gaps, FINISHED last and once, a resumed watch gets exactly the events after its
resume point, a bad resume point is refused naming after_sequence, a stopping replica ends its
watches with UNAVAILABLE, and only the owner may append."""

from __future__ import annotations

import asyncio

import pytest
from gemfinder.errors import UserError
from gemfinder.search import events as ev
from gemfinder.search.manager import ReplicaStopping, SearchManager
from gemfinder.store import LeaseLost, open_store

from tests.store.test_leases import SlowReplay, _pool


async def _collect(manager: SearchManager, search_id: str, after=None, limit=None) -> list:
    out = []
    async for event in manager.watch(search_id, after):
        out.append(event)
        if limit is not None and len(out) >= limit:
            break
    return out


async def test_a_watch_resumed_anywhere_gets_each_event_once(new_db):
    spec, matrix = _pool()
    manager = SearchManager(open_store(new_db("events.db")), SlowReplay(matrix), replica_id="A")
    try:
        sid = (await manager.start(spec, "log-1")).id
        live, broken = await asyncio.gather(_collect(manager, sid), _collect(manager, sid, limit=3))
        resumed = await _collect(manager, sid, after=broken[-1].seq)
        replay = await _collect(manager, sid, after=0)
        again = await _collect(manager, sid)  # a new watch of an ended search
        with pytest.raises(UserError) as past:
            await _collect(manager, sid, after=replay[-1].seq + 1)
        with pytest.raises(UserError):
            await _collect(manager, sid, after=-1)
    finally:
        await manager.close()
        manager.store.close()
    log = [(e.seq, e.type) for e in replay]
    assert [seq for seq, _ in log] == list(range(1, len(log) + 1))
    assert [kind for _, kind in log].count(ev.FINISHED) == 1 and log[-1][1] == ev.FINISHED
    assert {kind for _, kind in log[:-1]} <= {ev.ROUND_STARTED, ev.PROGRESS, ev.ROUND_FINISHED}
    assert live[0].type == ev.SNAPSHOT and [(e.seq, e.type) for e in live[1:]] == log[live[0].seq :]
    joined = [(e.seq, e.type) for e in broken[1:] + resumed]
    assert joined == log[broken[0].seq :]
    assert [e.type for e in again] == [ev.SNAPSHOT, ev.FINISHED]
    assert again[0].seq == len(log) - 1  # the snapshot includes all but FINISHED
    assert past.value.field == "after_sequence"


async def test_a_stopping_replica_ends_its_watches_and_waits_at_once(new_db):
    spec, matrix = _pool()
    manager = SearchManager(
        open_store(new_db("stop.db")), SlowReplay(matrix, latency_s=0.5), replica_id="A"
    )
    try:
        sid = (await manager.start(spec)).id
        watching = asyncio.create_task(_collect(manager, sid))
        waiting = asyncio.create_task(manager.wait(sid))
        await asyncio.sleep(0.3)
        manager.stop_serving()
        for task in (watching, waiting):
            with pytest.raises(ReplicaStopping):
                await asyncio.wait_for(task, 2)
    finally:
        await manager.close()
        manager.store.close()


async def test_only_the_owner_appends_events(new_db):
    store = open_store(new_db("fence.db"))
    try:
        store.create_search("s", None, {}, owner="A", lease_s=30)
        store.put_event("s", ev.PROGRESS, None, "running", owner="A")
        with pytest.raises(LeaseLost):  # fenced out
            store.put_event("s", ev.PROGRESS, None, "running", owner="B")
            # PostgreSQL: the queued write fails on the writer thread; the next write hears.
            store._writes.flush()
            store.put_answers("s", [("k", 0, 0, 1)])
        store.update_search("s", state="failed", error="x", owner="A")
        store.update_search("s", state="failed", error="x", owner="A")  # retried: one FINISHED
        found = store.events_after([("s", 0)], 10)[("s", 0)]
    finally:
        store.close()
    assert [(e.seq, e.type) for e in found] == [(1, ev.PROGRESS), (2, ev.FINISHED)]
    assert found[-1].state == "failed"
