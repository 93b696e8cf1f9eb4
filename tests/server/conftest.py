"""Fixtures of the server tests."""

from __future__ import annotations

import json

import grpc
import pytest
from gemfinder.cli.search import MATRIX_ENDPOINT
from gemfinder.config import ServerConfig
from gemfinder.oracles import ReplayOracle

from tests.server.fuzz_support import MATRIX
from tests.server.server_thread import serve_in_thread


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    """A synchronous channel to a real server answering from fuzz_support.MATRIX, one server per
    test module; its endpoints file lists only the matrix's endpoint, and its active-search limit
    is high enough that the fuzzers' valid requests are never refused for it."""
    db = tmp_path_factory.mktemp("fuzz") / "f.db"
    endpoints = db.with_name("endpoints.json")  # the endpoints callers may name
    endpoints.write_text(json.dumps([{"url": MATRIX_ENDPOINT}]), encoding="utf-8")
    config = ServerConfig(
        address="127.0.0.1:0",
        metrics_port=0,
        db=str(db),
        endpoints=str(endpoints),
        max_active_searches=1000,
    )
    with (
        serve_in_thread(config, ReplayOracle(MATRIX)) as (_, port),
        grpc.insecure_channel(f"127.0.0.1:{port}") as chan,
    ):
        yield chan
