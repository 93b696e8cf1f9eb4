"""Callers may name only the endpoints the operator allows: attacked with URLs that reach a
listening socket the operator never listed, which must see no connection at all."""

from __future__ import annotations

import argparse
import json

import grpc
import pytest
from gemfinder import config as cfg
from gemfinder.candidates import Candidate, load_candidates
from gemfinder.config import ServerConfig
from gemfinder.errors import UserError
from gemfinder.oracles import InferenceOracle, load_endpoint_configs
from gemfinder.oracles.allowlist import EndpointAllowlist, EndpointNotAllowed
from gemfinder.search.manager import SearchManager
from gemfinder.search.spec import SearchSpec
from gemfinder.server.app import Server
from gemfinder.server.errors import DETAILS_KEY
from gemfinder.store import Store
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2

from tests.conftest import REPO_ROOT
from tests.fleet_support import make_items
from tests.pool_support import spec_proto

ALLOWED = EndpointAllowlist.build(
    ["http://tgi-0.models.svc:8080", "https://gw.example.com/llama/"],
    ["http://tgi-*.models.svc:8080", "http://10.0.0.*:80"],
)


@pytest.mark.parametrize(
    "url",
    [
        "http://tgi-0.models.svc:8080",  # listed
        "https://gw.example.com/llama",  # listed (trailing / dropped, as everywhere)
        "http://tgi-17.models.svc:8080",  # pattern
        "http://tgi-.models.svc:8080",  # * may be empty
        "http://10.0.0.9:80",
    ],
)
def test_allowed(url):
    assert ALLOWED.allows(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://TGI-0.models.svc:8080",  # case
        "HTTP://tgi-0.models.svc:8080",
        "http://tgi-0.models.svc.:8080",  # trailing dot
        "http://tgi-0.models.svc:8080@evil:8080",  # userinfo
        "http://tgi@evil:8080",
        "http://tgi-a@evil.models.svc:8080",  # userinfo inside the wildcard
        "http://tgi-a.evil.models.svc:8080",  # * does not cross a dot
        "http://tgi-a.models.svc:8081",  # another port
        "http://tgi-a.models.svc",  # no port where the pattern has one
        "http://tgi-a.models.svc:08080",
        "http://tgi-a.models.svc:8080/admin",  # a path
        "http://tgi-a.models.svc:8080?x=1",
        "http://tgi-a.models.svc:8080#x",
        "https://tgi-a.models.svc:8080",  # another scheme
        "http://[::1]:8080",  # IPv6 literal
        "http://10.0.0.9.evil:80",
        "http://10.0.0.9%2f:80",
        "https://gw.example.com/llama/../admin",
        "https://gw.example.com/llamas",
        "http://tgi-a.models.svc:8080\\@evil",
    ],
)
def test_refused(url):
    assert not ALLOWED.allows(url)
    with pytest.raises(EndpointNotAllowed) as err:
        ALLOWED.check([Candidate("a", "http://tgi-0.models.svc:8080"), Candidate("b", url)])
    assert err.value.kind == "permission_denied"
    assert err.value.violations == [(err.value.field, err.value.reason)]
    assert err.value.field == "candidates[1].endpoint" and repr(url) in err.value.reason


@pytest.mark.parametrize(
    "pattern",
    ["HTTP://x", "http://x:80/*", "http://*.svc:*", "ftp://x", "http://a b", "http://u@x:80", "x"],
)
def test_bad_patterns_are_refused_naming_the_flag(pattern):
    with pytest.raises(UserError) as err:
        cfg.load(None, {"GEMFINDER_ALLOW_ENDPOINT_PATTERNS": f"http://ok:80,{pattern}"})
    assert err.value.field == "GEMFINDER_ALLOW_ENDPOINT_PATTERNS (pattern 2)"


def test_allow_any_endpoint_is_a_switch():
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser)
    assert cfg.load(parser.parse_args(["--allow-any-endpoint"]), {}).allow_any_endpoint
    assert not cfg.load(parser.parse_args([]), {}).allow_any_endpoint
    assert cfg.load(None, {"GEMFINDER_ALLOW_ANY_ENDPOINT": "true"}).allow_any_endpoint
    assert not cfg.load(None, {"GEMFINDER_ALLOW_ANY_ENDPOINT": "0"}).allow_any_endpoint
    with pytest.raises(UserError, match="expected true or false"):
        cfg.load(None, {"GEMFINDER_ALLOW_ANY_ENDPOINT": "sure"})


@pytest.fixture
def victim(listener):
    """The listening socket the operator never listed."""
    return listener()


def tricks(victim) -> list[str]:
    """URLs that reach the victim (localhost:port), spelled otherwise than the listed one."""
    port = victim.port
    urls = [
        f"http://LOCALHOST:{port}",  # case
        f"http://localhost.:{port}",  # trailing dot
        f"http://tgi@127.0.0.1:{port}",  # userinfo
        f"http://localhost:{port}@127.0.0.1:{port}",
        f"http://127.0.0.1:{port}",  # the address the name resolves to
        f"http://localhost:{port}/v1",  # a path
        f"http://localhost:{port}/..",
        f"http://localhost:0{port}",  # the same port, written otherwise
    ]
    if victim.dual_stack:
        urls.append(f"http://[::1]:{port}")  # IPv6 literal
        urls.append(f"http://[::ffff:127.0.0.1]:{port}")
    return urls


