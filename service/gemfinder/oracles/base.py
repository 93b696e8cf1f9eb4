"""What every oracle returns: a graded 0/1 with its evidence, or a failure that is never a 0.

The search runner only sees `Oracle.answer(candidate, item) -> OracleResult`. A failure
(endpoint down, overloaded after all retries, garbage) must be told to the scheduler as a
failure, never as reward 0, or a flaky endpoint would look like a bad model.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from gemfinder.candidates import Candidate
from gemfinder.oracles.endpoints import url_scope
from gemfinder.tasks import Item


class FailureKind(StrEnum):
    OVERLOADED = "overloaded"  # 429: TGI's concurrency limit, rejected at once
    SERVER_ERROR = "server_error"  # other 5xx (a proxy's 503, an unknown TGI error)
    GENERATION = "generation"  # 424
    INCOMPLETE = "incomplete_generation"  # 500 from TGI
    TIMEOUT = "timeout"
    CONNECTION = "connection"  # refused, reset: e.g. a TGI still loading its model
    GARBAGE = "garbage"  # a 200 whose body is not the API's JSON
    VALIDATION = "validation"  # 422: our request is wrong; retrying will not help
    HTTP_ERROR = "http_error"  # other 4xx (401, 404, ...): configuration, not transient
    TOO_LARGE = "too_large"  # an answer over --max-answer-bytes (oracles.answer_cap)
    GRADING = "grading"  # the grader itself failed (not the model's fault, not a 0)
    # Grading the answer ran past its time limit (oracles.grading_pool): not a 0, not a 1
    GRADING_TIMEOUT = "grading_timeout"
    WORKER_LOST = "worker_lost"  # the oracle worker process holding the pull ended (workers.py)
    UNEXPECTED = "unexpected"  # a bug in the client path; logged with its traceback


RETRYABLE = frozenset(
    {
        FailureKind.OVERLOADED,
        FailureKind.SERVER_ERROR,
        FailureKind.GENERATION,
        FailureKind.INCOMPLETE,
        FailureKind.TIMEOUT,
        FailureKind.CONNECTION,
        FailureKind.GARBAGE,
    }
)


@dataclass(frozen=True)
class OracleResult:
    """One pull. `reward` is 0/1 when graded and None when the pull failed (`failure` set)."""

    model_id: str
    item_id: str
    reward: int | None
    failure: FailureKind | None = None
    response: str | None = None
    extracted: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0  # wall time of the whole pull, retries and grading included
    # The answered request alone, sent to received (no retries, no grading, no wait for a slot
    # of ours): the query's service time where the cost model measures it (search.serving_cost).
    service_s: float | None = None
    attempts: int = 1
    error: str | None = None  # the last error message when failed

    @property
    def ok(self) -> bool:
        return self.failure is None


class Oracle(Protocol):
    async def prepare(self, candidates: list[Candidate]) -> None:
        """Check the candidates before a search (adapter ids, reachability); size pools."""

    async def release(self, candidates: list[Candidate]) -> None:
        """The search `prepare` was called for ended: forget what only it needed."""

    async def answer(
        self, candidate: Candidate, item: Item, *, system_prompt: bool = False
    ) -> OracleResult:
        """Ask one model one item; `system_prompt` selects the prompt variant (per search)."""

    async def aclose(self) -> None: ...

    # Optional (answer_scope falls back to the URL):
    # def cache_scope(self, endpoint: str) -> str:
    #     """Who produces this endpoint's answers, as the evaluation cache keys them."""


def answer_scope(oracle: object, endpoint: str) -> str:
    """The cache scope of `endpoint` under `oracle`: the oracle's `cache_scope` when it has one,
    else the URL itself, so that answers are shared with no other endpoint."""
    scope = getattr(oracle, "cache_scope", None)
    return scope(endpoint) if scope is not None else url_scope(endpoint)
