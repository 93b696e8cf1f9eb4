"""Endpoint faults become retries, then failed pulls, never rewards; every event is counted."""

from __future__ import annotations

import asyncio

import pytest
from fleet_support import FAST_RETRY, fleet_config, make_items, make_matrix
from gemfinder.candidates import Candidate
from gemfinder.oracles import (
    PLACEHOLDER_TOKEN,
    EndpointConfig,
    FailureKind,
    InferenceOracle,
    OracleStats,
    RetryPolicy,
)
from gemfinder.sim.fleet import Fleet
from gemfinder.tasks import get_task
from huggingface_hub import AsyncInferenceClient

KINDS = {
    "429": FailureKind.OVERLOADED,
    "503": FailureKind.SERVER_ERROR,
    "424": FailureKind.GENERATION,
    "500": FailureKind.INCOMPLETE,
    "garbage": FailureKind.GARBAGE,
    "timeout": FailureKind.TIMEOUT,
}


@pytest.fixture(scope="module")
def pool():
    items = make_items(2, tasks=("mmlu", "gsm8k"))
    return items, make_matrix(items, ["org/base"])


def _endpoint(name: str, **extra) -> dict:
    return {"name": name, "model_id": "org/base", "hang_s": 3.0, **extra}


@pytest.mark.parametrize("fault", sorted(KINDS))
async def test_persistent_fault_fails_the_pull_after_retries(pool, fault):
    items, matrix = pool
    config = fleet_config(_endpoint("ep", faults={fault: 1.0}))
    policy = RetryPolicy(max_attempts=3, backoff_base_s=0.001, backoff_max_s=0.005, timeout_s=0.3)
    async with Fleet(config, matrix, items) as fleet:
        cand = Candidate("org/base", fleet.url("ep"))
        oracle = InferenceOracle(policy=policy)
        result = await oracle.answer(cand, items[0])
        await oracle.aclose()
        served = fleet.state("ep").requests["/generate"]
    kind = KINDS[fault]
    assert result.reward is None and not result.ok
    assert result.failure is kind and result.attempts == 3
    assert served == 3  # every attempt reached the endpoint
    stats = oracle.stats
    assert stats.count("attempt_failed", kind) == 3
    assert stats.count("retry", kind) == 2
    assert stats.count("pull_failed", kind) == 1
    assert stats.count("graded") == 0


async def test_refused_connection_is_a_failed_pull(pool):
    items, matrix = pool
    config = fleet_config(_endpoint("up"), _endpoint("down", down=True))
    async with Fleet(config, matrix, items) as fleet:
        oracle = InferenceOracle(policy=FAST_RETRY)
        result = await oracle.answer(Candidate("org/base", fleet.url("down")), items[0])
        assert result.failure is FailureKind.CONNECTION and result.reward is None
        assert oracle.stats.count("attempt_failed", FailureKind.CONNECTION) == 3
        # The model finishes loading: the same endpoint now answers.
        await fleet.set_down("down", False)
        result = await oracle.answer(Candidate("org/base", fleet.url("down")), items[0])
        await oracle.aclose()
    assert result.ok and result.reward in (0, 1)


async def test_validation_error_is_not_retried(pool):
    items, matrix = pool
    config = fleet_config(_endpoint("ep", fault_script=["422"]))
    async with Fleet(config, matrix, items) as fleet:
        oracle = InferenceOracle(policy=FAST_RETRY)
        result = await oracle.answer(Candidate("org/base", fleet.url("ep")), items[0])
        await oracle.aclose()
    assert result.failure is FailureKind.VALIDATION and result.attempts == 1
    assert oracle.stats.count("retry") == 0


async def test_transient_faults_are_retried_to_a_graded_answer(pool):
    items, matrix = pool
    config = fleet_config(_endpoint("ep", fault_script=["429", "garbage", "503"]))
    async with Fleet(config, matrix, items) as fleet:
        oracle = InferenceOracle(policy=RetryPolicy(max_attempts=4, backoff_base_s=0.001))
        result = await oracle.answer(Candidate("org/base", fleet.url("ep")), items[0])
        await oracle.aclose()
    assert result.ok and result.attempts == 4
    assert result.reward == int(matrix.correct[0, 0])
    assert oracle.stats.count("retry") == 3
    for kind in (FailureKind.OVERLOADED, FailureKind.GARBAGE, FailureKind.SERVER_ERROR):
        assert oracle.stats.count("retry", kind) == 1


