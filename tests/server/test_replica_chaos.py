"""Chaos: three `gemfinder serve` processes on one real PostgreSQL, searches started through
one, the owner of a search killed with SIGKILL early, midway and (when the search gets there
between two polls) during its gem check. Every search finishes on another replica with the
same winner and ranking as an uninterrupted run, only queries in flight at a kill are paid
twice, and Watch streams on the replicas left alive never break, while a client watching
through all of them (gemfinder.client.watch_search) gets every event once.
"""

from __future__ import annotations

import asyncio
import json

import grpc
import psycopg
from gemfinder import client
from gemfinder.v1 import gemfinder_pb2 as pb

from tests.pool_support import (
    clear_best_pool,
    generate_requests,
    spec_proto,
    start_fleet,
    write_endpoints,
)
from tests.server.replica_support import Replica, assert_follows_log, stub, watch

LEASE_S = 1.5  # a 0.5 s tick: takeovers within about 2 s
SEARCHES = 3
IN_FLIGHT = 2 * 16  # the fleet's two endpoints x the replica's 16 slots each


def _ranking(search: pb.Search) -> list[tuple]:
    return [(e.model_id, e.items_seen, e.successes) for e in search.result.ranking]


def _row(url: str, search_id: str) -> tuple[str | None, str, dict]:
    with psycopg.connect(url, autocommit=True) as conn:
        owner, state, progress = conn.execute(
            "SELECT owner, state, progress FROM searches WHERE id = %s", (search_id,)
        ).fetchone()
    return owner, state, json.loads(progress) if progress else {}


async def _clean_results(db, endpoints, tmp_path, specs) -> dict[str, pb.Search]:
    solo = Replica("solo", db, endpoints, tmp_path, lease_s=LEASE_S)
    try:
        await solo.start()
        async with grpc.aio.insecure_channel(solo.address) as channel:
            calls = [
                stub(channel).SelectBestModel(pb.SelectBestModelRequest(spec=s, request_id=rid))
                for rid, s in specs.items()
            ]
            done = await asyncio.gather(*calls)
        return {rid: d.search for rid, d in zip(specs, done, strict=True)}
    finally:
        solo.stop()


async def _segments(replica: Replica, search_id: str) -> list[tuple[int, list]]:
    """A raw watch on one replica: (pid it ran on, events) per stream, resumed on the same
    address (after a restart) only when the stream broke."""
    out: list[tuple[int, list]] = []
    after = None
    while True:
        pid = replica.proc.pid
        events: list = []
        out.append((pid, events))
        try:
            async with grpc.aio.insecure_channel(replica.address) as channel:
                request = pb.WatchSearchRequest(search_id=search_id)
                if after is not None:
                    request.after_sequence = after
                async for event in stub(channel).WatchSearch(request, wait_for_ready=True):
                    events.append(event)
                    after = event.sequence
                    if event.type == pb.EVENT_TYPE_FINISHED:
                        return out
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.2)


async def _through_all(target: str, search_id: str) -> list:
    async with client.channel(target) as channel:
        return [e async for e in client.watch_search(stub(channel), search_id)]


