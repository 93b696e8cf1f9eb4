"""Cache poisoning, attacked: a caller's own endpoint answering for real model ids must not decide
another caller's search; endpoints share cached answers only when the operator groups them."""

from __future__ import annotations

import json
from functools import partial

import grpc
import pytest
from gemfinder.candidates import Candidate
from gemfinder.config import ServerConfig
from gemfinder.errors import UserError
from gemfinder.oracles import InferenceOracle, ReplayOracle, load_endpoint_configs
from gemfinder.oracles.base import answer_scope
from gemfinder.search.spec import CacheKeys, SearchSpec
from gemfinder.server.app import Server
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

from tests.pool_support import (
    BEST,
    clear_best_pool,
    generate_requests,
    spec_proto,
    start_fleet,
)


def _endpoints_file(path, *fleets, group: str | None = None):
    """The operator's endpoints file listing every fleet's endpoints (with an allowlist of
    endpoints, the attacker's must be listed to be named at all: one team's server among
    the many an operator lists); `group` puts them all in one cache_group."""
    entries = []
    for configs in fleets:
        for c in configs:
            entry = {"url": c.url, "adapters": list(c.adapters or ()), "max_concurrency": 16}
            entries.append(entry | ({"cache_group": group} if group else {}))
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


async def _search(server: Server, spec: pb.SearchSpec, request_id: str) -> pb.SearchResult:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.ModelSearchServiceStub(channel)
        request = pb.SelectBestModelRequest(spec=spec, request_id=request_id)
        search = (await stub.SelectBestModel(request, timeout=120)).search
    assert search.state == pb.SEARCH_STATE_SUCCEEDED, search.error
    return search.result


async def _server(db: str, endpoints) -> Server:
    config = ServerConfig(address="127.0.0.1:0", metrics_port=0, db=db, endpoints=str(endpoints))
    server = Server(config)
    await server.start()
    return server


def _ranking(result: pb.SearchResult) -> list[tuple[str, int, int]]:
    return [(r.model_id, r.successes, r.items_seen) for r in result.ranking]


async def test_an_attackers_endpoint_cannot_change_another_searchs_winner(tmp_path, new_db):
    matrix, items = clear_best_pool()
    # The attacker's fleet serves the same model ids with every answer flipped: the true best
    # is wrong on nearly everything, the weakest right on nearly everything.
    flipped = CorrectnessMatrix(
        1 - matrix.correct, matrix.models, matrix.items, matrix.downloads, matrix.is_base
    )
    real, candidates, real_configs = await start_fleet(matrix, items)
    evil, evil_candidates, evil_configs = await start_fleet(flipped, items)
    assert [c.model_id for c in evil_candidates] == [c.model_id for c in candidates]
    endpoints = _endpoints_file(tmp_path / "endpoints.json", real_configs, evil_configs)
    victim = spec_proto(candidates, items, per_model=30, seed=7)
    servers = []
    try:
        fresh = await _server(new_db("fresh.db"), endpoints)
        servers.append(fresh)
        clean = await _search(fresh, victim, "victim")

        shared = await _server(new_db("shared.db"), endpoints)
        servers.append(shared)
        # Every (model, item) answered by the attacker's fleet, under several seeds.
        for seed in range(3):
            attack = spec_proto(
                evil_candidates, items, per_model=len(items), seed=seed, algorithm="uniform"
            )
            await _search(shared, attack, f"attack-{seed}")
        assert shared.store.count_evals() == len(candidates) * len(items)
        before = generate_requests(real)
        poisoned = await _search(shared, victim, "victim")
        sent = generate_requests(real) - before
    finally:
        for server in servers:
            await server.stop(0)
        await real.stop()
        await evil.stop()
    assert clean.recommended_model_id == BEST
    assert poisoned.recommended_model_id == clean.recommended_model_id
    assert _ranking(poisoned) == _ranking(clean)
    assert poisoned.gem_verdict == clean.gem_verdict
    # None of the attacker's answers was served: every answer came from the real fleet.
    assert poisoned.queries_cached == 0
    assert sent == poisoned.queries_spent == clean.queries_spent


async def test_endpoints_share_answers_only_when_the_operator_groups_them(tmp_path, new_db):
    matrix, items = clear_best_pool(n_models=8, per_task=6)
    first, candidates, first_configs = await start_fleet(matrix, items)
    second, replicas, second_configs = await start_fleet(matrix, items)
    spec_on = {
        "first": spec_proto(candidates, items, per_model=10, seed=1),
        "second": spec_proto(replicas, items, per_model=10, seed=1),
    }
    sent = {}
    servers = []
    try:
        for group in (None, "replicas-of-one-deployment"):
            path = _endpoints_file(
                tmp_path / f"{group}.json", first_configs, second_configs, group=group
            )
            server = await _server(new_db(f"{group}.db"), path)
            servers.append(server)
            spent = (await _search(server, spec_on["first"], "a")).queries_spent
            before = generate_requests(second)
            again = await _search(server, spec_on["second"], "b")
            sent[group] = (generate_requests(second) - before, again.queries_cached, spent)
    finally:
        for server in servers:
            await server.stop(0)
        await first.stop()
        await second.stop()
    # Default: the second endpoints answer for themselves; grouped: from the first's answers.
    asked, cached, spent = sent[None]
    assert asked == spent and cached == 0
    asked, cached, spent = sent["replicas-of-one-deployment"]
    assert asked == 0 and cached == spent


def test_cache_scopes_come_from_the_operators_settings(tmp_path):
    path = tmp_path / "e.json"
    entries = [
        {"url": "http://a:80/", "cache_group": "llama-replicas"},
        {"url": "http://b:80", "cache_group": "llama-replicas"},
        {"url": "http://c:80", "backend": "openai", "served_model": "base"},
        {"url": "http://d:80"},
    ]
    path.write_text(json.dumps(entries), encoding="utf-8")
    oracle = InferenceOracle(load_endpoint_configs(path))
    scopes = [oracle.cache_scope(url) for url in ("http://a:80", "http://b:80/", "http://d:80")]
    assert scopes == ["group:llama-replicas", "group:llama-replicas", "url:http://d:80"]
    assert oracle.cache_scope("http://c:80") == "url:http://c:80|served:base"
    # An endpoint the operator does not list shares with none; a caller cannot name a group.
    assert oracle.cache_scope("http://llama-replicas") == "url:http://llama-replicas"
    for bad in ("", "  ", 7, "x" * 201):
        path.write_text(json.dumps([{"url": "http://a:80", "cache_group": bad}]))
        with pytest.raises(UserError, match=r"endpoints\[0\]\.cache_group"):
            load_endpoint_configs(path)


def test_replayed_answers_are_cached_apart_from_live_ones():
    matrix, items = clear_best_pool(n_models=4, per_task=2)
    candidates = [Candidate(m, "http://h:80", adapter_id=m) for m in matrix.models]
    spec = SearchSpec(candidates, items, budget=8)
    replay = CacheKeys(spec, partial(answer_scope, ReplayOracle(matrix)))
    live = CacheKeys(spec, partial(answer_scope, InferenceOracle()))
    assert replay(0, 0) != live(0, 0) and live(0, 0) == CacheKeys(spec)(0, 0)
