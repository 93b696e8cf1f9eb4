"""`gemfinder serve --workers N`: the server's oracle runs in N worker processes, started with
the server and stopped with it; a search through them picks as in-process."""

from __future__ import annotations

import os

import grpc
from gemfinder.oracles.workers import WorkerOracle
from gemfinder.server.app import Server
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

from tests.pool_support import (
    BEST,
    clear_best_pool,
    generate_requests,
    server_config,
    spec_proto,
    start_fleet,
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie runs nothing
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


async def test_a_server_with_workers_finds_the_best_and_stops_them(tmp_path):
    matrix, items = clear_best_pool()
    fleet, candidates, configs = await start_fleet(matrix, items, latency_s=0.002)
    server = Server(server_config(tmp_path, configs, workers=2))
    try:
        assert isinstance(server.oracle, WorkerOracle)
        port = await server.start()
        pids = server.oracle.pids
        assert len(pids) == 2 and all(_alive(p) for p in pids)  # started with the server
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            request = pb.SelectBestModelRequest(spec=spec_proto(candidates, items))
            search = (await stub.SelectBestModel(request, timeout=60)).search
        assert search.state == pb.SEARCH_STATE_SUCCEEDED, search.error
        assert search.result.recommended_model_id == BEST
        assert generate_requests(fleet) == search.result.queries_spent
    finally:
        await server.stop(0)
        await fleet.stop()
    assert not any(_alive(p) for p in pids)
