"""A pool of adapters on one endpoint with a cost model, answered by an oracle that reports each
query's service time, as gemfinder.oracles.InferenceOracle does (OracleResult.service_s): shared
by the GPU-second budget tests (tests/search/test_gpu_budget.py, tests/server/
test_gpu_budget_resume.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
from gemfinder.candidates import Candidate
from gemfinder.oracles import OracleResult
from gemfinder.oracles.endpoints import endpoint_config_from_dict
from gemfinder.search.spec import SearchSpec
from gemfinder.tasks import parse_item

URL = "http://gpu-h:80"
# Adapters on one vLLM: 4 GPU slots, 8 in host memory; query_s left out = measured.
MEASURED = {"model_load_s": 20, "adapter_load_s": 2, "swap_s": 0.5, "max_loras": 4,
            "max_cpu_loras": 8}  # fmt: skip
CONFIGURED = {**MEASURED, "query_s": 0.2}


class TimedReplay:
    """Answers from a table of right and wrong; each query reports the service time
    `service(rng)` (drawn in the order answered) after sleeping `sleep_s`. Counts the queries
    sent, those in flight (handed to it, served `slots` at a time) and the most at once."""

    def __init__(
        self,
        correct: dict[tuple[str, str], int],
        cost: dict[str, Any],
        service: Callable[[np.random.Generator], float] = lambda rng: 0.2,
        sleep_s: float = 0.002,
        seed: int = 0,
        slots: int = 8,
    ) -> None:
        config = endpoint_config_from_dict({"url": URL, "cost": cost}, "endpoints[0]")
        self.configs = {config.key: config}
        self.correct = correct
        self.service = service
        self.sleep_s = sleep_s
        self.rng = np.random.default_rng(seed)
        self.sent = self.active = self.most_active = 0
        self.active_at_last_send = 0  # in flight once the last query was sent
        self.service_total = 0.0  # service times reported
        self.longest = 0.0
        self.slots = slots  # queries the endpoint serves at once, as InferenceOracle's limit
        self._slots = asyncio.Semaphore(slots)

    async def prepare(self, candidates) -> None:
        pass

    async def release(self, candidates) -> None:
        pass

    def concurrency(self, url: str) -> int:
        return self.slots

    async def answer(self, candidate, item, *, system_prompt: bool = False) -> OracleResult:
        self.sent += 1
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        self.active_at_last_send = self.active
        try:
            async with self._slots:
                await asyncio.sleep(self.sleep_s)
            seconds = float(self.service(self.rng))
            self.service_total += seconds
            self.longest = max(self.longest, seconds)
            reward = self.correct[candidate.model_id, item.id]
            return OracleResult(
                model_id=candidate.model_id, item_id=item.id, reward=reward, service_s=seconds
            )
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        pass


def pool(
    n_models: int = 12, n_items: int = 60, budget: int = 480, **kw: Any
) -> tuple[SearchSpec, dict[tuple[str, str], int]]:
    """Adapters of accuracy 0.3 to 0.85 on one endpoint; `kw` more SearchSpec fields."""
    items = [
        parse_item(
            f'{{"id": "q{n}", "task": "mmlu", "question": "Question {n}?",'
            ' "choices": ["a", "b", "c", "d"], "answer": "A"}',
            f"item {n}",
        )
        for n in range(n_items)
    ]
    rng = np.random.default_rng(5)
    acc = np.linspace(0.3, 0.85, n_models)
    candidates = [Candidate(f"m{k}", URL, adapter_id=f"a{k}") for k in range(n_models)]
    correct = {
        (c.model_id, it.id): int(rng.random() < acc[k])
        for k, c in enumerate(candidates)
        for it in items
    }
    spec = SearchSpec(candidates, items, budget=budget, seed=9, **kw)
    spec.validate()
    return spec, correct
