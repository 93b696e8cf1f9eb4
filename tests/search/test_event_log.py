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

from tests.server.replica_support import (
    assert_numbered_without_gaps,
    assert_pruned_only_progress,
)
from tests.store.test_leases import SlowReplay, _pool


async def _collect(manager: SearchManager, search_id: str, after=None, limit=None) -> list:
    out = []
    async for event in manager.watch(search_id, after):
        out.append(event)
        if limit is not None and len(out) >= limit:
            break
    return out


@pytest.mark.parametrize("progress_every", [None, 0.0])
async def test_a_watch_resumed_anywhere_gets_each_event_once(new_db, monkeypatch, progress_every):
    """Also with a PROGRESS event after every batch of answers (as when rounds outlast the
    progress interval, on a loaded machine): ending the search prunes all but its last, so the
    ended log has gaps, each a PROGRESS event the live watch received; any other gap is an
    event lost (once seen as "seq 2 missing" on PostgreSQL: a pruned PROGRESS event)."""
    if progress_every is not None:
        launch = SearchManager._launch

        def often(self, *args, **kw):  # noqa: ANN001, ANN202 - SearchManager._launch's
            return launch(self, *args, progress_interval_s=progress_every, **kw)

        monkeypatch.setattr(SearchManager, "_launch", often)
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
    seqs = [seq for seq, _ in log]
    assert seqs[0] == 1 and seqs == sorted(set(seqs))
    assert [kind for _, kind in log].count(ev.FINISHED) == 1 and log[-1][1] == ev.FINISHED
    assert {kind for _, kind in log[:-1]} <= {ev.ROUND_STARTED, ev.PROGRESS, ev.ROUND_FINISHED}
    assert [kind for _, kind in log].count(ev.PROGRESS) <= 1  # pruned at the end but the last
    assert_pruned_only_progress(dict(log), ev.PROGRESS)
    # The live watch got every event as it was written, in order, with no gap while the search
    # ran; its last read, after the end, found the PROGRESS events since its previous one pruned.
    assert live[0].type == ev.SNAPSHOT
    seen = [(e.seq, e.type) for e in live[1:]]
    assert_numbered_without_gaps(live[0].seq, [seq for seq, _ in seen], set(seqs))
    assert [x for x in seen if x in log] == [x for x in log if x[0] > live[0].seq]
    assert {kind for seq, kind in seen if (seq, kind) not in log} <= {ev.PROGRESS}
    missing = set(range(1, seqs[-1] + 1)) - set(seqs)
    if progress_every == 0.0:
        assert missing, "no PROGRESS event was pruned: the case this run is for did not happen"
    joined = [(e.seq, e.type) for e in broken[1:] + resumed]
    assert [x for x in joined if x in log] == [x for x in log if x[0] > broken[0].seq]
    assert {kind for seq, kind in joined if (seq, kind) not in log} <= {ev.PROGRESS}
    assert [e.type for e in again] == [ev.SNAPSHOT, ev.FINISHED]
    assert again[0].seq == seqs[-2]  # the snapshot includes all but FINISHED
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
