"""The oracle for live endpoints: prompt, call (TGI, OpenAI chat or OpenAI completions), retry,
grade off the loop.

Per endpoint: one AsyncInferenceClient with an explicit token and timeout, and a semaphore
sized from the user's setting or `/info` `max_concurrent_requests` (capped, since other
clients share the server). A slot is held for one attempt only, never across a backoff sleep.
Answers are read through a byte cap (oracles.answer_cap).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable

from huggingface_hub import AsyncInferenceClient

from gemfinder.candidates import Candidate
from gemfinder.oracles.answer_cap import DEFAULT_MAX_ANSWER_BYTES, cap_answers
from gemfinder.oracles.backends import (
    Completion,
    CompletionsClient,
    add_server_message,
    openai_chat,
    openai_completion,
    tgi_generate,
)
from gemfinder.oracles.base import RETRYABLE, FailureKind, OracleResult
from gemfinder.oracles.endpoints import EndpointConfig
from gemfinder.oracles.preflight import check_candidates, probe
from gemfinder.oracles.retry import RetryPolicy, classify
from gemfinder.oracles.stats import OracleStats
from gemfinder.tasks import Item, get_task

log = logging.getLogger(__name__)


class _Endpoint:
    def __init__(
        self, config: EndpointConfig, limit: int, policy: RetryPolicy, max_answer_bytes: int
    ) -> None:
        self.config = config
        self.limit = limit
        self.semaphore = asyncio.Semaphore(limit)
        client: AsyncInferenceClient | CompletionsClient
        if config.backend == "openai":
            client = AsyncInferenceClient(
                base_url=config.key, token=config.bearer, timeout=policy.timeout_s
            )
        elif config.backend == "openai_completions":
            client = CompletionsClient(config.key, config.bearer, policy.timeout_s)
        else:
            client = AsyncInferenceClient(token=config.bearer, timeout=policy.timeout_s)
        self.client = cap_answers(client, max_answer_bytes)


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
    ) -> None:
        self.max_answer_bytes = max_answer_bytes
        self.configs = {c.key: c for c in endpoints}
        self.policy = policy or RetryPolicy()
        self.stats = stats or OracleStats()
        self.concurrency_cap = concurrency_cap
        self.default_concurrency = default_concurrency
        self.validate = validate
        self._rng = random.Random(seed)
        self._endpoints: dict[str, _Endpoint] = {}

    async def prepare(self, candidates: list[Candidate]) -> None:
        """Probe every endpoint once, validate candidates (adapter ids!), size the pools."""
        for cand in candidates:
            self.configs.setdefault(cand.endpoint, EndpointConfig(cand.endpoint, cand.backend))
        used = [self.configs[url] for url in dict.fromkeys(c.endpoint for c in candidates)]
        probes = await probe(used, timeout_s=min(self.policy.timeout_s, 10.0))
        if self.validate:
            check_candidates(candidates, self.configs, probes)
        for config in used:
            info = probes[config.key]["info"] or {}
            limit = config.max_concurrency
            if limit is None and isinstance(info.get("max_concurrent_requests"), int):
                limit = max(1, min(info["max_concurrent_requests"], self.concurrency_cap))
            self._add(config, limit or self.default_concurrency)

    def cache_scope(self, endpoint: str) -> str:
        """The operator's setting decides which endpoints share cached answers (cache_group);
        an endpoint it does not list shares with none."""
        config = self.configs.get(endpoint.rstrip("/")) or EndpointConfig(endpoint.rstrip("/"))
        return config.cache_scope

    def _add(self, config: EndpointConfig, limit: int) -> _Endpoint:
        old = self._endpoints.get(config.key)
        if old is not None:
            return old
        endpoint = _Endpoint(config, limit, self.policy, self.max_answer_bytes)
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
        # The endpoint's backend picks the call: its client was built for it (the preflight
        # refuses a candidate whose backend differs from its endpoint's).
        backend, client = endpoint.config.backend, endpoint.client
        name = candidate.adapter_id or endpoint.config.served_model or candidate.model_id
        async with endpoint.semaphore, asyncio.timeout(self.policy.timeout_s):
            if isinstance(client, CompletionsClient):
                return await openai_completion(client, name, prompt, task.generation)
            if backend == "openai":
                return await openai_chat(client, name, prompt, task.generation)
            return await tgi_generate(
                client, endpoint.config.key, candidate, prompt, task.generation
            )

    async def answer(
        self, candidate: Candidate, item: Item, *, system_prompt: bool = False
    ) -> OracleResult:
        endpoint = self._endpoint(candidate)
        start = time.perf_counter()
        self.stats.record("pull")
        attempt = 0
        while True:
            attempt += 1
            self.stats.record("attempt")
            try:
                completion = await self._call(endpoint, candidate, item, system_prompt)
                break
            except Exception as exc:  # noqa: BLE001 - every error becomes a counted kind
                kind = classify(exc)
                add_server_message(exc)
                if kind is FailureKind.UNEXPECTED:
                    log.exception("unexpected error calling %s", candidate.endpoint)
                self.stats.record("attempt_failed", kind)
                if kind not in RETRYABLE or attempt >= self.policy.max_attempts:
                    self.stats.record("pull_failed", kind)
                    return OracleResult(
                        model_id=candidate.model_id,
                        item_id=item.id,
                        reward=None,
                        failure=kind,
                        latency_s=time.perf_counter() - start,
                        attempts=attempt,
                        error=f"{type(exc).__name__}: {exc}"[:500],
                    )
                self.stats.record("retry", kind)
                await asyncio.sleep(self.policy.backoff(attempt, self._rng))
        return await self._grade(candidate, item, completion, attempt, start)

    async def _grade(
        self, candidate: Candidate, item: Item, completion: Completion, attempts: int, start: float
    ) -> OracleResult:
        task = get_task(item.task)
        try:
            # A grader that runs code (MBPP's sandbox) must not block the event loop; the
            # others are quicker inline than a hop to a worker thread.
            if task.runs_code:
                grade = await asyncio.to_thread(task.grade, item, completion.text)
            else:
                grade = task.grade(item, completion.text)
        except Exception as exc:  # noqa: BLE001 - a grader failure is not the model's 0
            log.exception("grading %s failed", item.id)
            self.stats.record("pull_failed", FailureKind.GRADING)
            return OracleResult(
                candidate.model_id,
                item.id,
                None,
                FailureKind.GRADING,
                response=completion.text,
                latency_s=time.perf_counter() - start,
                attempts=attempts,
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
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
            attempts=attempts,
        )

    async def aclose(self) -> None:
        for endpoint in self._endpoints.values():
            await endpoint.client.close()
