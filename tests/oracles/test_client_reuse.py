"""Clients of ended searches' endpoints are reused (oracles.client_cache), and attacked: a caller
must not reach, through a kept client, an endpoint the allowlist refuses, nor send another
endpoint's token."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import grpc
import pytest
from gemfinder.oracles import EndpointConfig, InferenceOracle
from gemfinder.oracles.client_cache import ClientCache, identity
from gemfinder.oracles.endpoints import PLACEHOLDER_TOKEN
from gemfinder.server.app import Server
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

from tests.fleet_support import FAST_RETRY
from tests.pool_support import clear_best_pool, server_config, spec_proto, start_fleet

NO_TOKEN = f"Bearer {PLACEHOLDER_TOKEN}"


def by_endpoint(candidates):
    out = defaultdict(list)
    for cand in candidates:
        out[cand.endpoint].append(cand)
    return out


class Closable:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    "other",
    [
        EndpointConfig("http://h:81"),  # another port
        EndpointConfig("http://h:80/v2"),  # another path
        EndpointConfig("https://h:80"),  # TLS
        EndpointConfig("http://h:80", token="secret"),  # a token
        EndpointConfig("http://h:80", backend="openai"),
    ],
)
def test_clients_of_different_settings_never_share_a_key(other):
    base = EndpointConfig("http://h:80")
    assert identity(base, 30.0) != identity(other, 30.0)
    assert identity(base, 30.0) != identity(base, 31.0)  # the timeout it was built with
    assert identity(base, 30.0) == identity(EndpointConfig("http://h:80/"), 30.0)  # same URL
    assert "secret" not in repr(identity(EndpointConfig("http://h:80", token="secret"), 1.0))


async def test_the_cache_is_bounded_and_closes_what_it_drops():
    cache = ClientCache(max_idle=2)
    clients = [Closable() for _ in range(4)]
    for k in range(3):
        await cache.park(("key", k), clients[k])
    assert clients[0].closed and len(cache) == 2  # the least recently parked
    await cache.park(("key", 2), clients[3])  # one of this identity is idle already
    assert clients[3].closed
    assert cache.take(("key", 2)) is clients[2] and not clients[2].closed
    assert cache.take(("key", 0)) is None
    assert (cache.reused, cache.built) == (1, 1)
    await cache.aclose()
    assert clients[1].closed and len(cache) == 0


def base_models(candidates):
    """The base model of each endpoint: a request-supplied endpoint's adapters cannot be
    checked (TGI's /info does not list them), so a caller names base models there."""
    return [c for c in candidates if c.adapter_id is None]


async def test_request_supplied_endpoints_reuse_their_client_across_searches(tmp_path):
    """Three searches on two endpoints the caller names: each one's client built once, taken
    back by the next two searches, and still answering."""
    matrix, items = clear_best_pool()
    fleet, candidates, _ = await start_fleet(matrix, items)
    named = base_models(candidates)
    oracle = InferenceOracle(policy=FAST_RETRY)
    server = Server(server_config(tmp_path, [], allow_any_endpoint=True), oracle=oracle)
    port = await server.start()
    answered = []  # /generate requests the endpoints had after each search
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            for seed in range(3):
                spec = spec_proto(named, items, per_model=6, seed=seed)
                reply = await stub.SelectBestModel(pb.SelectBestModelRequest(spec=spec))
                assert reply.search.state == pb.SEARCH_STATE_SUCCEEDED, reply.search.error
                assert len(oracle.clients) == 2  # kept, not closed, between searches
                answered.append(sum(fleet.state(n).requests["/generate"] for n in fleet.names))
    finally:
        await server.stop(0)
        await fleet.stop()
    assert (oracle.clients.built, oracle.clients.reused) == (2, 4)
    assert 0 < answered[0] < answered[1] < answered[2], answered


async def test_a_caller_cannot_ride_a_kept_client_past_the_allowlist_or_to_a_token(tmp_path):
    """The operator's endpoint has a token; the caller may name one more endpoint (a pattern),
    not a third. After a search left its client behind, the caller names the third endpoint:
    refused, and it sees no request. Every request the operator's endpoint gets carries its
    token, and no other endpoint ever sees that token, however the searches interleave."""
    matrix, items = clear_best_pool(n_models=18)
    fleet, candidates, configs = await start_fleet(matrix, items, endpoints=3)
    groups = by_endpoint(candidates)
    operator_url, named_url, refused_url = (fleet.url(name) for name in fleet.names)
    groups[named_url] = base_models(groups[named_url])
    operator = replace(next(c for c in configs if c.key == operator_url), token="operator-secret")
    oracle = InferenceOracle([operator], policy=FAST_RETRY)
    config = server_config(tmp_path, [operator], allow_endpoint_patterns=named_url)
    server = Server(config, oracle=oracle)
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)

            async def search(*urls: str, seed: int = 0) -> pb.Search:
                cands = [c for url in urls for c in groups[url]]
                spec = spec_proto(cands, items, per_model=6, seed=seed)
                return (await stub.SelectBestModel(pb.SelectBestModelRequest(spec=spec))).search

            assert (await search(operator_url, named_url)).state == pb.SEARCH_STATE_SUCCEEDED
            assert len(oracle.clients) == 1  # the named endpoint's, kept
            for urls in ([refused_url], [named_url, refused_url]):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await search(*urls)
                assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert refused_url in err.value.details()
            for seed in (1, 2):
                found = await search(named_url, operator_url, seed=seed)
                assert found.state == pb.SEARCH_STATE_SUCCEEDED, found.error
    finally:
        await server.stop(0)
        await fleet.stop()
    operator_seen, named_seen, refused_seen = (
        fleet.state(name).authorization for name in fleet.names
    )
    assert set(operator_seen) == {"Bearer operator-secret"}, operator_seen
    assert set(named_seen) == {NO_TOKEN}, named_seen
    assert not refused_seen  # not even a probe
    assert oracle.clients.reused == 2  # the named endpoint's client, taken back twice


async def test_a_worker_never_sends_a_token_through_a_client_kept_for_another(tmp_path):
    """Oracle workers are given endpoint settings, tokens included (oracles.workers): a client
    kept after `forget` is taken back only for the very same settings."""
    matrix, items = clear_best_pool()
    fleet, candidates, configs = await start_fleet(matrix, items)
    groups = by_endpoint(candidates)
    first, second = (fleet.url(name) for name in fleet.names)
    oracle = InferenceOracle(validate=False, policy=FAST_RETRY)

    async def ask(config: EndpointConfig, sent: str) -> None:
        """A query through the client `config` gets; every request carried `sent`."""
        state = next(fleet.state(n) for n in fleet.names if fleet.url(n) == config.key)
        before = state.authorization.copy()
        oracle.configure(config)
        res = await oracle.answer(groups[config.key][0], items[0])
        assert res.failure is None, res
        await oracle.forget([config.key])
        assert set(state.authorization - before) == {sent}, state.authorization - before

    try:
        await ask(EndpointConfig(first, token="token-a", max_concurrency=4), "Bearer token-a")
        await ask(EndpointConfig(first, max_concurrency=4), NO_TOKEN)  # same URL, no token
        await ask(EndpointConfig(second, max_concurrency=4), NO_TOKEN)  # another URL
        assert oracle.clients.reused == 0
        # The same settings (its concurrency is not the client's): the same client, its token.
        await ask(EndpointConfig(first, token="token-a", max_concurrency=8), "Bearer token-a")
        assert oracle.clients.reused == 1
    finally:
        await oracle.aclose()
        await fleet.stop()