async def test_refused_before_any_connection_over_grpc(tmp_path, victim, listener):
    other = listener()  # a different port: listed port + 1 would be a guess, this one is real
    endpoints = tmp_path / "endpoints.json"
    listed = f"http://localhost:{victim.port}"
    endpoints.write_text(json.dumps([{"url": listed, "adapters": ["x"]}]), encoding="utf-8")
    config = ServerConfig(
        address="127.0.0.1:0", metrics_port=0, db=str(tmp_path / "a.db"), endpoints=str(endpoints)
    )
    server = Server(config, oracle=InferenceOracle(load_endpoint_configs(endpoints)))
    port = await server.start()
    items = make_items(3, tasks=("mmlu",))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            for url in [*tricks(victim), f"http://localhost:{other.port}"]:
                cands = [Candidate("org/a", listed), Candidate("org/b", url)]
                for method, request in (
                    (stub.StartSearch, pb.StartSearchRequest(spec=spec_proto(cands, items))),
                    (
                        stub.SelectBestModel,
                        pb.SelectBestModelRequest(spec=spec_proto(cands, items)),
                    ),
                    (stub.PlanSearch, pb.PlanSearchRequest(spec=spec_proto(cands, items))),
                ):
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await method(request, timeout=10)
                    # Credentials in a URL are malformed input before they are a trick
                    # (server.convert); every other spelling is well formed and not allowed.
                    expected = (
                        grpc.StatusCode.INVALID_ARGUMENT
                        if "@" in url
                        else grpc.StatusCode.PERMISSION_DENIED
                    )
                    assert err.value.code() == expected, url
                    status = status_pb2.Status.FromString(
                        dict(err.value.trailing_metadata())[DETAILS_KEY]
                    )
                    bad = error_details_pb2.BadRequest()
                    assert status.details[0].Unpack(bad)
                    fields = [v.field for v in bad.field_violations]
                    assert fields == ["spec.candidates[1].endpoint"], url
            assert victim.connections == 0 and other.connections == 0
            assert (await stub.ListSearches(pb.ListSearchesRequest())).searches == []

            # A plan of the listed URL is made, and connects to nothing either.
            cands = [Candidate("org/a", listed), Candidate("org/b", listed, adapter_id="x")]
            found = await stub.PlanSearch(
                pb.PlanSearchRequest(spec=spec_proto(cands, items), trials=2), timeout=30
            )
            assert found.plan.models == 2 and found.plan.queries.mean > 0
            assert victim.connections == 0

            # The control: the listed URL itself is probed (so a connection would be seen).
            cands = [Candidate("org/a", listed), Candidate("org/b", listed, adapter_id="x")]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.StartSearch(
                    pb.StartSearchRequest(spec=spec_proto(cands, items)), timeout=30
                )
            assert err.value.code() != grpc.StatusCode.PERMISSION_DENIED
            assert victim.connections > 0
    finally:
        other.close()
        await server.stop(0)


async def test_a_server_without_an_endpoints_file_refuses_every_endpoint(tmp_path, victim):
    server = Server(
        ServerConfig(address="127.0.0.1:0", metrics_port=0, db=str(tmp_path / "n.db")),
        oracle=InferenceOracle(),
    )
    port = await server.start()
    items = make_items(3, tasks=("mmlu",))
    url = f"http://localhost:{victim.port}"
    cands = [Candidate("org/a", url), Candidate("org/b", url, adapter_id="org/b")]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.StartSearch(pb.StartSearchRequest(spec=spec_proto(cands, items)))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "spec.candidates[0].endpoint" in err.value.details()
    finally:
        await server.stop(0)
    assert victim.connections == 0


async def test_allow_any_endpoint_connects_and_warns(tmp_path, victim, caplog):
    config = ServerConfig(
        address="127.0.0.1:0", metrics_port=0, db=str(tmp_path / "y.db"), allow_any_endpoint=True
    )
    server = Server(config, oracle=InferenceOracle())
    port = await server.start()
    assert any(
        "--allow-any-endpoint" in r.message for r in caplog.records if r.levelname == "WARNING"
    )
    items = make_items(3, tasks=("mmlu",))
    url = f"http://127.0.0.1:{victim.port}"
    cands = [Candidate("org/a", url), Candidate("org/b", url, adapter_id="org/b")]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.StartSearch(pb.StartSearchRequest(spec=spec_proto(cands, items)))
            assert err.value.code() != grpc.StatusCode.PERMISSION_DENIED  # probed, refused later
    finally:
        await server.stop(0)
    assert victim.connections > 0


async def test_a_search_resumed_on_a_withdrawn_endpoint_fails_without_connecting(victim):
    """The operator removed an endpoint from the file and restarted: its unfinished search
    fails on resume instead of connecting to it again."""
    store = Store()
    url = f"http://127.0.0.1:{victim.port}"
    cands = [Candidate("a", url), Candidate("b", url, adapter_id="b")]
    spec = SearchSpec(cands, make_items(3, ("mmlu",)), 6)
    store.create_search("s1", None, spec.to_dict())
    store.update_search("s1", state="running")
    manager = SearchManager(store, InferenceOracle(), allowlist=EndpointAllowlist())
    assert await manager.resume_all() == []
    row = manager.get("s1")
    assert row.state == "failed" and "not allowed" in row.error
    assert victim.connections == 0


def test_the_example_fleets_candidates_name_only_their_listed_endpoints():
    # The fleet examples are the ones with candidates (the database examples have none).
    fleets = sorted(p.parent for p in (REPO_ROOT / "k8s" / "examples").glob("*/candidates.json"))
    assert len(fleets) >= 2, fleets
    for fleet in fleets:
        listed = load_endpoint_configs(fleet / "endpoints.json")
        EndpointAllowlist.build(c.key for c in listed).check(
            load_candidates(fleet / "candidates.json")
        )
