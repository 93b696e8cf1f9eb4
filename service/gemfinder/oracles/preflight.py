"""Checks before a search: probe each endpoint, validate candidates against its answer.

Each backend (gemfinder.backends.registry) says how its servers are probed and how a candidate
is checked against the answer (gemfinder.backends.checks: adapter ids above all, since TGI
answers an unknown adapter id with the base model and no error). Here: the probes are bounded
and shared between searches, and every problem is gathered under its candidate's field.

An endpoint that answers none of its probes at all (connection refused, DNS, timeout; any HTTP
status counts as an answer) is unreachable: its candidates would only fail, or win on a few
answers from the evaluation cache, so the search is refused up front (`EndpointUnreachable`,
FAILED_PRECONDITION over gRPC) unless the caller allows it for this check
(`allow_unreachable`, set from SearchSpec.allow_unreachable and on resume).

Every problem names its candidate's field (`candidates[1].adapter_id`); the first one is the
error's field and `violations` lists them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import aiohttp

from gemfinder.backends.registry import backend
from gemfinder.candidates import Candidate
from gemfinder.errors import UserError
from gemfinder.oracles.answer_cap import probe_json
from gemfinder.oracles.endpoints import EndpointConfig

log = logging.getLogger(__name__)
_ALLOW_UNREACHABLE: ContextVar[bool] = ContextVar("allow_unreachable", default=False)
SHOWN = 10  # problems spelled out in the message; `violations` holds them all


class CandidateProblems(UserError):
    """Candidates that would evaluate the wrong model (INVALID_ARGUMENT). `field` and `reason`
    are the first problem's (with a summary of the others); `violations` lists every one as
    (field, reason)."""

    hint = ""  # said once after the list

    def __init__(self, violations: list[tuple[str, str]]) -> None:
        field, first = violations[0]
        others = [f"{f}: {r}" for f, r in violations[1:SHOWN]]
        more = len(violations) - SHOWN
        reason = "; ".join([first, *others]) + (f" (and {more} more)" if more > 0 else "")
        super().__init__(field, reason + self.hint)
        self.violations = violations


class EndpointUnreachable(CandidateProblems):
    """Candidates whose endpoint did not answer the pre-search check: the request is fine but
    the fleet is not ready (FAILED_PRECONDITION; a CLI error with exit status 2)."""

    kind = "failed_precondition"
    hint = (
        ". Start them, fix the URLs or leave the candidates out; or search anyway with "
        "allow_unreachable_endpoints (gemfinder search --allow-unreachable)"
    )
    precondition = "ENDPOINT_UNREACHABLE"  # google.rpc.PreconditionFailure violation type


@contextlib.contextmanager
def allow_unreachable(allowed: bool = True) -> Iterator[None]:
    """Within this block (this task and those it starts), `check_candidates` lets candidates
    on unreachable endpoints through: set for a search that asked for it, and on resume."""
    token = _ALLOW_UNREACHABLE.set(allowed)
    try:
        yield
    finally:
        _ALLOW_UNREACHABLE.reset(token)


async def _get_json(
    session: aiohttp.ClientSession, url: str, bearer: str
) -> tuple[bool, Any | None, str | None]:
    """(answered at all, JSON of a 200 or None, the transport error when it did not answer)."""
    try:
        # Never follow a redirect: it could lead past the endpoint allowlist to any host, with
        # the endpoint's token (tests/oracles/test_redirects.py). A 3xx is "answered, no JSON".
        headers = {"Authorization": f"Bearer {bearer}"}
        async with session.get(url, headers=headers, allow_redirects=False) as resp:
            if resp.status != 200:
                return True, None, None
            try:
                return True, await probe_json(resp), None
            except ValueError:
                return True, None, None
    except (TimeoutError, aiohttp.ClientError) as err:
        reason = str(err) or type(err).__name__
        log.debug("preflight: %s unavailable (%s)", url, reason)
        return False, None, reason


class Prober:
    """Probes endpoints for the pre-search check, bounded and shared.

    At most `limit` endpoints are probed at once over all the searches starting together (each
    probe is what the endpoint's backend asks, for every backend so far one GET of /info and
    one of /v1/models, concurrently, each with `timeout_s`; the wait for a slot is not part of
    it), and an endpoint is probed once at a time: a search that starts while another one's
    probe of the same endpoint (token, backend) is in flight shares its answer. A hundred
    searches starting at once on the same ten endpoints cost ten probes, not a thousand, and
    never more than `limit` connections.
    """

    def __init__(self, limit: int = 32, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(limit)
        self._inflight: dict[tuple[str, str, str], asyncio.Future[dict]] = {}

    async def probe(self, configs: list[EndpointConfig]) -> dict[str, dict]:
        """Per endpoint url, what its backend's probe found: {"info": /info JSON or None,
        "models": listed ids or None, "unreachable": None, or why nothing answered}."""
        answers = await asyncio.gather(*(self._shared(c) for c in configs))
        return {c.key: answer for c, answer in zip(configs, answers, strict=True)}

    async def _shared(self, config: EndpointConfig) -> dict:
        key = (config.key, config.bearer, config.backend)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._probe(config))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)  # one caller giving up does not cancel the others'

    async def _probe(self, config: EndpointConfig) -> dict:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with (
            self._slots,
            aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
        ):

            async def get(path: str) -> tuple[bool, Any | None, str | None]:
                return await _get_json(session, f"{config.key}{path}", config.bearer)

            return await backend(config.backend).probe(get)


def check_candidates(
    candidates: list[Candidate], configs: dict[str, EndpointConfig], probes: dict[str, dict]
) -> None:
    """Raise CandidateProblems naming every candidate that would evaluate the wrong model, or
    else EndpointUnreachable naming every candidate whose endpoint did not answer (unless
    `allow_unreachable` is in effect)."""
    allowed = _ALLOW_UNREACHABLE.get()
    problems: list[tuple[str, str]] = []
    unreachable: list[tuple[str, str]] = []
    for i, cand in enumerate(candidates):
        config = configs.get(cand.endpoint)
        where = f"candidates[{i}]"
        who = f"{cand.model_id}:"
        if config is not None and config.backend != cand.backend:
            problems.append(
                (
                    f"{where}.backend",
                    f"{who} backend {cand.backend} but endpoint is {config.backend}",
                )
            )
        probe_ = probes.get(cand.endpoint, {})
        down = probe_.get("unreachable")
        if down is not None:
            unreachable.append(
                (
                    f"{where}.endpoint",
                    f"{who} endpoint {cand.endpoint} is unreachable ({down})",
                )
            )
        for suffix, reason in backend(cand.backend).check(cand, config, probe_, not allowed):
            problems.append((f"{where}.{suffix}", reason))
    if problems:
        raise CandidateProblems(problems)
    if unreachable and not allowed:
        raise EndpointUnreachable(unreachable)
    for url in dict.fromkeys(c.endpoint for c in candidates):
        if probes.get(url, {}).get("unreachable") is not None:
            log.warning("preflight: %s is unreachable; searching anyway, as allowed", url)
