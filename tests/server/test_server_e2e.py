"""End to end: a real grpc.aio server on 127.0.0.1:0, a real channel, a simulated fleet."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from gemfinder.oracles import InferenceOracle
from gemfinder.server.app import Server
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.fleet_support import FAST_RETRY
from tests.pool_support import (
    BEST,
    clear_best_pool,
    generate_requests,
    server_config,
    spec_proto,
    start_fleet,
)


@pytest.fixture
async def env(tmp_path):
    matrix, items = clear_best_pool()
    fleet, candidates, configs = await start_fleet(matrix, items, latency_s=0.002)
    oracle = InferenceOracle(configs, policy=FAST_RETRY)
    config = server_config(tmp_path, configs)
    server = Server(config, oracle=oracle)
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.ModelSearchServiceStub(channel)
    yield stub, channel, fleet, candidates, items
    await channel.close()
    await server.stop(0)
    await fleet.stop()


async def test_select_best_model_returns_the_known_best(env):
    stub, channel, fleet, candidates, items = env
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    request = pb.SelectBestModelRequest(spec=spec_proto(candidates, items), request_id="r1")
    response = await stub.SelectBestModel(request, timeout=60)
    search = response.search
    assert search.state == pb.SEARCH_STATE_SUCCEEDED
    result = search.result
    assert result.recommended_model_id == BEST
    assert result.winner.model_id == BEST
    assert result.most_popular.model_id == "org/ft-0"
    assert result.hidden_gem, (result.gem_verdict, result.gem_evidence)
    assert len(result.ranking) == len(candidates)
    assert 0 < result.queries_spent <= 30 * len(candidates)
    assert result.exhaustive_queries == len(candidates) * len(items)
    assert generate_requests(fleet) == result.queries_spent
    # A retry with the same request id attaches to the same search: nothing is paid twice.
    again = await stub.SelectBestModel(request, timeout=60)
    assert again.search.search_id == search.search_id
    assert generate_requests(fleet) == result.queries_spent


async def test_watch_streams_events_to_the_end(env):
    stub, _, _, candidates, items = env
    started = await stub.StartSearch(
        pb.StartSearchRequest(spec=spec_proto(candidates, items, seed=3))
    )
    sid = started.search.search_id
    types = []
    async for event in stub.WatchSearch(pb.WatchSearchRequest(search_id=sid), timeout=60):
        types.append(event.type)
        if event.type == pb.EVENT_TYPE_FINISHED:
            assert event.search.result.recommended_model_id == BEST
    assert types[0] == pb.EVENT_TYPE_SNAPSHOT
    assert types[-1] == pb.EVENT_TYPE_FINISHED
    assert pb.EVENT_TYPE_ROUND_FINISHED in types
    got = await stub.GetSearch(pb.GetSearchRequest(search_id=sid))
    assert got.search.state == pb.SEARCH_STATE_SUCCEEDED
    listed = await stub.ListSearches(pb.ListSearchesRequest(page_size=1))
    assert [s.search_id for s in listed.searches] == [sid]


async def test_cancel_stops_spending(tmp_path):
    matrix, items = clear_best_pool()
    fleet, candidates, configs = await start_fleet(matrix, items, latency_s=0.05)
    server = Server(
        server_config(tmp_path, configs),
        oracle=InferenceOracle(configs, policy=FAST_RETRY),
    )
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            spec = spec_proto(candidates, items, per_model=40)
            sid = (await stub.StartSearch(pb.StartSearchRequest(spec=spec))).search.search_id
            await asyncio.sleep(0.5)
            cancelled = await stub.CancelSearch(pb.CancelSearchRequest(search_id=sid))
            assert cancelled.search.state == pb.SEARCH_STATE_CANCELLED
            sent = generate_requests(fleet)
            await asyncio.sleep(0.5)
            assert generate_requests(fleet) == sent
            assert 0 < sent < 40 * len(candidates)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetSearch(pb.GetSearchRequest(search_id="nope"))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await server.stop(0)
        await fleet.stop()
