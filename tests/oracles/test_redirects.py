"""An allowed endpoint that answers with a redirect must not lead gemfinder anywhere else.

The endpoint allowlist checks the URLs a caller names; a redirect is the endpoint naming another
URL after the check. Followed, it would send the query (and the endpoint's bearer token) to any
host: a cloud metadata service, the store, another tenant. The target here is a listener that
counts connections: it must see none, and the query must end as an endpoint failure, never as a
graded (wrong) answer.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from gemfinder.backends import tgi
from gemfinder.backends.base import Call
from gemfinder.candidates import Candidate
from gemfinder.oracles import FailureKind, InferenceOracle, RetryPolicy
from gemfinder.oracles.endpoints import EndpointConfig
from gemfinder.oracles.preflight import Prober
from gemfinder.oracles.transport import Redirected
from gemfinder.tasks import GenerationSettings, Item, Prompt

ITEM = Item("g1", "gsm8k", {"question": "3 + 4?", "answer": "#### 7"})
POLICY = RetryPolicy(max_attempts=2, backoff_base_s=0.001, backoff_max_s=0.002, timeout_s=10)


def redirecting(raw_server, location: str, status: int):
    """A reply to every request: `status` to `location`, with a right answer as its body (to be
    graded as one, should a client read it)."""
    body = b'{"generated_text": "#### 7"}'
    answer = raw_server.response(f"{status} Redirect", body, f"Location: {location}\r\n")
    return lambda head, request_body: answer


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirected_query_is_a_failure_and_reaches_no_other_host(
    listener, raw_server, status
):
    target = listener()
    server = await raw_server(redirecting(raw_server, f"{target.url}/generate", status))
    oracle = InferenceOracle(policy=POLICY)
    try:
        result = await oracle.answer(Candidate("org/base", server.url), ITEM)
    finally:
        await oracle.aclose()
    await asyncio.sleep(0.1)  # a follow-up connection would have been made by now
    assert server.requests, "the endpoint was asked"
    assert target.connections == 0
    assert result.reward is None and result.failure is FailureKind.HTTP_ERROR, result
    assert "redirects are not followed" in result.error and result.attempts == 1


async def test_the_pre_search_probe_follows_no_redirect(listener, raw_server):
    target = listener()
    server = await raw_server(redirecting(raw_server, f"{target.url}/info", 307))
    config = EndpointConfig(url=server.url, token="operator-secret")
    probes = await Prober(timeout_s=5).probe([config])
    await asyncio.sleep(0.1)
    assert len(server.requests) >= 1 and target.connections == 0
    answer = probes[server.url]
    assert answer["unreachable"] is None and answer["info"] is None  # answered, no JSON


async def test_the_tokenize_fallback_follows_no_redirect(listener, raw_server):
    """TGI log-likelihoods ask POST /tokenize when the prefill texts do not spell the input
    (SentencePiece): that request, on a session of its own, must not follow a redirect either,
    nor carry the endpoint's token anywhere else."""
    target = listener()
    prefill = [{"id": 1, "text": "<s>", "logprob": None}] + [
        {"id": 3 + k, "text": piece, "logprob": -1.0}  # no leading spaces: they do not spell it
        for k, piece in enumerate(["Q:", "sky?", "\n", "A:", "blue"])
    ]
    tokens = [{"id": 9, "text": "\n", "logprob": -0.3, "special": False}]
    details = {"finish_reason": "length", "generated_tokens": 1, "prefill": prefill,
               "tokens": tokens}  # fmt: skip
    generated = json.dumps({"generated_text": "\n", "details": details}).encode()

    def reply(head: bytes, body: bytes) -> bytes:
        if head.startswith(b"POST /tokenize "):
            where = f"Location: {target.url}/tokenize\r\n"
            return raw_server.response("307 Redirect", b"[]", where)
        return raw_server.response("200 OK", generated)

    server = await raw_server(reply)
    client = tgi.connect(server.url, "operator-secret", 5.0)
    call = Call(server.url, "org/base", None, Prompt("", []), GenerationSettings(1))
    try:
        with pytest.raises(Redirected, match="POST /tokenize answered 307"):
            await tgi.loglikelihood(client, call, "Q: sky?\nA:", " blue")
    finally:
        await client.close()
    await asyncio.sleep(0.1)  # a follow-up connection would have been made by now
    assert server.paths() == ["/generate", "/tokenize"] and target.connections == 0
    assert all(b"authorization: bearer operator-secret" in h.lower() for h in server.requests)
