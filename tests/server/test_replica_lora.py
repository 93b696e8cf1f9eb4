"""Adapters on demand with two `gemfinder serve` processes on one real PostgreSQL and the
simulated vLLM (15 adapters, max_cpu_loras 3): a search on each, overlapping adapters, and the
first replica killed with SIGKILL midway. The fleet never holds more than the cap, no query
finds its adapter unregistered by the other replica, the survivor finishes both searches and,
once the dead replica's leases expire, unregisters what it left behind."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import psycopg
from gemfinder.v1 import gemfinder_pb2 as pb

from tests.oracles.lora_support import CAP, Setup
from tests.pool_support import BEST, spec_proto
from tests.server.replica_support import Replica, stub

LEASE_S = 1.5


def _held(db: str) -> dict[str, int]:
    """Lease rows per replica."""
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute("SELECT replica, COUNT(*) FROM lora_leases GROUP BY replica")
        return dict(rows.fetchall())


def _progress(db: str, search_id: str) -> dict:
    with psycopg.connect(db, autocommit=True) as conn:
        (progress,) = conn.execute(
            "SELECT progress FROM searches WHERE id = %s", (search_id,)
        ).fetchone()
    return json.loads(progress) if progress else {}


async def _wait_end(address: str, search_id: str) -> pb.Search:
    async with grpc.aio.insecure_channel(address) as channel:
        while True:
            request = pb.GetSearchRequest(search_id=search_id)
            search = (await stub(channel).GetSearch(request)).search
            if search.state not in (pb.SEARCH_STATE_RUNNING, pb.SEARCH_STATE_PENDING):
                return search
            await asyncio.sleep(0.1)


async def test_a_killed_replicas_adapters_are_reused_and_never_overrun_the_cap(postgres, tmp_path):
    setup = Setup(latency_s=0.02)
    db = postgres.new_database()
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        endpoints = tmp_path / "endpoints.json"
        endpoints.write_text(json.dumps([setup.endpoint_dict(url)]), encoding="utf-8")
        a = Replica("A", db, endpoints, tmp_path, lease_s=LEASE_S)
        b = Replica("B", db, endpoints, tmp_path, lease_s=LEASE_S)
        try:
            await asyncio.gather(a.start(), b.start())
            ids = []
            for replica, rows in ((a, setup.rows[:10]), (b, setup.rows[5:])):
                spec = spec_proto(setup.candidates(url, rows), setup.items, per_model=40, seed=3)
                async with grpc.aio.insecure_channel(replica.address) as channel:
                    started = await stub(channel).StartSearch(pb.StartSearchRequest(spec=spec))
                ids.append(started.search.search_id)
            while _progress(db, ids[0]).get("spent", 0) < 0.3 * 40 * 11 or not _held(db).get("A"):
                await asyncio.sleep(0.02)
            a.kill()
            killed = time.monotonic()
            first, second = [await _wait_end(b.address, sid) for sid in ids]
            # What A left: unregistered by B's heartbeat once A's leases expired, or joined
            # and let go of by the search B took over.
            while state.runtime_registered or _held(db):
                assert time.monotonic() - killed < 30, (state.runtime_registered, _held(db))
                await asyncio.sleep(0.1)
            assert b.proc.poll() is None, b.tail()
        finally:
            a.stop()
            b.stop()
    assert first.state == second.state == pb.SEARCH_STATE_SUCCEEDED, (first.error, second.error)
    assert second.result.recommended_model_id == BEST
    assert 0 < state.most_registered <= CAP
    assert state.statuses[404] == 0  # no query found its adapter gone
