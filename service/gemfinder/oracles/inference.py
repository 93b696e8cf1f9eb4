"""The oracle for live endpoints: prompt, call through the endpoint's backend
(gemfinder.backends.registry), retry, grade off the loop.

Per endpoint: one client its backend builds, with an explicit token and timeout, and a semaphore
sized from the user's setting or `/info` `max_concurrent_requests` (capped, since other
clients share the server). A slot is held for one attempt only, never across a backoff sleep.
Answers are read through a byte cap (oracles.answer_cap, in the transport oracles.transport).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from gemfinder.backends.base import Call, Completion
from gemfinder.backends.errors import add_server_message
from gemfinder.backends.registry import backend
from gemfinder.candidates import Candidate
from gemfinder.lora_leases import LoraLeases
from gemfinder.oracles.answer_cap import DEFAULT_MAX_ANSWER_BYTES
from gemfinder.oracles.base import RETRYABLE, FailureKind, OracleResult
from gemfinder.oracles.client_cache import DEFAULT_MAX_IDLE, ClientCache, identity
from gemfinder.oracles.endpoints import EndpointConfig
from gemfinder.oracles.grading_pool import DEFAULT_SIZE as DEFAULT_GRADING_WORKERS
from gemfinder.oracles.grading_pool import DEFAULT_TIMEOUT_S as DEFAULT_GRADING_TIMEOUT_S
from gemfinder.oracles.grading_pool import GradingError, GradingPool, GradingTimeout
from gemfinder.oracles.lora_runtime import RuntimeAdapters
from gemfinder.oracles.preflight import Prober, check_candidates
from gemfinder.oracles.retry import (
    Admission,
    CircuitBreaker,
    RetryPolicy,
    classify,
    no_connection,
)
from gemfinder.oracles.stats import OracleStats
from gemfinder.oracles.transport import CONNECT_TIMEOUT_S, MAX_ANSWER_BYTES
from gemfinder.tasks import Grade, Item, Task, get_task

log = logging.getLogger(__name__)
# vLLM's 404 for a model name it does not know (an adapter unregistered under us).
_GONE = "does not exist"


class _Endpoint:
    def __init__(
        self, config: EndpointConfig, limit: int, policy: RetryPolicy, clients: ClientCache
    ) -> None:
        """`clients` (a ClientCache): where the client of a former search on an endpoint of
        the same identity waits, taken instead of building one."""
        self.config = config
        self.limit = limit
        self.semaphore = asyncio.Semaphore(limit)
        self.breaker = CircuitBreaker()
        self.backend = backend(config.backend)
        self.identity = identity(config, policy.timeout_s)
        client = clients.take(self.identity)
        if client is None:
            client = self.backend.connect(config.key, config.bearer, policy.timeout_s)
        self.client = client


class InferenceOracle:
    def __init__(
        self,
        endpoints: Iterable[EndpointConfig] = (),
        *,
        policy: RetryPolicy | None = None,
        stats: OracleStats | None = None,
        concurrency_cap: int = 32,
        default_concurrency: int = 8,
        validate: bool = True,
        seed: int | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        probe_concurrency: int = 32,
        grading_timeout_s: float = DEFAULT_GRADING_TIMEOUT_S,
        grading_workers: int = DEFAULT_GRADING_WORKERS,
        idle_clients: int = DEFAULT_MAX_IDLE,
    ) -> None:
        self.max_answer_bytes = max_answer_bytes
        # Graders not known to be linear run there, under a time limit (started on first use).
        self.grading = GradingPool(grading_workers, grading_timeout_s)
        self.configs = {c.key: c for c in endpoints}
        self.policy = policy or RetryPolicy()
        self.stats = stats or OracleStats()
        self.concurrency_cap = concurrency_cap
        self.default_concurrency = default_concurrency
        self.validate = validate
        self._rng = random.Random(seed)
        self._endpoints: dict[str, _Endpoint] = {}
        # Clients of forgotten endpoints, for the next search on the same endpoint (`release`).
        self.clients = ClientCache(idle_clients)
        self.prober = Prober(limit=probe_concurrency, timeout_s=min(self.policy.timeout_s, 10.0))
        self._users: Counter[str] = Counter()  # searches prepared on each endpoint, not released
        self.runtime_adapters = RuntimeAdapters(self.policy.timeout_s)

    async def prepare(self, candidates: list[Candidate]) -> None:
        """Probe every endpoint once, validate candidates (adapter ids!), size the pools.
        Each call is matched by a `release` of the same candidates when the search ends."""
        configs = dict(self.configs)  # plus the request's own endpoints, for this search only
        for cand in candidates:
            configs.setdefault(cand.endpoint, EndpointConfig(cand.endpoint, cand.backend))
        used = [configs[url] for url in dict.fromkeys(c.endpoint for c in candidates)]
        probes = await self.prober.probe(used)
        if self.validate:
            check_candidates(candidates, configs, probes)
        for config in used:
            info = probes[config.key]["info"] or {}
            limit = config.max_concurrency
            if limit is None and isinstance(info.get("max_concurrent_requests"), int):
                limit = max(1, min(info["max_concurrent_requests"], self.concurrency_cap))
            self._add(config, limit or self.default_concurrency)
            self._users[config.key] += 1

    async def release(self, candidates: list[Candidate]) -> None:
        """The search prepared on these candidates ended: an endpoint that is not in the
        operator's settings and that no other search uses is forgotten, so request-supplied
        URLs do not pile up in a long-running server; its client waits, bounded, for the next
        search on the same endpoint (oracles.client_cache)."""
        for url in dict.fromkeys(c.endpoint for c in candidates):
            self._users[url] -= 1
            if self._users[url] > 0:
                continue
            del self._users[url]
            if url not in self.configs and url in self._endpoints:
                endpoint = self._endpoints.pop(url)
                await self.clients.park(endpoint.identity, endpoint.client)

    def configure(self, config: EndpointConfig) -> None:
        """Use `config` (its max_concurrency set) for its endpoint without probing it: an oracle
        worker's endpoints, probed and checked by its parent (oracles.workers)."""
        self._add(config, max(1, config.max_concurrency or self.default_concurrency))

    async def forget(self, urls: list[str]) -> None:
        """Forget the endpoints of `urls` (an oracle worker, told by its parent); their
        clients wait for reuse as `release` keeps them."""
        for url in urls:
            endpoint = self._endpoints.pop(url, None)
            if endpoint is not None:
                await self.clients.park(endpoint.identity, endpoint.client)

    @property
    def retained(self) -> int:
        """Endpoints whose settings and client this oracle holds (bounded; see `release`)."""
        return len(self._endpoints)

    def cache_scope(self, endpoint: str) -> str:
        """The operator's setting decides which endpoints share cached answers (cache_group);
        an endpoint it does not list shares with none."""
        config = self.configs.get(endpoint.rstrip("/")) or EndpointConfig(endpoint.rstrip("/"))
        return config.cache_scope

    def _add(self, config: EndpointConfig, limit: int) -> _Endpoint:
        old = self._endpoints.get(config.key)
        if old is not None:
            return old
        endpoint = _Endpoint(config, limit, self.policy, self.clients)
        self._endpoints[config.key] = endpoint
        return endpoint

    def concurrency(self, url: str) -> int:
        return self._endpoints[url.rstrip("/")].limit

    def _endpoint(self, candidate: Candidate) -> _Endpoint:
        endpoint = self._endpoints.get(candidate.endpoint)
        if endpoint is None:  # answer() without prepare(): configured or default limit
            config = self.configs.get(candidate.endpoint) or EndpointConfig(
                candidate.endpoint, candidate.backend
            )
            endpoint = self._add(config, config.max_concurrency or self.default_concurrency)
        return endpoint

    async def _call(
        self, endpoint: _Endpoint, candidate: Candidate, item: Item, system_prompt: bool
    ) -> Completion:
        task = get_task(item.task)
        prompt = task.build_prompt(item, system_prompt)
        # The endpoint's backend makes the call: its client was built for it (the preflight
        # refuses a candidate whose backend differs from its endpoint's).
        call = Call(
            url=endpoint.config.key,
            model=candidate.adapter_id or endpoint.config.served_model or candidate.model_id,
            adapter_id=candidate.adapter_id,
            prompt=prompt,
            generation=task.generation_for(item),
            requests=task.loglikelihood_requests(item),
        )
        async with asyncio.timeout(self.policy.timeout_s):  # the caller holds the slot
            if call.requests:
                return await self._loglikelihoods(endpoint, call)
            return await endpoint.backend.query(endpoint.client, call)

    @staticmethod
    async def _loglikelihoods(endpoint: _Endpoint, call: Call) -> Completion:
        """One multiple-choice query: every choice's log-likelihood, one request each, within
        the query's timeout. The query's own slot works through the choices; each slot of the
        endpoint that is free at the start (none queued for it) takes a share in parallel, so
        an idle endpoint answers a 4-choice item in about one request's time and a busy one
        never sees more requests than its concurrency. A failure on any choice fails the whole
        query (it is retried whole): a partial set of log-likelihoods is never graded."""
        score = endpoint.backend.loglikelihood
        if score is None:  # SearchSpec.validate refuses such candidates first
            raise ValueError(f"backend {endpoint.backend.name} gives no log-likelihoods")
        todo = list(enumerate(call.requests))
        lls: list[float] = [0.0] * len(todo)
        read = 0

        async def work() -> None:
            nonlocal read
            while todo:
                k, (context, continuation) = todo.pop(0)
                lls[k], prompt_tokens = await score(endpoint.client, call, context, continuation)
                read += prompt_tokens or 0

        async def borrowed() -> None:
            # `locked()` is also true while others wait for a slot: never jump their queue.
            if endpoint.semaphore.locked():
                return
            await endpoint.semaphore.acquire()  # free: returns without waiting
            try:
                await work()
            finally:
                endpoint.semaphore.release()

        workers = [asyncio.ensure_future(work())]
        workers += [asyncio.ensure_future(borrowed()) for _ in range(len(todo) - 1)]
        try:
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            for worker in done:
                if worker.exception() is not None:
                    raise worker.exception()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        text = json.dumps(lls)  # full precision: `gemfinder grade` regrades the same numbers
        return Completion(text, read or None, None, loglikelihoods=tuple(lls))

    async def _attempt(
        self, endpoint: _Endpoint, candidate: Candidate, item: Item, system_prompt: bool
    ) -> Completion | None:
        """One attempt in one of the endpoint's slots; None when its circuit is open (no
        connection made). The circuit is asked once the slot is held, so that the attempts
        queued behind a failing one learn of the failure instead of connecting too."""
        breaker = endpoint.breaker
        MAX_ANSWER_BYTES.set(self.max_answer_bytes)  # this task's calls read through its cap
        CONNECT_TIMEOUT_S.set(self.policy.connect_timeout_s)
        async with endpoint.semaphore:
            admission = breaker.admit()
            if admission is Admission.BLOCKED:
                return None
            self.stats.record("attempt")
            sent = time.perf_counter()
            try:
                completion = await self._call(endpoint, candidate, item, system_prompt)
            except asyncio.CancelledError:
                breaker.abandon(admission)  # a trial cut short must not block the circuit
                raise
            except Exception as exc:
                breaker.record(admission, connection_failed=no_connection(exc))
                raise
            breaker.record(admission, connection_failed=False)
            return replace(completion, service_s=time.perf_counter() - sent)

    async def answer(
        self, candidate: Candidate, item: Item, *, system_prompt: bool = False
    ) -> OracleResult:
        endpoint = self._endpoint(candidate)
        start = time.perf_counter()
        self.stats.record("pull")
        if not RuntimeAdapters.on_demand(endpoint.config, candidate.adapter_id):
            asked = await self._ask(endpoint, candidate, item, system_prompt, start)
        else:
            name = str(candidate.adapter_id)
            async with self.runtime_adapters.held(endpoint.config, name) as problem:
                if problem is not None:
                    return self.unregistered(candidate, item, problem, start)
                asked = await self._ask(endpoint, candidate, item, system_prompt, start)
            if isinstance(asked, OracleResult):
                self.check_registered(endpoint.config, name, asked)
        if isinstance(asked, OracleResult):
            return asked
        completion, attempts = asked
        return await self._grade(candidate, item, completion, attempts, start)

    def unregistered(
        self, candidate: Candidate, item: Item, problem: str, start: float
    ) -> OracleResult:
        """A query whose adapter could not be registered: a failure, never a wrong answer."""
        return self._failed(candidate, item, FailureKind.HTTP_ERROR, start, 1, problem)

    def _failed(
        self,
        candidate: Candidate,
        item: Item,
        kind: FailureKind,
        start: float,
        attempts: int,
        error: str,
        response: str | None = None,
    ) -> OracleResult:
        """A pull that failed (counted as such, never graded): its result."""
        self.stats.record("pull_failed", kind)
        return OracleResult(
            model_id=candidate.model_id,
            item_id=item.id,
            reward=None,
            failure=kind,
            response=response,
            latency_s=time.perf_counter() - start,
            attempts=attempts,
            error=error,
        )

    def check_registered(self, config: EndpointConfig, name: str, failed: OracleResult) -> None:
        """The server said the adapter does not exist: unregistered under us (another
        process's unload), so the next query registers it again."""
        if failed.failure is FailureKind.HTTP_ERROR and _GONE in (failed.error or ""):
            self.runtime_adapters.lost(config, name)

    async def _ask(
        self,
        endpoint: _Endpoint,
        candidate: Candidate,
        item: Item,
        system_prompt: bool,
        start: float,
    ) -> tuple[Completion, int] | OracleResult:
        """The completion and the attempts it took, or the failure after every retry."""
        attempt = 0
        breaker = endpoint.breaker
        while True:
            attempt += 1
            try:
                completion = await self._attempt(endpoint, candidate, item, system_prompt)
            except Exception as exc:  # noqa: BLE001 - every error becomes a counted kind
                kind = classify(exc)
                add_server_message(exc)
                if kind is FailureKind.UNEXPECTED:
                    log.exception("unexpected error calling %s", candidate.endpoint)
                self.stats.record("attempt_failed", kind)
                if kind not in RETRYABLE or attempt >= self.policy.max_attempts:
                    error = f"{type(exc).__name__}: {exc}"[:500]
                    return self._failed(candidate, item, kind, start, attempt, error)
                self.stats.record("retry", kind)
                await asyncio.sleep(self.policy.backoff(attempt, self._rng))
                continue
            if completion is not None:
                return completion, attempt
            # The endpoint keeps refusing connections: no new one. Retry after the backoff (the
            # circuit may close meanwhile) unless a trial failed too: then it is down, and the
            # query fails now, as it would after its retries, without connecting.
            self.stats.record("attempt_blocked")
            if breaker.down or attempt >= self.policy.max_attempts:
                error = (
                    f"{candidate.endpoint} could not be connected to {breaker.threshold}+ times "
                    f"in a row; not connecting for {breaker.retry_in():.1f} s (circuit open)"
                )
                return self._failed(candidate, item, FailureKind.CONNECTION, start, attempt, error)
            await asyncio.sleep(self.policy.backoff(attempt, self._rng))

    async def _grade(
        self, candidate: Candidate, item: Item, completion: Completion, attempts: int, start: float
    ) -> OracleResult:
        task = get_task(item.task)
        try:
            grade = await self._graded(task, item, completion)
        except Exception as exc:  # noqa: BLE001 - a grader failure is not the model's 0
            kind = FailureKind.GRADING
            if isinstance(exc, GradingTimeout):  # logged by the pool, with the process killed
                kind = FailureKind.GRADING_TIMEOUT
            elif isinstance(exc, GradingError):  # raised in a grading process
                log.warning("grading %s failed: %s", item.id, exc)
            else:
                log.exception("grading %s failed", item.id)
            error = f"{type(exc).__name__}: {exc}"[:500]
            return self._failed(candidate, item, kind, start, attempts, error, completion.text)
        reward = int(bool(grade.correct))
        self.stats.record("graded")
        if reward:
            self.stats.record("correct")
        return OracleResult(
            model_id=candidate.model_id,
            item_id=item.id,
            reward=reward,
            response=completion.text,
            extracted=grade.extracted,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            latency_s=time.perf_counter() - start,
            service_s=completion.service_s,
            attempts=attempts,
        )

    async def _graded(self, task: Task, item: Item, completion: Completion) -> Grade:
        """The answer's grade: inline when its grader is known linear and quick; in a worker
        thread when it runs code (MBPP's sandbox) or may read lm-eval's pattern set; in a
        grading process under a time limit when its patterns are not known linear (a
        pathological answer would hold the interpreter lock for hours)."""
        text = completion.text
        if completion.loglikelihoods is not None:
            return task.grade_loglikelihoods(item, list(completion.loglikelihoods))
        if task.runs_code:  # lm_eval too: one thread hop decides and, mostly, grades
            grade = await asyncio.to_thread(_grade_if_bounded, task, item, text)
        else:
            grade = task.grade(item, text) if task.grading_bounded(item, text) else None
        if grade is None:
            grade = await self.grading.grade(item, text, task.code_seconds(item))
        return grade

    def _on_demand(self, candidates: list[Candidate]) -> dict[str, list[str]]:
        """The on-demand adapters among `candidates`, by endpoint (the operator's settings)."""
        by_endpoint: dict[str, list[str]] = {}
        for cand in candidates:
            config = self.configs.get(cand.endpoint.rstrip("/"))
            if RuntimeAdapters.on_demand(config, cand.adapter_id):
                by_endpoint.setdefault(cand.endpoint.rstrip("/"), []).append(str(cand.adapter_id))
        return by_endpoint

    def share_adapters(self, leases: LoraLeases) -> None:
        """Count adapters on demand with the other replicas of a store (gemfinder.lora_leases):
        the server's SearchManager calls it with its store and replica id."""
        self.runtime_adapters.share(leases)

    def claim_adapters(self, candidates: list[Candidate]) -> None:
        """A search starts asking these candidates: their on-demand adapters stay registered
        (within the cap) until it releases them."""
        for url, names in self._on_demand(candidates).items():
            self.runtime_adapters.claim(self.configs[url], names)

    async def release_adapters(self, candidates: list[Candidate]) -> None:
        """A search is done with these candidates: the on-demand adapters gemfinder registered
        and no search claims any more are unregistered."""
        for url, names in self._on_demand(candidates).items():
            await self.runtime_adapters.release(self.configs[url], names)

    async def aclose(self) -> None:
        await self.grading.aclose()
        await self.runtime_adapters.aclose()  # unregisters what is left (shutdown)
        for endpoint in self._endpoints.values():
            await endpoint.client.close()
        await self.clients.aclose()


def _grade_if_bounded(task: Task, item: Item, text: str) -> Grade | None:
    """The grade when the item's grader is known linear, else None (for the grading pool)."""
    return task.grade(item, text) if task.grading_bounded(item, text) else None
