"""Watch and Get on any replica: two `gemfinder serve` processes on one real PostgreSQL.

A search started through A runs on A; a WatchSearch on B follows the events A stores (the same
events, the same numbers, nothing lost or repeated), GetSearch on B follows its progress, and a
stream broken on B is resumed on A from its last event (WatchSearchRequest.after_sequence), after
the end: the log kept its round events, its last PROGRESS and FINISHED.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from gemfinder.v1 import gemfinder_pb2 as pb

from tests.pool_support import clear_best_pool, spec_proto, start_fleet, write_endpoints
from tests.server.replica_support import (
    Replica,
    assert_follows_log,
    assert_numbered_without_gaps,
    assert_pruned_only_progress,
    get,
    key,
    stub,
    watch,
)

LIVE = (pb.EVENT_TYPE_ROUND_STARTED, pb.EVENT_TYPE_PROGRESS, pb.EVENT_TYPE_ROUND_FINISHED)


def _numbers(events) -> list[int]:
    return [e.sequence for e in events]


async def _progress_seen(address: str, search_id: str) -> list[int]:
    """`spent` as GetSearch on `address` reports it while the search runs (until it ends)."""
    seen = []
    while True:
        search = await get(address, search_id)
        if search.state != pb.SEARCH_STATE_RUNNING:
            return seen
        seen.append(search.progress.spent)
        await asyncio.sleep(0.05)


async def test_watch_and_get_on_a_replica_that_does_not_own_the_search(postgres, tmp_path):
    matrix, items = clear_best_pool(n_models=16, per_task=12)
    fleet, candidates, configs = await start_fleet(matrix, items, latency_s=0.1)
    endpoints = write_endpoints(configs, tmp_path / "endpoints.json")
    spec = spec_proto(candidates, items, per_model=30, seed=3)
    db = postgres.new_database()
    a, b = (Replica(name, db, endpoints, tmp_path) for name in ("A", "B"))
    try:
        await asyncio.gather(a.start(), b.start())
        async with grpc.aio.insecure_channel(a.address) as channel:
            started = await stub(channel).StartSearch(
                pb.StartSearchRequest(spec=spec, request_id="watch-1")
            )
        sid = started.search.search_id
        on_a, on_b, broken, progress_b = await asyncio.gather(
            watch(a.address, sid),
            watch(b.address, sid),
            watch(b.address, sid, limit=4),  # a stream that breaks after 4 events
            _progress_seen(b.address, sid),
        )
        resumed = await watch(a.address, sid, after=broken[-1].sequence)
        replay = await watch(b.address, sid, after=0)  # the whole log, on B, after the end
        final = await get(b.address, sid)
        with pytest.raises(grpc.aio.AioRpcError) as past_the_end:
            await watch(b.address, sid, after=replay[-1].sequence + 1)
    finally:
        for replica in (a, b):
            replica.stop()
        await fleet.stop()
    assert final.state == pb.SEARCH_STATE_SUCCEEDED
    for stream in (on_a, on_b):
        assert stream[0].type == pb.EVENT_TYPE_SNAPSHOT
        assert stream[-1].type == pb.EVENT_TYPE_FINISHED
        assert stream[-1].search.result.recommended_model_id == final.result.recommended_model_id
        # Every event after the snapshot, once, in order (but PROGRESS events pruned with the
        # end before the stream's last read).
        assert_numbered_without_gaps(
            stream[0].sequence, _numbers(stream[1:]), set(_numbers(replay))
        )
    # B followed the search live, with the events A wrote: the same numbers and contents.
    assert any(e.type in LIVE for e in on_b)
    # The log once the search ended: its PROGRESS events but the last were pruned.
    assert_pruned_only_progress({e.sequence: e.type for e in replay}, pb.EVENT_TYPE_PROGRESS)
    assert replay[-1].sequence == on_a[-1].sequence
    assert [e for e in replay if e.type == pb.EVENT_TYPE_PROGRESS][-1:] == [
        e for e in on_a if e.type == pb.EVENT_TYPE_PROGRESS
    ][-1:]
    assert [key(e) for e in on_a[1:]] == [key(e) for e in on_b[1:]]  # the same events
    assert_follows_log(on_a, replay)
    assert_follows_log(on_b, replay)
    # Broken on B, resumed on A after the end: every kept event after the snapshot once, and
    # of the PROGRESS events after the break only the last.
    assert_follows_log(broken + resumed, replay)
    # GetSearch on B saw the progress A made, rising while it ran.
    assert len(set(progress_b)) >= 2 and progress_b == sorted(progress_b)
    assert past_the_end.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "after_sequence" in past_the_end.value.details()
