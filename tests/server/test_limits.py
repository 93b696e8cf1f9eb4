"""Limits that keep one caller from hurting the service or hiding its status: the size of an
error's trailer, unauthenticated requests refused before their body is parsed, reflection behind
the token, abandoned calls counted as CANCELLED."""

from __future__ import annotations

import asyncio
import json
import socket

import grpc
import pytest
from gemfinder.config import ServerConfig
from gemfinder.server.app import Server
from gemfinder.server.interceptors import ErrorInterceptor
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from tests.server.server_thread import serve_in_thread

ITEM = pb.QueryItem(
    id="q1",
    task="arc_challenge",
    fields_json=json.dumps({"question": "q", "choices": ["x", "y"], "answer": "A"}),
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_thousand_bad_candidates_arrive_as_invalid_argument(tmp_path):
    """Each candidate adds a violation; the default client still gets INVALID_ARGUMENT (it got
    RESOURCE_EXHAUSTED when the trailer passed its 8 KiB metadata limit) with a summary."""
    url = f"http://127.0.0.1:{closed_port()}"
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps([{"url": url, "adapters": []}]))
    config = ServerConfig(
        address="127.0.0.1:0", metrics_port=0, db=str(tmp_path / "t.db"), endpoints=str(endpoints)
    )
    long_name = "org/" + "é" * 300  # non-ASCII is percent-encoded three times over
    candidates = [
        pb.Candidate(model_id=f"{long_name}-{i}", endpoint=url, adapter_id=f"{long_name}-{i}")
        for i in range(1000)
    ]
    spec = pb.SearchSpec(
        candidates=candidates,
        query_set=pb.QuerySet(inline=pb.InlineQuerySet(items=[ITEM])),
        budget=pb.Budget(per_model=5),
    )
    with serve_in_thread(config) as (_, port), grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
        stub = pb_grpc.ModelSearchServiceStub(chan)
        with pytest.raises(grpc.RpcError) as err:
            stub.StartSearch(pb.StartSearchRequest(spec=spec), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    bad = error_details_pb2.BadRequest()
    assert rpc_status.from_call(err.value).details[0].Unpack(bad)
    listed = bad.field_violations
    assert listed[0].field.endswith("candidates[0].adapter_id")
    assert 1 < len(listed) <= 21
    assert f"and {1000 - len(listed) + 1} more" in listed[-1].description
    sent = dict(err.value.trailing_metadata())["grpc-status-details-bin"]
    assert len(sent) + len(err.value.details().encode()) < 4096


class SlowOracle:
    """Answers after a minute: a search that is still running when its caller gives up."""

    async def prepare(self, candidates) -> None:
        pass

    async def answer(self, candidate, item, *, system_prompt: bool = False):
        await asyncio.sleep(60)

    async def aclose(self) -> None:
        pass


def _spec(n: int = 2) -> pb.SearchSpec:
    return pb.SearchSpec(
        candidates=[pb.Candidate(model_id=f"m{i}", endpoint=f"http://h{i}:1") for i in range(n)],
        query_set=pb.QuerySet(inline=pb.InlineQuerySet(items=[ITEM])),
        budget=pb.Budget(per_model=5),
    )


TOKEN = (("authorization", "Bearer s3cret"),)


@pytest.fixture()
async def guarded(tmp_path, monkeypatch):
    """A server with a token, counting the requests its service decodes."""
    decoded: list[str] = []
    plain = ErrorInterceptor.deserializer

    def counting(self, inner):
        decode = plain(self, inner)
        if decode is None:
            return None

        def count(raw: bytes):
            decoded.append(type(request := decode(raw)).__name__)
            return request

        return count

    monkeypatch.setattr(ErrorInterceptor, "deserializer", counting)
    config = ServerConfig(
        address="127.0.0.1:0",
        metrics_port=0,
        db=str(tmp_path / "g.db"),
        token="s3cret",
        max_message_bytes=1024 * 1024,
        allow_endpoint_patterns="http://h*:1",  # the endpoints of _spec
    )
    server = Server(config, oracle=SlowOracle())
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel, decoded
    finally:
        await server.stop(0)


async def test_unauthenticated_requests_are_refused_unread(guarded):
    channel, decoded = guarded
    stub = pb_grpc.ModelSearchServiceStub(channel)
    big = pb.StartSearchRequest(spec=_spec(), request_id="x" * 900_000)  # under the limit
    refused = _count("StartSearch", "UNAUTHENTICATED")
    for metadata in ((), (("authorization", "Bearer wrong"),)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.StartSearch(big, metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as err:  # a server stream too
            await stub.WatchSearch(pb.WatchSearchRequest(search_id="s"), metadata=metadata).read()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert decoded == []  # never parsed
    assert _count("StartSearch", "UNAUTHENTICATED") == refused + 2  # still counted
    with pytest.raises(grpc.aio.AioRpcError) as err:  # authenticated: parsed, then refused
        await stub.StartSearch(big, metadata=TOKEN)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert decoded == ["StartSearchRequest"]
    huge = pb.StartSearchRequest(spec=_spec(), request_id="x" * 2_000_000)
    with pytest.raises(grpc.aio.AioRpcError) as err:  # above --max-message-bytes
        await stub.StartSearch(huge, metadata=TOKEN)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_reflection_needs_the_token_and_health_does_not(guarded):
    channel, _ = guarded
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    ask = reflection_pb2.ServerReflectionRequest(list_services="")

    async def services(metadata):
        async for answer in reflect.ServerReflectionInfo(iter([ask]), metadata=metadata):
            return [s.name for s in answer.list_services_response.service]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await services(())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "gemfinder.v1.ModelSearchService" in await services(TOKEN)
    health = health_pb2_grpc.HealthStub(channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def _count(method: str, code: str) -> float:
    labels = {"method": method, "code": code}
    return REGISTRY.get_sample_value("gemfinder_rpc_requests_total", labels) or 0.0


async def test_abandoned_calls_count_as_cancelled(guarded):
    channel, _ = guarded
    stub = pb_grpc.ModelSearchServiceStub(channel)
    before = {c: _count("SelectBestModel", c) for c in ("CANCELLED", "UNKNOWN")}
    call = stub.SelectBestModel(pb.SelectBestModelRequest(spec=_spec()), metadata=TOKEN)
    await asyncio.sleep(0.5)  # the search runs; SlowOracle keeps it running
    call.cancel()
    for _ in range(50):
        if _count("SelectBestModel", "CANCELLED") > before["CANCELLED"]:
            break
        await asyncio.sleep(0.05)
    assert _count("SelectBestModel", "CANCELLED") == before["CANCELLED"] + 1
    assert _count("SelectBestModel", "UNKNOWN") == before["UNKNOWN"]
