"""CancelSearch on a replica that does not own the search: two `gemfinder serve` processes on
one real PostgreSQL. A search started through A is cancelled through B: B records the request,
A cancels at its next lease renewal, and B's answer is the cancelled search with the ranking of
that moment, as A's own would be; a watch on A ends with it."""

from __future__ import annotations

import asyncio
import time

import grpc
from gemfinder.v1 import gemfinder_pb2 as pb

from tests.pool_support import clear_best_pool, spec_proto, start_fleet, write_endpoints
from tests.server.replica_support import Replica, get, stub, watch


async def test_cancel_through_a_replica_that_does_not_own_the_search(postgres, tmp_path):
    matrix, items = clear_best_pool(n_models=16, per_task=12)
    fleet, candidates, configs = await start_fleet(matrix, items, latency_s=0.3)
    endpoints = write_endpoints(configs, tmp_path / "endpoints.json")
    spec = spec_proto(candidates, items, per_model=40, seed=3)
    db = postgres.new_database()
    a, b = (Replica(name, db, endpoints, tmp_path) for name in ("A", "B"))  # 3 s lease, 1 s tick
    try:
        await asyncio.gather(a.start(), b.start())
        async with grpc.aio.insecure_channel(a.address) as channel:
            started = await stub(channel).StartSearch(pb.StartSearchRequest(spec=spec))
        sid = started.search.search_id
        on_a = asyncio.create_task(watch(a.address, sid))
        while (await get(b.address, sid)).progress.spent == 0:
            await asyncio.sleep(0.05)
        began = time.monotonic()
        async with grpc.aio.insecure_channel(b.address) as channel:
            cancelled = await stub(channel).CancelSearch(
                pb.CancelSearchRequest(search_id=sid), timeout=10
            )
        took = time.monotonic() - began
        events = await asyncio.wait_for(on_a, 30)
        final = await get(a.address, sid)
    finally:
        for replica in (a, b):
            replica.stop()
        await fleet.stop()
    print(f"CancelSearch through B answered after {took:.2f} s (A renews every 1 s)")
    assert cancelled.search.state == pb.SEARCH_STATE_CANCELLED
    assert cancelled.search.result.ranking  # the ranking at the time of cancellation
    assert cancelled.search.result.queries_spent < cancelled.search.progress.budget
    assert took < 1.0 + 3.0  # A's next renewal, and slack for a loaded machine
    assert final.state == pb.SEARCH_STATE_CANCELLED
    assert final.result.queries_spent == cancelled.search.result.queries_spent
    assert events[-1].type == pb.EVENT_TYPE_FINISHED
    assert events[-1].state == pb.SEARCH_STATE_CANCELLED
