"""What a backend is: one entry of the registry (gemfinder.backends.registry), and the values
passed to and returned by its functions.

A backend is a way of calling an inference server: how to build a client for an endpoint, the
request one query sends, how the pre-search probe learns that the server is up and what it
serves, and how a candidate is checked against that. Entries hold functions, not subclasses, so
one line of the registry says everything about a backend.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gemfinder.candidates import Candidate
    from gemfinder.oracles.endpoints import EndpointConfig
    from gemfinder.tasks import GenerationSettings, Prompt


# A query that wants the headers of its answer (TGI's token counts) sets a dict here; the
# transport under the clients (gemfinder.oracles.transport) fills it. Per task, like the call.
RESPONSE_HEADERS: ContextVar[dict[str, str] | None] = ContextVar("response_headers", default=None)


@dataclass(frozen=True)
class Completion:
    """One answer: its text and the token counts the server reported (None: not reported)."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    # Multiple-choice items: the log-likelihood of each request's continuation given its
    # context, in the item's order (the text is then these numbers, for the record).
    loglikelihoods: tuple[float, ...] | None = None
    # Seconds from sending the request to its answer (set by the oracle that timed it).
    service_s: float | None = None


@dataclass(frozen=True)
class Call:
    """One query as every backend sees it; each sends the parts its protocol has."""

    url: str  # the endpoint's base URL (no route)
    model: str  # the name that selects the model: adapter id, served_model, else the model id
    adapter_id: str | None  # the LoRA adapter, for protocols that name it apart (TGI)
    prompt: Prompt
    generation: GenerationSettings
    # Multiple-choice items: lm-eval's [context, continuation] pairs, one per choice; the
    # backend's `loglikelihood` scores each (prompt and generation are then unused).
    requests: tuple[tuple[str, str], ...] = ()


class Client(Protocol):
    async def close(self) -> None: ...


# (base URL, bearer token, timeout in s) -> a client, whose HTTP goes through huggingface_hub's
# async client factory (answers read through the byte cap: gemfinder.oracles.transport)
Connect = Callable[[str, str, float], Client]
Query = Callable[[Any, Call], Awaitable[Completion]]
# The log-likelihood of one continuation given its context: (client, call, context,
# continuation) -> (log-likelihood, prompt tokens the server read or None)
LogLikelihood = Callable[[Any, Call, str, str], Awaitable[tuple[float, int | None]]]
# GET one path of the endpoint: (answered at all, JSON of a 200 or None, why it did not answer)
Get = Callable[[str], Awaitable[tuple[bool, Any, str | None]]]
# Reads the endpoint with `Get`: {"info": /info JSON or None, "models": listed ids or None,
# "unreachable": None, or why the server did not answer at all}
Probe = Callable[[Get], Awaitable[dict]]
# (candidate, its endpoint's settings or None, the probe's answer, whether an unreachable
# endpoint refuses the search) -> the problems found, as (field under the candidate, reason)
Check = Callable[["Candidate", "EndpointConfig | None", dict, bool], list[tuple[str, str]]]


@dataclass(frozen=True)
class Backend:
    enum: int  # its gemfinder.v1.Backend value: the registry's key
    name: str  # short name: CLI choices, older candidates files; the enum name is BACKEND_ + it
    route: str  # the path a query is sent to, below the endpoint's base URL
    summary: str  # a few words for help texts: what it sends, for which models
    connect: Connect
    query: Query
    probe: Probe
    check: Check
    # None: the protocol gives no log-likelihoods of a given text (chat), so multiple-choice
    # lm_eval items are refused for its candidates before a search (SearchSpec.validate).
    loglikelihood: LogLikelihood | None = None

    @property
    def enum_name(self) -> str:
        return f"BACKEND_{self.name.upper()}"
