"""CancelSearch on any replica, and the events log pruned when a search ends.

Two SearchManagers on one real PostgreSQL (as in tests/store/test_leases.py): a cancel through
B of a search A runs is stored (searches.cancel_requested, migration 8), A cancels at its next
lease renewal, and B answers with the cancelled search and its ranking of that moment; a
cancel through B of a search whose owner died is not left waiting for anyone: B claims it once
the lease has expired and cancels it from its last snapshot. An ended search keeps its round
events, its last PROGRESS and FINISHED (both stores), and a watch resumed after the end ends as
a live one did.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import psycopg
import pytest
from gemfinder.migrations import MIGRATIONS, PG, PG_MIGRATIONS, migrate
from gemfinder.pg_store import PgStore
from gemfinder.search import events as ev
from gemfinder.search.manager import SearchManager
from gemfinder.store import Store, open_store

from tests.store.test_leases import SlowReplay, _owner, _pool, _replica, _shut, _until


async def test_a_cancel_through_a_replica_that_does_not_own_the_search(postgres):
    spec, matrix = _pool()
    url = postgres.new_database()
    lease = 1.5  # a 0.5 s tick: the bound on the owner noticing the request
    oracle_a = SlowReplay(matrix, 0.8)  # rounds of 0.8 s: the search runs for seconds
    a, b = _replica(url, "A", oracle_a, lease), _replica(url, "B", SlowReplay(matrix), lease)
    try:
        await b.resume_all()
        sid = (await a.start(spec)).id
        await _until(lambda: a.get(sid).progress.spent > 0, 30)
        began = time.monotonic()
        row = await asyncio.wait_for(b.cancel(sid), 10)
        took = time.monotonic() - began
        print(f"cancelled through B after {took:.2f} s (A's tick {a.tick_s:.2f} s)")
        assert row.state == "cancelled"
        assert row.result is not None and row.result.ranking  # the ranking of that moment
        assert row.result.queries_spent < spec.budget
        assert took <= a.tick_s + 2.0  # one renewal of A's, and slack for a loaded machine
        assert sid not in a._live and sid not in b._live  # A stopped it; B never ran it
        assert _owner(url, sid) == "A"
        sent = oracle_a.sent
        await asyncio.sleep(0.3)
        assert oracle_a.sent == sent  # no query after the cancel
        assert (await b.cancel(sid)).state == "cancelled"  # again: a no-op
        assert a.get(sid).state == "cancelled"
    finally:
        await _shut(a, b)


async def test_a_cancel_of_a_search_whose_owner_died_is_done_by_the_cancelling_replica(postgres):
    spec, matrix = _pool()
    url = postgres.new_database()
    lease = 1.5
    a = _replica(url, "A", SlowReplay(matrix, 0.8), lease)
    # B has no free place: no takeover of its own would run the search; the cancel does.
    b = SearchManager(PgStore(url), SlowReplay(matrix), replica_id="B", lease_s=lease, max_active=0)
    try:
        await b.resume_all()
        sid = (await a.start(spec)).id
        await _until(lambda: a.get(sid).progress.spent > 0, 30)
        await a.close(release=False)  # a crash: the lease stays until it expires
        crashed = time.monotonic()
        row = await asyncio.wait_for(b.cancel(sid), lease + 5)
        took = time.monotonic() - crashed
        print(f"cancelled by B {took:.2f} s after A's crash (lease {lease} s)")
        assert row.state == "cancelled"
        assert row.result is not None and row.result.ranking
        assert took <= lease + b.tick_s + 2.0  # the lease, then B's next try
        assert _owner(url, sid) == "B"
        events = b.store.events_after([(sid, 0)], 1000)[(sid, 0)]
        assert events[-1].type == ev.FINISHED and events[-1].state == "cancelled"
    finally:
        await _shut(a, b)


async def test_a_cancel_survives_a_graceful_stop_of_the_owner(postgres):
    """The request is in the database: the replica that takes the search over cancels it."""
    spec, matrix = _pool()
    url = postgres.new_database()
    a = _replica(url, "A", SlowReplay(matrix, 0.8), 1.5)
    b = _replica(url, "B", SlowReplay(matrix, 0.8), 1.5)
    try:
        sid = (await a.start(spec)).id
        await _until(lambda: a.get(sid).progress.spent > 0, 30)
        assert b.store.request_cancel(sid)  # stored; A stops before its next renewal
        await a.close()  # graceful: released
        await b.resume_all()  # B claims it, and cancels it at once
        row = await asyncio.wait_for(b.wait(sid), 5)
        assert row.state == "cancelled" and row.result is not None
        assert _owner(url, sid) == "B"
        assert not b.store.request_cancel(sid)  # ended: nothing to record
    finally:
        await _shut(a, b)


def _log(store, sid: str) -> list[ev.Event]:
    return store.events_after([(sid, 0)], 10_000).get((sid, 0), [])


async def _watch(manager: SearchManager, sid: str, after=None) -> list[ev.Event]:
    return [event async for event in manager.watch(sid, after)]


async def test_an_ended_search_keeps_its_round_events_last_progress_and_finished(new_db):
    spec, matrix = _pool()
    # 0.3 s answers: rounds long enough for several PROGRESS events (at most every 0.2 s).
    manager = SearchManager(open_store(new_db("prune.db")), SlowReplay(matrix, 0.3), replica_id="A")
    try:
        sid = (await manager.start(spec)).id
        live = await _watch(manager, sid)  # every event, as it happened
        kept = _log(manager.store, sid)
        resumed = await _watch(manager, sid, after=live[1].seq)  # resumed after the end
        again = await _watch(manager, sid)
    finally:
        await manager.close()
        manager.store.close()
    seen = live[1:]
    progress = [e for e in seen if e.type == ev.PROGRESS]
    assert len(progress) >= 2, "the search was too quick to test pruning"
    # The log now: every event but the PROGRESS ones before the last, same numbers, same data.
    expected = [e for e in seen if e.type != ev.PROGRESS or e is progress[-1]]
    assert kept == expected
    assert [e.type for e in kept[-2:]] == [ev.ROUND_FINISHED, ev.FINISHED]
    # A watcher resuming an ended search: the kept events after its point, ending as live did.
    assert resumed == [e for e in expected if e.seq > live[1].seq]
    assert resumed[-1] == live[-1] and [e for e in resumed if e.type == ev.PROGRESS] == [
        progress[-1]
    ]
    assert [e.type for e in again] == [ev.SNAPSHOT, ev.FINISHED] and again[1] == live[-1]


def _v7_with_events(db, mark: str) -> None:
    """An ended search with three PROGRESS events and a running one with two."""
    for sid, state in (("done", "succeeded"), ("half", "running")):
        db.execute(
            "INSERT INTO searches (id, state, spec, created, updated)"
            f" VALUES ({mark}, {mark}, '{{}}', 1.0, 1.0)",
            (sid, state),
        )
    rows = [("done", n, t) for n, t in enumerate(["round_started", "progress", "progress",
            "round_finished", "progress", "finished"], 1)]  # fmt: skip
    rows += [("half", n, "progress") for n in (1, 2)]
    for sid, seq, kind in rows:
        db.execute(
            "INSERT INTO events (search_id, seq, type, state, created)"
            f" VALUES ({mark}, {mark}, {mark}, 'running', 1.0)",
            (sid, seq, kind),
        )


def test_migration_8_prunes_the_progress_of_searches_ended_before_it(tmp_path, postgres):
    path = tmp_path / "v7.db"
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, MIGRATIONS[:7])
    _v7_with_events(db, "?")
    db.close()
    url = postgres.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn, [m for m in PG_MIGRATIONS if m.version <= 7], PG)
        _v7_with_events(conn, "%s")
    for store in (Store(path), PgStore(url)):
        try:
            done = [(e.seq, e.type) for e in _log(store, "done")]
            assert done == [(1, "round_started"), (4, "round_finished"), (5, "progress"),
                            (6, "finished")]  # fmt: skip
            assert [e.seq for e in _log(store, "half")] == [1, 2]  # running: untouched
            assert store.request_cancel("half") and not store.request_cancel("done")
        finally:
            store.close()


class _Deadline:
    """The part of a grpc context CancelSearch reads: the time left before the deadline."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def time_remaining(self) -> float:
        return self.seconds


