"""The oracle in worker processes (gemfinder.oracles.workers): the same grades and the same
search as in-process, endpoint failures stay failures, a killed worker fails what it held (never
a wrong answer) and is replaced, and no worker outlives its oracle or its parent process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from fleet_support import FAST_RETRY, expected, make_items, make_matrix
from gemfinder.candidates import Candidate
from gemfinder.oracles import EndpointConfig, FailureKind, InferenceOracle
from gemfinder.oracles.workers import WorkerOracle, split
from gemfinder.search.runner import SearchRunner
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.build import candidates_for, fleet_from_matrix
from gemfinder.store import Store

MODELS = [f"org/model-{k}" for k in range(6)]


@pytest.fixture(scope="module")
def pool():
    items = make_items(8, tasks=("arc_challenge", "mmlu", "gsm8k"))
    return items, make_matrix(items, MODELS, seed=3)


def _endpoints(config, urls, limit=None):
    return [
        EndpointConfig(urls[s.name], adapters=tuple(s.adapters), max_concurrency=limit)
        for s in config.endpoints
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not reaped yet) counts as gone: it runs nothing.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_an_endpoint_limit_is_split_between_the_workers():
    assert split(32, 2) == [16, 16]
    assert split(5, 2) == [3, 2]
    assert split(1, 3) == [1, 0, 0]  # never more in flight than the endpoint allows
    assert sum(split(7, 3)) == 7


async def test_workers_grade_as_the_matrix_says_and_as_in_process(pool):
    items, matrix = pool
    config = fleet_from_matrix(matrix, endpoints=2)
    async with Fleet(config, matrix, items) as fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        candidates = candidates_for(config, urls, matrix)
        pulls = [(c, it) for c in candidates for it in items]
        local = InferenceOracle(_endpoints(config, urls), policy=FAST_RETRY)
        await local.prepare(candidates)
        inline = await asyncio.gather(*(local.answer(c, it) for c, it in pulls))
        await local.aclose()
        oracle = WorkerOracle(_endpoints(config, urls), workers=2, policy=FAST_RETRY)
        try:
            await oracle.prepare(candidates)
            assert len(oracle.pids) == 2
            remote = await asyncio.gather(*(oracle.answer(c, it) for c, it in pulls))
        finally:
            await oracle.aclose()
    assert all(r.ok for r in remote)
    assert [r.reward for r in remote] == [r.reward for r in inline]
    assert all(r.reward == expected(matrix, r.model_id, r.item_id) for r in remote)
    assert all(r.completion_tokens and r.prompt_tokens for r in remote)  # TGI's headers
    # The workers' events are counted here, as the metrics read them.
    assert oracle.stats.count("graded") == oracle.stats.count("pull") == len(pulls)


async def _search(oracle, spec) -> tuple:
    store = Store()
    store.create_search("s", None, spec.to_dict())
    await oracle.prepare(spec.candidates)
    try:
        result = await SearchRunner("s", spec, oracle, store).run()
    finally:
        await oracle.aclose()
    ranking = [
        (e.model_id, e.successes, e.items_seen, e.eliminated_in_round) for e in result.ranking
    ]
    return result.recommended_model_id, ranking


async def test_a_search_through_workers_picks_as_in_process(pool):
    items, matrix = pool
    config = fleet_from_matrix(matrix, endpoints=2)
    async with Fleet(config, matrix, items) as fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        spec = SearchSpec(candidates_for(config, urls, matrix), items, budget=90, seed=11)
        inline = await _search(InferenceOracle(_endpoints(config, urls), policy=FAST_RETRY), spec)
        workers = WorkerOracle(_endpoints(config, urls), workers=2, policy=FAST_RETRY)
        remote = await _search(workers, spec)
    assert remote == inline


async def test_an_endpoint_failure_through_a_worker_is_a_failure(pool):
    items, _ = pool
    dead = Candidate("org/model-0", "http://127.0.0.1:9")  # discard port: refused
    oracle = WorkerOracle(workers=1, policy=FAST_RETRY, validate=False)
    try:
        results = await asyncio.gather(*(oracle.answer(dead, it) for it in items[:4]))
    finally:
        await oracle.aclose()
    assert all(r.reward is None and r.failure is FailureKind.CONNECTION for r in results)
    assert oracle.stats.count("pull_failed", FailureKind.CONNECTION) == 4


async def test_a_killed_worker_fails_its_pulls_and_is_replaced(pool):
    items, matrix = pool
    config = fleet_from_matrix(matrix, endpoints=2, latency_median_s=1.0)
    async with Fleet(config, matrix, items) as fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        candidates = candidates_for(config, urls, matrix)
        oracle = WorkerOracle(_endpoints(config, urls, limit=8), workers=2, policy=FAST_RETRY)
        try:
            await oracle.prepare(candidates)
            first = oracle.pids
            pulls = [(c, it) for c in candidates for it in items[:4]]
            running = [asyncio.ensure_future(oracle.answer(c, it)) for c, it in pulls]
            await asyncio.sleep(0.3)  # sent, answers a second away
            os.kill(first[0], signal.SIGKILL)
            results = await asyncio.gather(*running)
            lost = [r for r in results if r.failure is FailureKind.WORKER_LOST]
            assert lost, "the killed worker held pulls"
            assert all(r.reward is None for r in lost)  # a failure, never a 0
            graded = [r for r in results if r.ok]
            assert graded and all(
                r.reward == expected(matrix, r.model_id, r.item_id) for r in graded
            )
            assert oracle.stats.count("pull_failed", FailureKind.WORKER_LOST) == len(lost)
            for _ in range(200):  # a new worker takes the dead one's place
                if len(oracle.pids) == 2 and first[0] not in oracle.pids:
                    break
                await asyncio.sleep(0.05)
            assert len(oracle.pids) == 2 and first[0] not in oracle.pids
            again = await asyncio.gather(*(oracle.answer(c, it) for c, it in pulls))
            assert all(r.ok for r in again)
        finally:
            await oracle.aclose()


async def test_a_cancelled_pull_is_stopped_in_its_worker(pool):
    """A search cancelled (or shut down) abandons its pulls: the worker cancels them too, so no
    request keeps running for nobody (their answers would be graded and counted)."""
    items, matrix = pool
    config = fleet_from_matrix(matrix, endpoints=1, latency_median_s=1.5)
    async with Fleet(config, matrix, items) as fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        candidates = candidates_for(config, urls, matrix)
        oracle = WorkerOracle(_endpoints(config, urls, limit=8), workers=1, policy=FAST_RETRY)
        try:
            await oracle.prepare(candidates)
            running = [asyncio.ensure_future(oracle.answer(candidates[0], it)) for it in items[:4]]
            await asyncio.sleep(0.5)  # in the worker, answers a second away
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await asyncio.sleep(2.0)  # past the fleet's latency
            after = await oracle.answer(candidates[0], items[5])  # its frame brings the events
        finally:
            await oracle.aclose()
    assert after.ok
    assert oracle.stats.count("graded") == 1  # the cancelled four were never graded


async def test_aclose_stops_every_worker():
    oracle = WorkerOracle(workers=2)
    await oracle.start()
    pids = oracle.pids
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    await oracle.aclose()
    assert not any(_alive(p) for p in pids)


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    """kill -9 of the server leaves no orphan: each worker sees its socket close and exits."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from gemfinder.oracles.workers import WorkerOracle

        async def main():
            oracle = WorkerOracle(workers=2)
            await oracle.start()
            print(*oracle.pids, flush=True)
            await asyncio.sleep(120)

        asyncio.run(main())
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def test_a_worker_has_its_http_client_stack_ready_before_it_says_ready():
    """A worker imports huggingface_hub's async client and builds its SSL context before its
    "ready" (oracles.transport.warm), so its first answer does not pay 150-225 ms for them on
    its loop. Run in a fresh interpreter, where nothing else has imported them yet."""
    script = textwrap.dedent(
        """
        import asyncio, json, socket, sys
        from gemfinder.oracles import transport, worker
        from gemfinder.oracles.frames import frame, read_frame
        from gemfinder.oracles.retry import RetryPolicy

        HUB = "huggingface_hub.inference._generated._async_client"
        SETTINGS = {
            "policy": RetryPolicy(), "default_concurrency": 8, "seed": None,
            "max_answer_bytes": 1 << 20, "executor": "", "log_level": "WARNING",
            "grading_timeout_s": 10.0, "grading_workers": 1,
        }

        async def main():
            ours, theirs = socket.socketpair()
            before = HUB in sys.modules or transport._SSL is not None
            serving = asyncio.create_task(worker.serve(theirs.fileno()))
            reader, writer = await asyncio.open_connection(sock=ours)
            writer.write(frame(("settings", SETTINGS)))
            assert (await read_frame(reader))[0] == "ready"
            ready = {"hub": HUB in sys.modules, "ssl": transport._SSL is not None}
            writer.write(frame(("stop",)))
            await serving
            print(json.dumps({"before": before, **ready}))

        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    state = json.loads(out.stdout.splitlines()[-1])
    assert state == {"before": False, "hub": True, "ssl": True}
