"""A model's pathological answer cannot stall the server through a slow grading pattern.

The operator registers an lm-eval task whose filter pattern is quadratic in the reply
(data/lm_eval_slow/slow_units.yaml: `\\s+$`, which lm-eval ships, as one alternative). A model
endpoint - untrusted - answers one item with 200,000 spaces and a letter: grading it with
Python's `re` would hold the interpreter lock for minutes (1.7 s at 16,000 characters, growing
with the square), and with it every RPC. Grading patterns that are not known linear runs in a
grading process with a time limit (oracles.grading_pool): past 1 s it is killed and replaced,
and the query fails as `grading_timeout` - neither a wrong answer nor a right one.

The server runs as a subprocess (`gemfinder serve`), so a frozen server is seen by the test's
deadlines. Without the grading processes (grading inline), the health checks here missed their
5 s deadline. The same holds with the oracle in a worker process (`--workers 1`): each worker
grades in grading processes of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

pytest.importorskip("lm_eval")
from gemfinder.sim.matrix import CorrectnessMatrix  # noqa: E402
from gemfinder.tasks import parse_item  # noqa: E402
from gemfinder.tasks.lmeval.build import build_query_set  # noqa: E402
from gemfinder.v1 import gemfinder_pb2 as pb  # noqa: E402
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from tests.pool_support import start_fleet, write_endpoints  # noqa: E402

TASKS = Path(__file__).parent / "data" / "lm_eval_slow"
HOSTILE = " " * 200_000 + "x"  # `\s+$` rescans the run from each of its positions
QUESTIONS = [(f"How many grams are in {k} kilograms?", str(1000 * k)) for k in range(1, 7)]
MODELS = ["org/base", "org/ft-a", "org/gem", "org/ft-b"]
HOSTILE_MODEL, BEST = "org/ft-a", "org/gem"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _failed_by_kind(metrics_port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
    out: dict[str, float] = {}
    for m in re.finditer(
        r'^gemfinder_queries_failed_total\{[^}]*kind="([a-z_]+)"[^}]*\} (\S+)$',
        text.decode(),
        re.MULTILINE,
    ):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "oracle-worker"])
async def test_a_pathological_answer_times_out_in_a_grading_process(tmp_path, workers):
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"question": q, "answer": a} for q, a in QUESTIONS]
    rows.append({"question": "Reply with spaces, then x.", "answer": HOSTILE})
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tasks.json").write_text(json.dumps({"slow_units": "data"}))
    include = TASKS  # a fixed directory: lm-eval's task index is walked once, then cached

    # The fleet knows the same prompts with a harmless filter (it checks each reply with the
    # item's grader): a model "right" on the last item replies with HOSTILE.
    records = build_query_set("slow_units", {"test": data / "test.jsonl"}, include=(str(include),))
    items = []
    for rec in records:
        rec["filter"] = {"name": "number", "steps": [["take_first", None]]}
        items.append(parse_item(json.dumps(rec), "fleet"))
    correct = (np.random.default_rng(3).random((len(MODELS), len(items))) < 0.4).astype(np.uint8)
    correct[MODELS.index(BEST)] = 1
    correct[:, -1] = 0  # wrong answers ("I am not sure.") grade quickly, even here
    correct[MODELS.index(BEST), -1] = 0
    correct[MODELS.index(HOSTILE_MODEL), -1] = 1  # its reply: HOSTILE
    matrix = CorrectnessMatrix(correct, MODELS, [it.id for it in items])
    fleet, candidates, configs = await start_fleet(matrix, items, latency_s=0.02)

    metrics_port = _free_port()
    endpoints = write_endpoints(configs, tmp_path / "endpoints.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemfinder", "serve", "--address", "127.0.0.1:0",
         "--db", str(tmp_path / "g.db"), "--endpoints", str(endpoints),
         "--metrics-port", str(metrics_port), "--lm-eval-tasks", str(tmp_path / "tasks.json"),
         "--lm-eval-include", str(include), "--grading-timeout-s", "1",
         "--workers", str(workers)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 120)
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert port, (line, proc.poll() is not None and proc.stderr.read())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port.group(1)}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            spec = pb.SearchSpec(
                candidates=[pb.Candidate(model_id=c.model_id, endpoint=c.endpoint,
                                         adapter_id=c.adapter_id or "") for c in candidates],
                query_set=pb.QuerySet(lm_eval=pb.LmEvalQuerySet(task="slow_units")),
                budget=pb.Budget(per_model=len(items)),
                algorithm="uniform",
                gem_check_share=0.0,
            )  # fmt: skip
            started = await stub.StartSearch(pb.StartSearchRequest(spec=spec), timeout=120)
            sid = started.search.search_id
            # Throughout the search - its hostile answer graded, timed out, retried, skipped -
            # every health check and GetSearch answers within seconds (a bound sized below).
            slowest, polls, t_start = 0.0, 0, time.monotonic()
            while True:
                t0 = time.perf_counter()
                reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
                search = (
                    await stub.GetSearch(pb.GetSearchRequest(search_id=sid), timeout=5)
                ).search
                slowest = max(slowest, time.perf_counter() - t0)
                polls += 1
                if search.state not in (pb.SEARCH_STATE_PENDING, pb.SEARCH_STATE_RUNNING):
                    break
                assert time.monotonic() - t_start < 240, "the search did not finish"
                await asyncio.sleep(0.05)
            took = time.monotonic() - t_start
            assert search.state == pb.SEARCH_STATE_SUCCEEDED, search.error
            # Graded inline, the hostile answer would hold the server for minutes (the health
            # checks missed their 5 s deadline). With the grading processes the slowest poll
            # (two RPCs) takes 0.1-0.2 s on a quiet machine; on a loaded 2-core one - each
            # timed-out process burning a core for its 1 s, its replacement importing lm-eval -
            # 0.8 s, and once 1.9 s in a full suite run: 3 s keeps that apart from a frozen loop.
            assert slowest < 3.0, (slowest, polls)
            result = search.result
            assert result.recommended_model_id == BEST
            by_model = {e.model_id: e for e in result.ranking}
            # The hostile answer is neither wrong nor right: that model was graded on the rest.
            assert by_model[HOSTILE_MODEL].items_seen == len(items) - 1
            assert by_model[BEST].items_seen == len(items)
            failed = _failed_by_kind(metrics_port)
            assert failed.get("grading_timeout", 0) >= 1, failed
            assert set(failed) == {"grading_timeout"}, failed  # nothing else failed
            assert result.queries_failed == failed["grading_timeout"]
            # Each timeout cost its 1 s limit, during the polling above.
            assert took >= failed["grading_timeout"], (took, failed)
            print(f"search {took:.1f} s, {polls} polls, slowest {slowest * 1000:.1f} ms, {failed}")
    finally:
        proc.kill()
        proc.wait()
        await fleet.stop()