async def test_a_cancel_past_the_callers_deadline_is_still_recorded_and_done(postgres):
    """The owner stalls (no renewal): CancelSearch through B answers DEADLINE_EXCEEDED before
    the deadline, and the owner's next renewal cancels the search all the same."""
    from gemfinder.server.errors import ServiceError
    from gemfinder.server.service import ModelSearchService
    from gemfinder.v1 import gemfinder_pb2 as pb

    spec, matrix = _pool()
    url = postgres.new_database()
    # Answers in 6 s: the search outlasts the deadline below; a lease that does not expire here.
    a = _replica(url, "A", SlowReplay(matrix, 6.0), 30.0)
    b = _replica(url, "B", SlowReplay(matrix), 30.0)
    try:
        sid = (await a.start(spec)).id
        a._leases.cancel()  # A stalls: it renews nothing until told below
        service = ModelSearchService(b, {}, 10, None)
        began = time.monotonic()
        with pytest.raises(ServiceError, match="is recorded") as late:
            await service.CancelSearch(pb.CancelSearchRequest(search_id=sid), _Deadline(5.0))
        assert late.value.kind == "deadline_exceeded"
        # Answered with 10% of the deadline kept (0.5 s): a 1 s deadline kept 0.1 s, which a
        # timer firing late on a loaded 2-core machine can overrun.
        assert 4.4 <= time.monotonic() - began < 5.0
        assert b.get(sid).state == "running"
        a.renew()  # the owner's next renewal reads the request
        row = await asyncio.wait_for(a.wait(sid), 10)
        assert row.state == "cancelled" and row.result is not None
    finally:
        await _shut(a, b)
