"""Algorithm parameters out of range are refused naming the field, and a search stored with one
(by an older version) fails on resume instead of freezing the restarted server.

The request that froze a server: ttts with max_resample 1e300 (kept as 2^32 - 1), whose
challenger search looped for hours inside one scheduler call on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import struct
import subprocess
import sys

import grpc
import pytest
from gemfinder.candidates import Candidate
from gemfinder.config import ServerConfig
from gemfinder.oracles import InferenceOracle
from gemfinder.search.spec import SearchSpec
from gemfinder.server.app import Server
from gemfinder.server.errors import DETAILS_KEY
from gemfinder.store import Store
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.fleet_support import make_items
from tests.pool_support import clear_best_pool, spec_proto, start_fleet, write_endpoints

NAN, INF = float("nan"), float("inf")
BAD = [
    ("ttts", "max_resample", 1e300),
    ("ttts", "max_resample", 1001.0),
    ("ttts", "max_resample", NAN),
    ("ttts", "max_resample", INF),
    ("ttts", "max_resample", -1.0),
    ("ttts", "max_resample", 2.5),
    ("ttts", "leader_prob", 1e300),
    ("gem", "first_cut", 1e300),
    ("gem", "first_round_share", NAN),
    ("ucb", "c", 1e300),
    ("ucb_e", "a", -INF),
    ("sr", "max_attempts", 1e300),
]


def _violation(err: grpc.aio.AioRpcError) -> error_details_pb2.BadRequest.FieldViolation:
    status = status_pb2.Status.FromString(dict(err.trailing_metadata())[DETAILS_KEY])
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return bad.field_violations[0]


async def test_out_of_range_parameters_are_invalid_argument_naming_the_field(tmp_path):
    matrix, items = clear_best_pool(n_models=6, per_task=4)
    fleet, candidates, configs = await start_fleet(matrix, items)
    server = Server(
        ServerConfig(address="127.0.0.1:0", metrics_port=0, db=str(tmp_path / "p.db")),
        oracle=InferenceOracle(configs),
    )
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            for algorithm, key, value in BAD:
                spec = spec_proto(candidates, items, algorithm=algorithm, params={key: value})
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.StartSearch(pb.StartSearchRequest(spec=spec))
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (key, value)
                violation = _violation(err.value)
                assert violation.field == f"spec.params.{key}", violation
                assert "must be" in violation.description, violation
            spec = spec_proto(candidates, items, algorithm="ttts", params={"max_resample": 1e300})
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.StartSearch(pb.StartSearchRequest(spec=spec))
            assert "from 1 to 1000, got 1e300" in _violation(err.value).description
    finally:
        await server.stop(0)
        await fleet.stop()


def _stored_spec(algorithm: str, params: dict[str, float]) -> SearchSpec:
    """A spec whose endpoints do not exist: resuming must fail before any query is sent."""
    items = make_items(3, tasks=("arc_challenge",))
    candidates = [Candidate(f"org/m-{k}", "http://127.0.0.1:9/v1") for k in range(5)]
    return SearchSpec(candidates, items, budget=15, algorithm=algorithm, params=params)


def _forged_snapshot() -> bytes:
    """What an older version saved for ttts with max_resample 1e300: the u32 saturated."""
    sched = _stored_spec("ttts", {"max_resample": 32.0}).scheduler()
    data = sched.snapshot()
    valid = struct.pack("<dI", 0.5, 32)  # leader_prob, max_resample as bincode lays them out
    assert data.count(valid) == 1
    return data.replace(valid, struct.pack("<dI", 0.5, 2**32 - 1))


def _store_old_searches(db: str) -> None:
    store = Store(db)
    try:
        # With the snapshot of an older version ...
        spec = _stored_spec("ttts", {"max_resample": 32.0})
        store.create_search("snapshot", None, spec.to_dict() | {"params": {"max_resample": 1e300}})
        store.update_search("snapshot", state="running")
        store.save_snapshot("snapshot", _forged_snapshot())
        # ... and one that had not saved a snapshot yet: rebuilt from its stored spec.
        store.create_search("spec", None, _stored_spec("ucb", {"c": 1e300}).to_dict())
        store.update_search("spec", state="running")
    finally:
        store.close()


async def test_a_stored_out_of_range_search_does_not_hang_a_restarted_server(tmp_path):
    db = str(tmp_path / "old.db")
    _store_old_searches(db)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemfinder", "serve", "--address", "127.0.0.1:0", "--db", db],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert port, line
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port.group(1)}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            stub = pb_grpc.ModelSearchServiceStub(channel)
            for sid, field in [
                ("snapshot", "spec.params.max_resample"),
                ("spec", "spec.params.c"),
            ]:
                reply = await stub.GetSearch(pb.GetSearchRequest(search_id=sid), timeout=10)
                search = reply.search
                assert search.state == pb.SEARCH_STATE_FAILED, search
                assert search.error.startswith(f"on resume: {field}: must be"), search.error
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_sigterm_stops_the_server_mid_search_at_the_heaviest_parameters(tmp_path):
    matrix, items = clear_best_pool(n_models=64, per_task=10)
    fleet, candidates, configs = await start_fleet(matrix, items, latency_s=0.002)
    endpoints = tmp_path / "endpoints.json"
    write_endpoints(configs, endpoints)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "gemfinder", "serve", "--address", "127.0.0.1:0",
            "--db", str(tmp_path / "t.db"), "--endpoints", str(endpoints),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert port, line
        # Every choice a challenger hunt of 1,000 posterior draws, once the best model leads.
        params = {"leader_prob": 1e-9, "max_resample": 1000.0, "max_attempts": 10.0}
        spec = spec_proto(candidates, items, per_model=40, algorithm="ttts", params=params)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port.group(1)}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            sid = (await stub.StartSearch(pb.StartSearchRequest(spec=spec))).search.search_id
            for _ in range(200):
                search = (await stub.GetSearch(pb.GetSearchRequest(search_id=sid))).search
                if search.progress.spent >= 200:
                    break
                await asyncio.sleep(0.05)
            assert search.state == pb.SEARCH_STATE_RUNNING, search
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await fleet.stop()
    store = Store(str(tmp_path / "t.db"))
    try:
        assert store.get_search(sid).state == "running"  # resumes on the next start
    finally:
        store.close()
