"""Hostile answers: over --max-answer-bytes reading stops at the cap and the pull fails as
`too_large` (never a wrong answer, not retried); compressed or deeply nested answers are
garbage; probe answers are read up to 1 MiB and bounded in depth."""

from __future__ import annotations

import pytest
from gemfinder.candidates import Candidate
from gemfinder.oracles import EndpointConfig, FailureKind, InferenceOracle, RetryPolicy
from gemfinder.oracles.preflight import Prober
from gemfinder.tasks import Item
from hostile_endpoint import HostileEndpoint

ITEM = Item("g1", "gsm8k", {"question": "3 + 4?", "answer": "#### 7"})
CAP = 256 * 1024
POLICY = RetryPolicy(max_attempts=3, backoff_base_s=0.001, backoff_max_s=0.005, timeout_s=30)


async def _answer(endpoint: HostileEndpoint, backend: str = "tgi"):
    oracle = InferenceOracle(policy=POLICY, max_answer_bytes=CAP)
    try:
        candidate = Candidate("org/base", endpoint.url, backend=backend)
        return await oracle.answer(candidate, ITEM), oracle
    finally:
        await oracle.aclose()


@pytest.mark.parametrize(
    ("mode", "backend"),
    [
        ("stream", "tgi"),
        ("declared", "tgi"),
        ("stream", "openai"),
        ("stream", "openai_completions"),
    ],
)
async def test_a_100_mb_answer_is_a_too_large_failure(mode, backend):
    async with HostileEndpoint(100 * 1024 * 1024, mode=mode) as endpoint:
        result, oracle = await _answer(endpoint, backend)
    assert result.reward is None and result.failure is FailureKind.TOO_LARGE
    assert "--max-answer-bytes" in result.error and str(CAP) in result.error
    assert result.attempts == 1 and endpoint.requests == 1  # the same answer again: no retry
    assert oracle.stats.count("pull_failed", FailureKind.TOO_LARGE) == 1
    # Reading stopped near the cap: what got out of the endpoint is the cap plus socket buffers.
    assert endpoint.sent < 16 * 1024 * 1024, endpoint.sent


async def test_a_compressed_answer_is_garbage_not_inflated():
    async with HostileEndpoint(50 * 1024 * 1024, mode="gzip") as endpoint:
        result, _ = await _answer(endpoint)
    assert result.reward is None and result.failure is FailureKind.GARBAGE
    assert "compressed" in result.error


async def test_an_answer_under_the_cap_is_graded():
    async with HostileEndpoint(CAP - 1) as endpoint:
        result, _ = await _answer(endpoint)
    # A long answer of digits: graded (wrong), not a failure.
    assert result.ok and result.reward == 0, result.error


async def test_an_answer_nested_100000_deep_is_garbage():
    async with HostileEndpoint(100_000, mode="deep") as endpoint:
        result, _ = await _answer(endpoint)
    assert result.reward is None and result.failure is FailureKind.GARBAGE


@pytest.mark.parametrize(
    "body", [b"[" * 100_000 + b"]" * 100_000, b'{"model_id": "' + b"x" * (5 * 1024 * 1024) + b'"}']
)
async def test_hostile_probe_answers_are_no_information(body):
    """/info and /v1/models nested 100,000 deep or of 5 MB: the probe reads at most 1 MiB and
    takes them for no answer (the endpoint did answer, so it is reachable), never an error."""
    async with HostileEndpoint(10, probe_body=body) as endpoint:
        probes = await Prober().probe([EndpointConfig(endpoint.url)])
    assert probes[endpoint.url] == {"info": None, "models": None, "unreachable": None}
