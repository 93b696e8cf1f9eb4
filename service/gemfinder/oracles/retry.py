"""Retry policy (exponential backoff with full jitter) and the error -> FailureKind table.

huggingface_hub has no retries and no default timeout; this module owns both. Its exceptions
all derive from the HTTP library's HTTPError (httpx2 in huggingface_hub 2.x, httpx in 1.x); the
library is taken from huggingface_hub itself so the table follows whichever it uses.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import random
from dataclasses import dataclass

from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    HTTPError,
    IncompleteGenerationError,
    InferenceTimeoutError,
    OverloadedError,
    UnknownError,
    ValidationError,
)

from gemfinder.oracles.answer_cap import AnswerTooLarge
from gemfinder.oracles.base import FailureKind

_http = importlib.import_module(HTTPError.__module__.split(".")[0])


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0
    timeout_s: float = 120.0  # one attempt, end to end; the HTTP client gets the same timeout
    connect_timeout_s: float = 5.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^(attempt-1))] (attempt counts from 1)."""
        return rng.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)))


def _from_status(status: int) -> FailureKind:
    if status == 429:
        return FailureKind.OVERLOADED
    if status == 424:
        return FailureKind.GENERATION
    if status == 422:
        return FailureKind.VALIDATION
    if status >= 500:
        return FailureKind.SERVER_ERROR
    return FailureKind.HTTP_ERROR


# Checked in order: the TGI-specific errors subclass HTTPError, timeouts before transport errors.
_TABLE: list[tuple[type[BaseException] | tuple[type[BaseException], ...], FailureKind]] = [
    (AnswerTooLarge, FailureKind.TOO_LARGE),
    (OverloadedError, FailureKind.OVERLOADED),
    (GenerationError, FailureKind.GENERATION),
    (IncompleteGenerationError, FailureKind.INCOMPLETE),
    (ValidationError, FailureKind.VALIDATION),
    (UnknownError, FailureKind.SERVER_ERROR),
    ((InferenceTimeoutError, _http.TimeoutException, TimeoutError), FailureKind.TIMEOUT),
    ((_http.TransportError, ConnectionError), FailureKind.CONNECTION),
    ((json.JSONDecodeError, UnicodeDecodeError, _http.DecodingError), FailureKind.GARBAGE),
    # RecursionError: JSON nested too deep for the parser (a 100,000-deep answer).
    (
        (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError),
        FailureKind.GARBAGE,
    ),
]


def classify(exc: BaseException) -> FailureKind:
    """The failure kind of an exception raised while calling an endpoint."""
    if isinstance(exc, asyncio.CancelledError):
        raise exc
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return _from_status(exc.response.status_code)
    for types, kind in _TABLE:
        if isinstance(exc, types):
            return kind
    return FailureKind.UNEXPECTED
