"""The transport under huggingface_hub's clients (gemfinder.oracles.transport): installed through
the library's client factory, each oracle's own byte cap, httpx2's exception types for broken
connections (so a cut answer is a retried connection failure, never a wrong answer)."""

from __future__ import annotations

import asyncio

from gemfinder.candidates import Candidate
from gemfinder.oracles import FailureKind, InferenceOracle, RetryPolicy
from gemfinder.oracles.transport import AiohttpTransport, install, ssl_context
from gemfinder.tasks import Item
from hostile_endpoint import HostileEndpoint

ITEM = Item("g1", "gsm8k", {"question": "3 + 4?", "answer": "#### 7"})
POLICY = RetryPolicy(max_attempts=2, backoff_base_s=0.001, backoff_max_s=0.002, timeout_s=10)


def test_huggingface_hub_clients_get_the_capped_transport():
    from huggingface_hub import get_async_session

    install()
    client = get_async_session()
    assert isinstance(client._transport, AiohttpTransport)  # noqa: SLF001
    assert client._trust_env is False  # noqa: SLF001 - no proxy transports (nor their SSL)
    assert ssl_context() is ssl_context()  # one per process


async def test_each_oracle_reads_through_its_own_cap():
    """Two oracles in one process (say, two servers in a test) share the library's factory;
    each still reads through its own --max-answer-bytes."""
    async with HostileEndpoint(200 * 1024) as endpoint:
        candidate = Candidate("org/base", endpoint.url)
        small = InferenceOracle(policy=POLICY, max_answer_bytes=100 * 1024)
        large = InferenceOracle(policy=POLICY, max_answer_bytes=400 * 1024)
        try:
            refused, read = await asyncio.gather(
                small.answer(candidate, ITEM), large.answer(candidate, ITEM)
            )
        finally:
            await small.aclose()
            await large.aclose()
    assert refused.failure is FailureKind.TOO_LARGE and str(100 * 1024) in refused.error
    assert read.ok and read.reward == 0  # 200 KB of digits: graded, wrong


async def test_an_answer_cut_short_is_a_connection_failure_and_retried(raw_server):
    # 1000 bytes declared, a right answer's first 27 sent, then the connection closed
    cut = raw_server.response("200 OK", b'{"generated_text": "#### 7"', length=1000)
    server = await raw_server(lambda head, body: cut)
    oracle = InferenceOracle(policy=POLICY)
    try:
        result = await oracle.answer(Candidate("org/base", server.url), ITEM)
    finally:
        await oracle.aclose()
    assert result.reward is None and result.failure is FailureKind.CONNECTION, result
    assert result.attempts == 2 and len(server.requests) == 2


async def test_a_refused_connection_is_a_connection_failure():
    oracle = InferenceOracle(policy=POLICY)
    try:
        result = await oracle.answer(Candidate("org/base", "http://127.0.0.1:9"), ITEM)
    finally:
        await oracle.aclose()
    assert result.reward is None and result.failure is FailureKind.CONNECTION
    assert "ConnectError" in result.error
