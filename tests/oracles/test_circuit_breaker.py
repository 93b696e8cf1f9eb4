"""An endpoint that keeps refusing connections is not hammered: the circuit opens, a dead fleet
fails a search in seconds with few connections, and a failure is still never a wrong answer."""

from __future__ import annotations

import asyncio
import json
import socket
import time

from fleet_support import FAST_RETRY, fleet_config, make_items, make_matrix
from gemfinder.candidates import Candidate
from gemfinder.oracles import FailureKind, InferenceOracle, OracleStats, RetryPolicy
from gemfinder.oracles.retry import Admission, CircuitBreaker
from gemfinder.search.manager import SearchManager
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.synthetic_items import generate
from gemfinder.store import Store
from gemfinder.tasks import parse_item


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_then_one_trial_per_cooldown():
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, cooldown_s=0.5, max_cooldown_s=2.0, clock=clock)
    for _ in range(2):
        assert breaker.admit() is Admission.CONNECT
        breaker.record(Admission.CONNECT, connection_failed=True)
    assert not breaker.open
    breaker.record(breaker.admit(), connection_failed=True)
    assert breaker.open and breaker.admit() is Admission.BLOCKED and not breaker.down
    clock.now += 0.5
    assert breaker.admit() is Admission.TRIAL
    assert breaker.admit() is Admission.BLOCKED  # one trial at a time
    breaker.record(Admission.TRIAL, connection_failed=True)
    assert breaker.down and breaker.retry_in() == 1.0  # cooldown doubled
    clock.now += 0.99
    assert breaker.admit() is Admission.BLOCKED
    clock.now += 0.01
    trial = breaker.admit()
    assert trial is Admission.TRIAL
    breaker.abandon(trial)  # cancelled: the next caller may try
    trial = breaker.admit()
    assert trial is Admission.TRIAL
    breaker.record(trial, connection_failed=False)
    assert not breaker.open and not breaker.down and breaker.admit() is Admission.CONNECT


def test_an_endpoint_that_answers_with_errors_is_up():
    breaker = CircuitBreaker(threshold=2)
    breaker.record(Admission.CONNECT, connection_failed=True)
    breaker.record(Admission.CONNECT, connection_failed=False)  # e.g. a 503: it answered
    breaker.record(Admission.CONNECT, connection_failed=True)
    assert not breaker.open


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_many_pulls_to_a_failing_endpoint_make_few_connections(listener):
    server = listener()  # a server dying on each request
    items = make_items(5, tasks=("mmlu",))
    oracle = InferenceOracle(policy=RetryPolicy(backoff_base_s=0.01, backoff_max_s=0.05))
    cand = Candidate("org/a", server.url)
    try:
        results = await asyncio.gather(*(oracle.answer(cand, items[k % 5]) for k in range(400)))
    finally:
        await oracle.aclose()
        server.close()
    assert all(r.reward is None and r.failure is FailureKind.CONNECTION for r in results)
    # Without the circuit: 4 attempts each, 1,600 connections. With it: the attempts that held
    # one of the 8 slots when it opened, plus a trial per cooldown.
    assert server.connections <= 30, server.connections
    assert oracle.stats.count("attempt") == server.connections
    assert oracle.stats.count("attempt_blocked") >= 400
    assert any("circuit open" in (r.error or "") for r in results)


async def test_a_dead_fleet_fails_a_large_search_in_seconds_with_few_connections():
    urls = [closed_port_url() for _ in range(4)]
    cands = [Candidate(f"org/m{k}", urls[k % 4], adapter_id=f"org/m{k}") for k in range(40)]
    records = generate(50, 0, tasks=("mmlu",))
    items = [parse_item(json.dumps(r), r["id"]) for r in records]
    spec = SearchSpec(cands, items, budget=2000, allow_unreachable=True)
    stats = OracleStats()
    oracle = InferenceOracle(stats=stats, validate=False)  # the default retry policy
    store = Store()
    manager = SearchManager(store, oracle)
    started = time.monotonic()
    row = await manager.wait((await manager.start(spec)).id)
    took = time.monotonic() - started
    await oracle.aclose()
    assert row.state == "failed" and "more than the search's budget" in row.error
    assert row.progress.failed > 2000 and row.progress.spent == 0  # no wrong answers
    assert stats.count("graded") == 0
    # Before the circuit: ~9,000 refused connections here (4.5 per failed query).
    assert stats.count("attempt") <= 100, stats.count("attempt")
    assert took < 20, took  # ~1 s on an idle machine; before: ~9 s


async def test_the_circuit_closes_when_the_endpoint_comes_back():
    """A restart blip: refused for a while, then served again; answers are graded again."""
    items = make_items(2, tasks=("mmlu",))
    matrix = make_matrix(items, ["org/base"])
    async with Fleet(fleet_config({"name": "ep", "model_id": "org/base"}), matrix, items) as fleet:
        url = fleet.url("ep")
        oracle = InferenceOracle(policy=FAST_RETRY)
        cand = Candidate("org/base", url)
        breaker = oracle._endpoint(cand).breaker
        for _ in range(breaker.threshold):  # as if it had refused these
            breaker.record(Admission.CONNECT, connection_failed=True)
        assert breaker.open
        await asyncio.sleep(breaker.retry_in() + 0.01)
        result = await oracle.answer(cand, items[0])
        await oracle.aclose()
    assert result.ok and not breaker.open