async def test_kill_9_of_the_owner_at_several_points(postgres, tmp_path):
    matrix, items = clear_best_pool(n_models=16, per_task=12)
    fleet, candidates, configs = await start_fleet(matrix, items, latency_s=0.05)
    endpoints = write_endpoints(configs, tmp_path / "endpoints.json")
    specs = {
        f"chaos-{n}": spec_proto(candidates, items, per_model=30, seed=n) for n in range(SEARCHES)
    }
    replicas: list[Replica] = []
    try:
        before = generate_requests(fleet)
        clean = await _clean_results(postgres.new_database(), endpoints, tmp_path, specs)
        clean_queries = generate_requests(fleet) - before

        url = postgres.new_database()
        replicas = [Replica(n, url, endpoints, tmp_path, lease_s=LEASE_S) for n in "ABC"]
        await asyncio.gather(*(r.start() for r in replicas))
        a = replicas[0]
        before = generate_requests(fleet)
        async with grpc.aio.insecure_channel(a.address) as channel:
            ids = {
                rid: (
                    await stub(channel).StartSearch(pb.StartSearchRequest(spec=s, request_id=rid))
                ).search.search_id
                for rid, s in specs.items()
            }
        target = "ipv4:" + ",".join(r.address for r in replicas)
        raw = {
            (rid, r.name): asyncio.create_task(_segments(r, sid))
            for rid, sid in ids.items()
            for r in replicas
        }
        resumed = {rid: asyncio.create_task(_through_all(target, sid)) for rid, sid in ids.items()}

        # Kill the owner of the first search at each point, once the previous kill's search
        # has been taken over; restart it (a new replica id, the same address).
        first = ids["chaos-0"]
        killed: list[tuple[str, str]] = []  # (point, replica)
        generation = 0
        points = [
            ("early", lambda p: p.get("spent", 0) >= 0.1 * p["budget"]),
            ("midway", lambda p: p.get("spent", 0) >= 0.5 * p["budget"]),
            ("gem check", lambda p: p.get("round") == 0 and p.get("spent", 0) > 0),
        ]
        killed_pids: set[int] = set()
        for point, reached in points:
            while True:
                owner, state, progress = _row(url, first)
                alive = {r.proc.args[r.proc.args.index("--replica-id") + 1]: r for r in replicas}
                if state != "running" or (
                    owner in alive and progress.get("budget") and reached(progress)
                ):
                    break
                await asyncio.sleep(0.01)
            if state != "running":
                break  # finished before this point
            victim = alive[owner]
            killed_pids.add(victim.proc.pid)
            victim.kill()
            killed.append((point, owner))
            generation += 1
            victim.name = f"{victim.name[0]}{generation}"
            await victim.start()

        finals = {}
        async with client.channel(target) as channel:
            for rid, sid in ids.items():
                finals[rid] = await _wait_end(channel, sid)
        for replica in replicas:  # none died but those killed
            assert replica.proc.poll() is None, (replica.name, replica.tail())
        chaos_queries = generate_requests(fleet) - before
        raws = {k: await asyncio.wait_for(t, 30) for k, t in raw.items()}
        throughs = {rid: await asyncio.wait_for(t, 30) for rid, t in resumed.items()}
        log = {rid: await watch(replicas[2].address, sid, after=0) for rid, sid in ids.items()}
    finally:
        for replica in replicas:
            replica.stop()
        await fleet.stop()

    print(f"kills: {killed}; queries {chaos_queries} against {clean_queries} uninterrupted")
    assert [point for point, _ in killed][:2] == ["early", "midway"]
    for rid in ids:
        assert finals[rid].state == pb.SEARCH_STATE_SUCCEEDED, finals[rid].error
        assert finals[rid].result.recommended_model_id == clean[rid].result.recommended_model_id
        assert _ranking(finals[rid]) == _ranking(clean[rid])
        assert finals[rid].result.gem_verdict == clean[rid].result.gem_verdict
        # The stored log (its PROGRESS events but the last pruned at the end) through every
        # replica, resumed after each break: every kept event once, in order.
        assert_follows_log(throughs[rid], log[rid])
        for segments in (v for k, v in raws.items() if k[0] == rid):
            # A stream broke only where its replica was killed; joined, the log once.
            assert {pid for pid, _ in segments[:-1]} <= killed_pids
            assert_follows_log([e for _, seg in segments for e in seg], log[rid])
    # Answers are stored before they are told: a kill makes the new owner ask again only what
    # the killed replica had in flight (its endpoints' slots), for all its searches at once.
    assert chaos_queries <= clean_queries + len(killed) * 2 * IN_FLIGHT


async def _wait_end(channel, search_id: str) -> pb.Search:
    while True:
        search = (await stub(channel).GetSearch(pb.GetSearchRequest(search_id=search_id))).search
        if search.state not in (pb.SEARCH_STATE_RUNNING, pb.SEARCH_STATE_PENDING):
            return search
        await asyncio.sleep(0.1)
