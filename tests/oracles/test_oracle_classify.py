"""The error -> FailureKind table, and the backoff bounds, as tables."""

from __future__ import annotations

import json
import random

import pytest
from gemfinder.oracles import RETRYABLE, FailureKind, RetryPolicy, classify
from gemfinder.oracles.retry import _http
from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    IncompleteGenerationError,
    InferenceTimeoutError,
    OverloadedError,
    ValidationError,
)


def _status(code: int) -> HfHubHTTPError:
    request = _http.Request("POST", "http://127.0.0.1:1/generate")
    return HfHubHTTPError(f"{code}", response=_http.Response(code, request=request))


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (OverloadedError("Model is overloaded"), FailureKind.OVERLOADED),
        (GenerationError("x"), FailureKind.GENERATION),
        (IncompleteGenerationError("x"), FailureKind.INCOMPLETE),
        (ValidationError("x"), FailureKind.VALIDATION),
        (_status(429), FailureKind.OVERLOADED),
        (_status(424), FailureKind.GENERATION),
        (_status(422), FailureKind.VALIDATION),
        (_status(503), FailureKind.SERVER_ERROR),
        (_status(502), FailureKind.SERVER_ERROR),
        (_status(404), FailureKind.HTTP_ERROR),
        (_status(401), FailureKind.HTTP_ERROR),
        (InferenceTimeoutError("slow"), FailureKind.TIMEOUT),
        (TimeoutError(), FailureKind.TIMEOUT),
        (_http.ConnectError("refused"), FailureKind.CONNECTION),
        (_http.RemoteProtocolError("reset"), FailureKind.CONNECTION),
        (ConnectionRefusedError(), FailureKind.CONNECTION),
        (json.JSONDecodeError("bad", "<html>", 0), FailureKind.GARBAGE),
        (KeyError("generated_text"), FailureKind.GARBAGE),
        (RuntimeError("bug"), FailureKind.UNEXPECTED),
    ],
)
def test_classify(exc, kind):
    assert classify(exc) is kind


def test_only_transient_kinds_are_retried():
    assert FailureKind.VALIDATION not in RETRYABLE
    assert FailureKind.HTTP_ERROR not in RETRYABLE
    assert FailureKind.UNEXPECTED not in RETRYABLE
    assert {FailureKind.OVERLOADED, FailureKind.TIMEOUT, FailureKind.CONNECTION} <= RETRYABLE


def test_backoff_is_full_jitter_capped():
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=4.0)
    rng = random.Random(0)
    for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        waits = [policy.backoff(attempt, rng) for _ in range(200)]
        assert 0.0 <= min(waits) and max(waits) <= cap and max(waits) > 0.8 * cap
