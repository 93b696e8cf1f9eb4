"""A caller's regular expression cannot freeze the server (issue #12: no request freezes it).

lm-eval grades with Python's `re`, which holds the GIL for a whole match: `(a+)+$` against
`aaaa...a!` backtracks 2^n times, and while it does no RPC of any caller is answered. So inline
`lm_eval` items sent over gRPC may name only the patterns lm-eval ships in its task YAML (or the
operator's `--lm-eval-include` YAML); the attack below is refused naming the field, and the
server keeps answering health checks and another caller's GetSearch throughout.

The server runs as a subprocess: without the guard it freezes for good, and the test's deadlines
(not the test itself) are what notice it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time

import grpc
import numpy as np
from gemfinder.server.errors import DETAILS_KEY
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.tasks import parse_item
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.pool_support import clear_best_pool, spec_proto, start_fleet, write_endpoints

EVIL = "(a+)+$"  # exponential backtracking on a run of a's that does not end the text
ANSWER = "a" * 64 + "!"  # 2^64 steps: the match never ends
# lm-eval's gsm8k flexible-extract pattern, shipped in lm_eval/tasks/gsm8k/gsm8k.yaml
SHIPPED = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"


def _fields(steps: list, metric_kwargs: dict | None = None, doc: dict | None = None) -> dict:
    return {
        "output_type": "generate_until",
        "lm_eval": {"task": "hostile"},
        "doc": doc or {},
        "metric": {"name": "exact_match", "kwargs": metric_kwargs or {}},
        "prompt": "Say a sixty-four times, then an exclamation mark.",
        "until": [],
        "max_gen_toks": 256,
        "target": ANSWER,
        "multiple_target": False,
        "filter": {"name": "x", "steps": steps},
    }


def _inline_spec(candidates, fields: dict) -> pb.SearchSpec:
    spec = spec_proto(candidates, [], per_model=1, algorithm="uniform", gem_check_share=0.0)
    item = pb.QueryItem(id="hostile/0", task="lm_eval", fields_json=json.dumps(fields))
    spec.query_set.CopyFrom(pb.QuerySet(inline=pb.InlineQuerySet(items=[item])))
    return spec


def _violation(err: grpc.aio.AioRpcError) -> tuple[str, str]:
    status = status_pb2.Status.FromString(dict(err.trailing_metadata())[DETAILS_KEY])
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return bad.field_violations[0].field, bad.field_violations[0].description


async def _serve(tmp_path, configs) -> tuple[subprocess.Popen, str]:
    endpoints = write_endpoints(configs, tmp_path / "endpoints.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemfinder", "serve", "--address", "127.0.0.1:0",
         "--db", str(tmp_path / "r.db"), "--endpoints", str(endpoints), "--metrics-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "GEMFINDER_CACHE_DIR": str(tmp_path / "c")},
    )  # fmt: skip
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    port = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert port, (line, proc.poll() is not None and proc.stderr.read())
    return proc, f"127.0.0.1:{port.group(1)}"


async def test_a_catastrophic_regex_is_refused_and_the_server_keeps_answering(tmp_path):
    matrix, items = clear_best_pool(n_models=6, per_task=4)
    # The fleet knows the hostile item with a harmless filter (it grades its own replies) and
    # answers it with the pathological text: every model "right", so the reply is ANSWER.
    benign = parse_item(
        json.dumps(_fields([["take_first", None]]) | {"id": "hostile/0", "task": "lm_eval"}), "b"
    )
    correct = np.concatenate([matrix.correct, np.ones((len(matrix.models), 1), np.uint8)], 1)
    both = CorrectnessMatrix(
        correct, matrix.models, [*matrix.items, benign.id], matrix.downloads, matrix.is_base
    )
    fleet, candidates, configs = await start_fleet(both, [*items, benign], latency_s=0.02)
    proc, address = await _serve(tmp_path, configs)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            # Another caller's ordinary search, running while the attack arrives.
            other = spec_proto(candidates, items, per_model=len(items), algorithm="uniform")
            sid = (await stub.StartSearch(pb.StartSearchRequest(spec=other))).search.search_id

            attack = _inline_spec(
                candidates, _fields([["regex", {"regex_pattern": EVIL}], ["take_first", None]])
            )
            try:
                await stub.StartSearch(pb.StartSearchRequest(spec=attack), timeout=60)
                refused = None
            except grpc.aio.AioRpcError as err:
                refused = err
            # Whatever became of it, nobody else waits: 3 s of health checks and GetSearch.
            slowest, until = 0.0, time.monotonic() + 3.0
            while time.monotonic() < until:
                t0 = time.perf_counter()
                reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
                await stub.GetSearch(pb.GetSearchRequest(search_id=sid), timeout=5)
                slowest = max(slowest, time.perf_counter() - t0)
                await asyncio.sleep(0.05)
            assert slowest < 1.0, slowest
            assert refused is not None, "the catastrophic pattern was accepted"
            assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
            field, why = _violation(refused)
            assert (
                field
                == "spec.query_set.inline.items[0].fields_json.filter.steps[0][1].regex_pattern"
            )
            assert "lm-eval" in why and "--lm-eval-include" in why, why

            # The other places a pattern reaches `re`, refused the same way.
            mc = _fields(
                [["multi_choice_regex", {"regexes_to_ignore": [SHIPPED, EVIL]}]],
                doc={"choices": ["a", "b"]},
            )
            cases = [
                (_fields([["regex_pos", {"regex_pattern": EVIL}]]),
                 "filter.steps[0][1].regex_pattern"),
                (mc, "filter.steps[0][1].regexes_to_ignore[1]"),
                (_fields([["take_first", None]], {"regexes_to_ignore": [EVIL]}),
                 "metric.kwargs.regexes_to_ignore[0]"),
                (_fields([["take_first", None]], {"regexes_to_ignore": EVIL}),
                 "metric.kwargs.regexes_to_ignore"),
            ]  # fmt: skip
            for fields, where in cases:
                try:
                    await stub.StartSearch(
                        pb.StartSearchRequest(spec=_inline_spec(candidates, fields))
                    )
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, where
                    assert (
                        _violation(err)[0] == f"spec.query_set.inline.items[0].fields_json.{where}"
                    )
                else:
                    raise AssertionError(f"{where}: accepted")

            # A pattern lm-eval ships is accepted, and graded as lm-eval grades it.
            ok = _fields([["regex", {"regex_pattern": SHIPPED, "group_select": -1}],
                          ["take_first", None]])  # fmt: skip
            started = await stub.StartSearch(
                pb.StartSearchRequest(spec=_inline_spec(candidates, ok))
            )
            assert started.search.search_id
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        proc.kill()
        proc.wait()
        await fleet.stop()


async def test_a_stored_search_with_such_a_pattern_fails_on_resume(tmp_path, monkeypatch):
    """Stored by a version that accepted any pattern: resuming it would freeze the new server."""
    from gemfinder.candidates import Candidate
    from gemfinder.config import ServerConfig
    from gemfinder.search.spec import SearchSpec
    from gemfinder.server.app import Server
    from gemfinder.store import Store

    hostile = parse_item(
        json.dumps(_fields([["regex", {"regex_pattern": EVIL}], ["take_first", None]])
                   | {"id": "hostile/0", "task": "lm_eval"}), "h")  # fmt: skip
    candidates = [Candidate(f"org/m-{k}", "http://127.0.0.1:9") for k in range(2)]
    db = str(tmp_path / "old.db")
    store = Store(db)
    try:
        store.create_search("old", None, SearchSpec(candidates, [hostile], budget=2).to_dict())
        store.update_search("old", state="running")
    finally:
        store.close()
    monkeypatch.setenv("GEMFINDER_CACHE_DIR", str(tmp_path / "c"))
    server = Server(ServerConfig(address="127.0.0.1:0", metrics_port=0, db=db))
    try:
        port = await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            search = (await stub.GetSearch(pb.GetSearchRequest(search_id="old"), timeout=10)).search
        assert search.state == pb.SEARCH_STATE_FAILED, search
        assert search.error.startswith(
            "on resume: spec.query_set.inline.items[0].fields_json.filter.steps[0][1]"
            ".regex_pattern: an inline lm_eval item"
        ), search.error
    finally:
        await server.stop(0)
