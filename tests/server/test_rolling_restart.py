"""Rolling restart under load: three `gemfinder serve` processes on one real PostgreSQL, 50
searches running, each replica stopped with SIGTERM (its leases handed over) and started again
in turn. Every unary call carries a request_id or is read-only and succeeds through the
client's standard retry policy (gemfinder.client.SERVICE_CONFIG, documented in
docs/service.md); every WatchSearch stream that breaks is resumed from its last event by
gemfinder.client.watch_search, losing and repeating none.
"""

from __future__ import annotations

import asyncio

from gemfinder import client
from gemfinder.v1 import gemfinder_pb2 as pb

from tests.pool_support import clear_best_pool, spec_proto, start_fleet, write_endpoints
from tests.server.replica_support import Replica, assert_follows_log, stub, watch

SEARCHES = 50
MODELS_EACH = 4  # each search its own models: no search is answered from another's cache


async def _search(channel, request_id: str, spec, breaks: list) -> tuple[pb.Search, list]:
    """StartSearch, then WatchSearch (resumed) and SelectBestModel (retried) side by side."""
    api = stub(channel)
    started = await api.StartSearch(pb.StartSearchRequest(spec=spec, request_id=request_id))
    sid = started.search.search_id

    async def events() -> list:
        return [e async for e in client.watch_search(api, sid, on_break=breaks.append)]

    seen, done = await asyncio.gather(
        events(),
        api.SelectBestModel(pb.SelectBestModelRequest(spec=spec, request_id=request_id)),
    )
    return done.search, seen


async def _poll(channel, stop: asyncio.Event) -> int:
    """GetSearch / ListSearches the whole time: read-only calls, retried like the others."""
    calls = 0
    api = stub(channel)
    while not stop.is_set():
        page = await api.ListSearches(pb.ListSearchesRequest(page_size=5))
        for search in page.searches:
            await api.GetSearch(pb.GetSearchRequest(search_id=search.search_id))
            calls += 1
        await asyncio.sleep(0.1)
    return calls


async def test_rolling_restart_of_every_replica_under_50_searches(postgres, tmp_path):
    matrix, items = clear_best_pool(n_models=SEARCHES * MODELS_EACH, per_task=6)
    fleet, candidates, configs = await start_fleet(matrix, items, latency_s=0.1)
    endpoints = write_endpoints(configs, tmp_path / "endpoints.json")
    specs = {
        f"roll-{n}": spec_proto(
            candidates[n * MODELS_EACH : (n + 1) * MODELS_EACH], items, per_model=20, seed=n
        )
        for n in range(SEARCHES)
    }
    url = postgres.new_database()
    replicas = [
        Replica(name, url, endpoints, tmp_path, lease_s=6.0, max_active=2 * SEARCHES)
        for name in "ABC"
    ]
    breaks: list = []
    restarted = []
    try:
        await asyncio.gather(*(r.start() for r in replicas))
        target = "ipv4:" + ",".join(r.address for r in replicas)
        async with client.channel(target) as channel:
            stop = asyncio.Event()
            poller = asyncio.create_task(_poll(channel, stop))
            searches = [
                asyncio.create_task(_search(channel, rid, spec, breaks))
                for rid, spec in specs.items()
            ]
            await asyncio.sleep(1.0)  # the searches are under way
            for replica in replicas:
                running = sum(not task.done() for task in searches)
                assert await replica.terminate() == 0, replica.tail()
                await replica.start()
                restarted.append((replica.name, running))
                await asyncio.sleep(1.0)
            outcomes = await asyncio.gather(*searches)  # any failed call raises here
            stop.set()
            polls = await poller
        logs = [await watch(replicas[0].address, s.search_id, after=0) for s, _ in outcomes]
    finally:
        for replica in replicas:
            replica.stop()
        await fleet.stop()

    print(f"restarts (replica, searches running): {restarted}; streams resumed {len(breaks)}")
    assert [running for _, running in restarted][0] > 0  # the first stop hit running searches
    assert polls > 0
    assert breaks  # some streams did break, and were resumed
    for (search, seen), log in zip(outcomes, logs, strict=True):
        assert search.state == pb.SEARCH_STATE_SUCCEEDED, search.error
        assert_follows_log(seen, log)  # the stored log, PROGRESS pruned at the end