async def test_random_faults_never_turn_into_rewards(pool):
    items, matrix = pool
    faults = {"429": 0.15, "503": 0.1, "424": 0.1, "500": 0.05, "garbage": 0.1}
    config = fleet_config(_endpoint("ep", faults=faults), seed=3)
    seen = []
    stats = OracleStats()
    stats.add_hook(lambda event, kind: seen.append((event, kind)))
    async with Fleet(config, matrix, items) as fleet:
        oracle = InferenceOracle(policy=FAST_RETRY, stats=stats)
        cand = Candidate("org/base", fleet.url("ep"))
        results = await asyncio.gather(*(oracle.answer(cand, it) for it in items * 10))
        await oracle.aclose()
        state = fleet.state("ep")
    graded = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    assert failed and graded  # at 50% faults per attempt, both outcomes occur
    for r in graded:
        assert r.reward == int(matrix.correct[0, matrix.items.index(r.item_id)])
    assert all(r.reward is None for r in failed)
    assert stats.count("pull") == len(results)
    assert stats.count("pull_failed") == len(failed)
    assert stats.count("attempt") == state.requests["/generate"]
    assert stats.count("attempt_failed") == sum(state.faults.values())
    assert len(seen) == sum(stats.events.values())  # the hook saw every event


async def test_concurrency_is_sized_from_info_so_the_server_never_overloads(pool):
    items, matrix = pool
    config = fleet_config(
        _endpoint("ep", max_concurrent_requests=2, latency={"median_s": 0.02, "sigma": 0.0})
    )
    async with Fleet(config, matrix, items) as fleet:
        cand = Candidate("org/base", fleet.url("ep"))
        oracle = InferenceOracle(policy=FAST_RETRY)
        await oracle.prepare([cand])
        assert oracle.concurrency(cand.endpoint) == 2
        results = await asyncio.gather(*(oracle.answer(cand, it) for it in items * 6))
        await oracle.aclose()
        assert fleet.state("ep").statuses[429] == 0
    assert all(r.ok for r in results)


async def test_too_much_concurrency_gets_429_at_once_and_retries(pool):
    items, matrix = pool
    config = fleet_config(
        _endpoint("ep", max_concurrent_requests=2, latency={"median_s": 0.03, "sigma": 0.0})
    )
    async with Fleet(config, matrix, items) as fleet:
        cand = Candidate("org/base", fleet.url("ep"))
        endpoint = EndpointConfig(cand.endpoint, max_concurrency=8)
        policy = RetryPolicy(max_attempts=8, backoff_base_s=0.02, backoff_max_s=0.1)
        oracle = InferenceOracle([endpoint], policy=policy)
        results = await asyncio.gather(*(oracle.answer(cand, it) for it in items * 2))
        await oracle.aclose()
        rejected = fleet.state("ep").statuses[429]
    assert rejected > 0
    assert oracle.stats.count("attempt_failed", FailureKind.OVERLOADED) == rejected
    assert all(r.ok for r in results)


async def test_local_hf_token_is_never_sent(pool, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_local_secret_that_must_not_leak")
    items, matrix = pool
    config = fleet_config(_endpoint("a"), _endpoint("b"))
    async with Fleet(config, matrix, items) as fleet:
        a, b = Candidate("org/base", fleet.url("a")), Candidate("org/base", fleet.url("b"))
        oracle = InferenceOracle([EndpointConfig(a.endpoint, token="endpoint-a-token")])
        for cand in (a, b):
            assert (await oracle.answer(cand, items[0])).ok
        await oracle.aclose()
        assert set(fleet.state("a").authorization) == {"Bearer endpoint-a-token"}
        assert set(fleet.state("b").authorization) == {f"Bearer {PLACEHOLDER_TOKEN}"}
        # Control: a client left to its defaults does send the local token. (A prompt of the
        # query set: the fleet answers no other prompt.)
        prompt = get_task(items[0].task).build_prompt(items[0], False).text
        async with AsyncInferenceClient(timeout=5) as client:
            await client.text_generation(prompt, model=f"{b.endpoint}/generate", max_new_tokens=2)
        assert "Bearer hf_local_secret_that_must_not_leak" in fleet.state("b").authorization
