"""kill -9 the server mid-search, restart it: same recommendation, only lost queries re-sent.

On PostgreSQL the killed server reaches its database through a slow link (tests/slow_link.py,
10 ms each way): its store's writer thread lags behind the search, as on a loaded machine,
where 202 of ~280 answers were once lost in the write-behind queue and paid again. The bound
asserted is on counts of queries, not on time."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import grpc
from gemfinder.store_writer import MAX_QUEUED_ANSWERS
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

from tests.pool_support import (
    clear_best_pool,
    generate_requests,
    spec_proto,
    start_fleet,
    write_endpoints,
)
from tests.slow_link import SlowLink

SLOW_LINK_S = 0.01  # per message each way: a write round trip of 20 ms and more


async def _server(tmp_path, db: str, endpoints) -> tuple[subprocess.Popen, int]:
    log = (tmp_path / "server.log").open("a")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "gemfinder", "serve", "--address", "127.0.0.1:0",
            "--db", db, "--endpoints", str(endpoints), "--metrics-port", "0",
        ],
        stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    line = await asyncio.to_thread(proc.stdout.readline)
    port = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert port, line
    return proc, int(port.group(1))


async def _finish(port: int, spec, request_id: str, kill_at: float | None, proc) -> str:
    """Start (or re-attach by request id) and poll; kill -9 the server at `kill_at` progress."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ModelSearchServiceStub(channel)
        started = await stub.StartSearch(pb.StartSearchRequest(spec=spec, request_id=request_id))
        sid = started.search.search_id
        while True:
            search = (await stub.GetSearch(pb.GetSearchRequest(search_id=sid))).search
            if search.state == pb.SEARCH_STATE_SUCCEEDED:
                return search.result.recommended_model_id
            assert search.state == pb.SEARCH_STATE_RUNNING, search
            p = search.progress
            if kill_at is not None and p.budget and p.spent >= kill_at * p.budget:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return ""
            await asyncio.sleep(0.05)


async def test_kill_9_and_restart_gives_the_same_result(tmp_path, new_db):
    matrix, items = clear_best_pool(n_models=24, per_task=15)
    fleet, candidates, configs = await start_fleet(matrix, items, latency_s=0.004)
    endpoints = write_endpoints(configs, tmp_path / "endpoints.json")
    spec = spec_proto(candidates, items, per_model=30, seed=11)
    procs, link = [], None
    clean_db, crash_db = new_db("clean.db"), new_db("crash.db")
    try:
        proc, port = await _server(tmp_path, clean_db, endpoints)
        procs.append(proc)
        before = generate_requests(fleet)
        clean = await _finish(port, spec, "clean", None, proc)
        clean_queries = generate_requests(fleet) - before

        before = generate_requests(fleet)
        killed_db = crash_db
        if crash_db.startswith("postgres"):
            link, killed_db = SlowLink.to_url(crash_db, SLOW_LINK_S)
        proc, port = await _server(tmp_path, killed_db, endpoints)
        procs.append(proc)
        assert await _finish(port, spec, "crash", 0.4, proc) == ""
        sent_before_kill = generate_requests(fleet) - before
        proc, port = await _server(tmp_path, crash_db, endpoints)
        procs.append(proc)
        resumed = await _finish(port, spec, "crash", None, proc)
        crash_queries = generate_requests(fleet) - before
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        await fleet.stop()
        if link is not None:
            link.close()
    assert resumed == clean
    backend = "PostgreSQL (slow link)" if crash_db.startswith("postgres") else "SQLite"
    print(  # the figures of docs/service.md, Crash resume (pytest -s shows them)
        f"\n{backend}: {crash_queries} queries with a kill -9, {clean_queries} without;"
        f" {sent_before_kill} sent before the kill"
    )
    # Answered queries are cached before they are told, so the resumed search re-sends only
    # the queries that were in flight when the process died (at most the endpoints' slots,
    # 2 x 16, plus answers still being graded). KNOWN GAP: the issue asks for <= clean_queries;
    # that needs the in-flight answers to survive kill -9, which they cannot. On PostgreSQL the
    # answers handed to the store may also wait in its write-behind queue, at most
    # MAX_QUEUED_ANSWERS of them (gemfinder.store_writer), however far the writer lags: before
    # that bound the slow link cost 181 queries paid twice (880 against 699).
    in_flight = 2 * 16 * 2
    queued = MAX_QUEUED_ANSWERS if crash_db.startswith("postgres") else 0
    assert sent_before_kill > in_flight + queued  # killed mid-search: the bound says something
    assert crash_queries <= clean_queries + in_flight + queued, (
        crash_queries,
        clean_queries,
        sent_before_kill,
        (tmp_path / "server.log").read_text(),
    )
