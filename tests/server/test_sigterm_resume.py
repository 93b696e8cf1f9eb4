"""SIGTERM mid-search (a pod stopped by Kubernetes), then a new `gemfinder serve` on the same
SQLite store: the same search (same id) finishes with the answer an uninterrupted run gives, the
stopped process exits 0 within its grace, and only queries in flight at the stop are sent
again. tests/server/test_crash_resume.py does kill -9; test_rolling_restart.py SIGTERM on
PostgreSQL replicas."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

import grpc
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

from tests.pool_support import (
    clear_best_pool,
    generate_requests,
    spec_proto,
    start_fleet,
    write_endpoints,
)

GRACE_S = 10
# What a stop can leave unstored, as in test_crash_resume: the queries in flight (two
# endpoints, 16 slots each) and as many answers already back but not yet graded and stored by
# the search when it is cancelled (seen: 741 against 699 in a fresh-clone CI run).
IN_FLIGHT = 2 * 16 * 2


async def _server(tmp_path, db: str, endpoints) -> tuple[subprocess.Popen, str]:
    log = (tmp_path / "server.log").open("a")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "gemfinder", "serve", "--address", "127.0.0.1:0",
            "--db", db, "--endpoints", str(endpoints), "--metrics-port", "0",
            "--grace-s", str(GRACE_S),
        ],
        stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    line = await asyncio.to_thread(proc.stdout.readline)
    port = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert port, (tmp_path / "server.log").read_text()
    return proc, f"127.0.0.1:{port.group(1)}"


async def _run(address: str, spec, request_id: str, stop_at: float | None, proc) -> pb.Search:
    """Start (or re-attach by request id) and poll; SIGTERM the server at `stop_at` progress."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.ModelSearchServiceStub(channel)
        started = await stub.StartSearch(pb.StartSearchRequest(spec=spec, request_id=request_id))
        while True:
            got = await stub.GetSearch(pb.GetSearchRequest(search_id=started.search.search_id))
            search = got.search
            if search.state != pb.SEARCH_STATE_RUNNING:
                return search
            p = search.progress
            if stop_at is not None and p.budget and p.spent >= stop_at * p.budget:
                start = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(proc.wait, GRACE_S + 20) == 0
                assert time.monotonic() - start < GRACE_S, "the stop waited out the grace"
                return search
            await asyncio.sleep(0.05)


async def test_sigterm_mid_search_then_restart_finishes_the_same_search(tmp_path):
    matrix, items = clear_best_pool(n_models=24, per_task=15)
    fleet, candidates, configs = await start_fleet(matrix, items, latency_s=0.004)
    endpoints = write_endpoints(configs, tmp_path / "endpoints.json")
    spec = spec_proto(candidates, items, per_model=30, seed=11)
    procs = []
    try:
        proc, address = await _server(tmp_path, str(tmp_path / "clean.db"), endpoints)
        procs.append(proc)
        before = generate_requests(fleet)
        clean = await _run(address, spec, "clean", None, proc)
        clean_queries = generate_requests(fleet) - before
        assert clean.state == pb.SEARCH_STATE_SUCCEEDED

        before = generate_requests(fleet)
        db = str(tmp_path / "stopped.db")
        proc, address = await _server(tmp_path, db, endpoints)
        procs.append(proc)
        stopped = await _run(address, spec, "stopped", 0.4, proc)
        sent_before_stop = generate_requests(fleet) - before
        proc, address = await _server(tmp_path, db, endpoints)
        procs.append(proc)
        resumed = await _run(address, spec, "stopped", None, proc)
        stopped_queries = generate_requests(fleet) - before
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        await fleet.stop()
    print(  # pytest -s shows them
        f"\nSIGTERM: {stopped_queries} queries, {clean_queries} without a stop;"
        f" {sent_before_stop} sent before the stop"
    )
    log = (tmp_path / "server.log").read_text()
    assert "interrupted by shutdown; it resumes" in log, log
    assert resumed.search_id == stopped.search_id  # the same search, resumed, not a new one
    assert resumed.state == pb.SEARCH_STATE_SUCCEEDED
    assert resumed.result.recommended_model_id == clean.result.recommended_model_id
    assert sent_before_stop > IN_FLIGHT  # stopped mid-search: the bound says something
    assert stopped_queries <= clean_queries + IN_FLIGHT, (stopped_queries, clean_queries)
