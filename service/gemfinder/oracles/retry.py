"""Retry policy (exponential backoff with full jitter), the error -> FailureKind table, and the
per-endpoint circuit breaker that stops connecting to an endpoint that keeps refusing.

huggingface_hub has no retries and no default timeout; this module owns both. Its exceptions
all derive from the HTTP library's HTTPError (httpx2 in huggingface_hub 2.x, httpx in 1.x); the
library is taken from huggingface_hub itself so the table follows whichever it uses.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

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
from gemfinder.oracles.transport import Redirected

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
    (Redirected, FailureKind.HTTP_ERROR),  # configuration, like a 404: not retried
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


def no_connection(exc: BaseException) -> bool:
    """Whether an attempt never reached the endpoint, which is what the circuit breaker counts:
    refused or reset (FailureKind.CONNECTION), or a connect timeout (a black-holed address:
    nothing answers the SYN; reported as a timeout, counted like a refusal so that such a
    fleet also fails in seconds rather than a connect timeout per attempt)."""
    if classify(exc) is FailureKind.CONNECTION:
        return True
    seen: BaseException | None = exc
    for _ in range(4):  # huggingface_hub raises InferenceTimeoutError from httpx2's timeout
        if seen is None:
            return False
        if isinstance(seen, _http.ConnectTimeout):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Admission(Enum):
    CONNECT = "connect"  # closed: attempts connect as usual
    TRIAL = "trial"  # the one attempt that tests an open circuit after its cooldown
    BLOCKED = "blocked"  # open: do not connect


class CircuitBreaker:
    """One endpoint's circuit: after `threshold` connection failures in a row, stop connecting.

    A dead fleet (every connection refused) used to be asked up to 4 times per query, every
    query of the budget (about 45,000 refused connections and 45 s of one busy core to fail a
    10,000-query search). Open, the circuit lets no attempt connect for a cooldown (0.5 s,
    doubling after each failed trial up to 5 s); then one trial attempt goes through: if it
    connects, the circuit closes, else it opens again and the endpoint counts as down.

    What a blocked attempt does is the caller's choice (InferenceOracle.answer): retry after its
    backoff while the circuit opened only once (a restart blip stays invisible), fail at once
    once a trial failed too (`down`), so that a search against a dead fleet fails in seconds.
    Only connection failures count: an endpoint that answers, even with an error, is up.
    """

    def __init__(
        self,
        threshold: int = 5,
        cooldown_s: float = 0.5,
        max_cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base_cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self._clock = clock
        self._failures = 0  # connection failures in a row
        self._cooldown = cooldown_s
        self._open_until = 0.0
        self._trial = False  # a trial attempt is in flight
        self.down = False  # a trial failed since the last connection that worked

    @property
    def open(self) -> bool:
        return self._failures >= self.threshold

    def retry_in(self) -> float:
        """Seconds until the next trial may connect (0 when closed or due)."""
        return max(0.0, self._open_until - self._clock()) if self.open else 0.0

    def admit(self) -> Admission:
        if not self.open:
            return Admission.CONNECT
        if self._trial or self._clock() < self._open_until:
            return Admission.BLOCKED
        self._trial = True
        return Admission.TRIAL

    def abandon(self, admission: Admission) -> None:
        """An admitted attempt ended without an outcome (cancelled)."""
        if admission is Admission.TRIAL:
            self._trial = False

    def record(self, admission: Admission, connection_failed: bool) -> None:
        """The outcome of an admitted attempt: did it fail to connect (FailureKind.CONNECTION)?"""
        if admission is Admission.TRIAL:
            self._trial = False
        if not connection_failed:
            self._failures = 0
            self._cooldown = self.base_cooldown_s
            self.down = False
            return
        self._failures += 1
        if admission is Admission.TRIAL:
            self.down = True
            self._cooldown = min(self._cooldown * 2, self.max_cooldown_s)
            self._open_until = self._clock() + self._cooldown
        elif self._failures == self.threshold:
            self._open_until = self._clock() + self._cooldown
