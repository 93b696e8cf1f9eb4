"""Limits that keep one caller from hurting the service or hiding its status: the size of an
error's trailer, unauthenticated requests refused before their body is parsed, reflection behind
the token, abandoned calls counted as CANCELLED."""

from __future__ import annotations

import json
import socket

import grpc
import pytest
from gemfinder.config import ServerConfig
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.service.server_thread import serve_in_thread

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
    long_name = "org/" + "é" * 3000  # non-ASCII is percent-encoded three times over
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
