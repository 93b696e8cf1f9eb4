"""With the oracle's greedy parameters the fleet's answers, graded by the real task graders,
match the correctness matrix exactly; adapter ids behave as on TGI and are checked up front."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fleet_support import FAST_RETRY, expected, fleet_config, make_items, make_matrix
from gemfinder.candidates import Candidate
from gemfinder.errors import UserError
from gemfinder.oracles import EndpointConfig, InferenceOracle, ReplayOracle
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.build import candidates_for, fleet_from_matrix
from gemfinder.tasks import get_task
from huggingface_hub import AsyncInferenceClient

MODELS = [f"org/model-{k}" for k in range(8)]


@pytest.fixture(scope="module")
def pool():
    items = make_items(9, tasks=("arc_challenge", "mmlu", "winogrande", "gsm8k"))
    items += make_items(3, tasks=("mbpp",))
    return items, make_matrix(items, MODELS, seed=5)


@pytest.mark.parametrize(("backend", "system_prompt"), [("tgi", False), ("openai", True)])
async def test_greedy_answers_match_the_matrix_exactly(pool, backend, system_prompt):
    items, matrix = pool
    config = fleet_from_matrix(matrix, endpoints=3)
    async with Fleet(config, matrix, items) as fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        candidates = candidates_for(config, urls, matrix, backend=backend)
        endpoints = [
            EndpointConfig(urls[s.name], backend, adapters=tuple(s.adapters))
            for s in config.endpoints
        ]
        oracle = InferenceOracle(endpoints, policy=FAST_RETRY)
        await oracle.prepare(candidates)
        results = await asyncio.gather(
            *(oracle.answer(c, it, system_prompt=system_prompt) for c in candidates for it in items)
        )
        await oracle.aclose()
        served = sum(sum(fleet.state(n).served.values()) for n in fleet.names)
    assert len(results) == len(MODELS) * len(items) >= 300
    assert all(r.ok for r in results)
    mismatches = [r for r in results if r.reward != expected(matrix, r.model_id, r.item_id)]
    assert mismatches == []
    assert served == len(results)  # one query per pull, no retries needed
    assert all(r.completion_tokens and r.completion_tokens > 0 for r in results)


async def test_sampling_by_mistake_shows_as_disagreement(pool):
    items, matrix = pool
    items = [it for it in items if it.task != "mbpp"]
    config = fleet_config({"name": "ep", "model_id": MODELS[0]})
    async with Fleet(config, matrix, items) as fleet:
        url = fleet.url("ep")
        async with AsyncInferenceClient(token="t", timeout=5) as client:

            async def sampled(item):
                task = get_task(item.task)
                text = await client.text_generation(
                    task.build_prompt(item, False).text,
                    model=f"{url}/generate",
                    max_new_tokens=512,
                    stop=list(task.generation.stop),
                    temperature=0.7,
                )
                return int(task.grade(item, text).correct)

            rewards = await asyncio.gather(*(sampled(it) for it in items))
    truth = [expected(matrix, MODELS[0], it.id) for it in items]
    disagree = np.mean([a != b for a, b in zip(rewards, truth, strict=True)])
    assert 0.1 < disagree < 0.6


async def test_unknown_adapter_silently_serves_the_base_model(pool):
    items, matrix = pool
    config = fleet_config({"name": "ep", "model_id": MODELS[0], "adapters": [MODELS[1]]})
    async with Fleet(config, matrix, items) as fleet:
        url = fleet.url("ep")
        # Skip the preflight on purpose: this is the trap it exists for.
        oracle = InferenceOracle(policy=FAST_RETRY, validate=False)
        typo = Candidate(MODELS[1], url, adapter_id=MODELS[1] + "-typo")
        base = Candidate(MODELS[0], url)
        typo_results = await asyncio.gather(*(oracle.answer(typo, it) for it in items))
        base_results = await asyncio.gather(*(oracle.answer(base, it) for it in items))
        await oracle.aclose()
        assert fleet.state("ep").served == {MODELS[0]: 2 * len(items)}
        assert fleet.state("ep").statuses == {200: 2 * len(items)}
    assert [r.response for r in typo_results] == [r.response for r in base_results]
    assert [r.reward for r in typo_results] == [expected(matrix, MODELS[0], i.id) for i in items]


async def test_preflight_catches_an_adapter_typo(pool):
    items, matrix = pool
    config = fleet_config({"name": "ep", "model_id": MODELS[0], "adapters": [MODELS[1]]})
    async with Fleet(config, matrix, items) as fleet:
        url = fleet.url("ep")
        good = [Candidate(MODELS[0], url), Candidate(MODELS[1], url, adapter_id=MODELS[1])]
        endpoints = [EndpointConfig(url, adapters=(MODELS[1],))]
        await InferenceOracle(endpoints).prepare(good)  # passes
        typo = Candidate(MODELS[2], url, adapter_id="org/modle-1")
        with pytest.raises(UserError, match="org/modle-1.*silently"):
            await InferenceOracle(endpoints).prepare([*good, typo])
        # Without the endpoint's adapter list the id cannot be checked: refuse, say why.
        with pytest.raises(UserError, match="cannot be checked"):
            await InferenceOracle().prepare(good)
        # A fine-tune named as a base model on this endpoint would evaluate the base.
        with pytest.raises(UserError, match="serves 'org/model-0'"):
            await InferenceOracle(endpoints).prepare([Candidate(MODELS[3], url)])
    assert fleet.state("ep").requests["/generate"] == 0


async def test_replay_oracle_answers_from_the_matrix(pool):
    items, matrix = pool
    oracle = ReplayOracle(matrix)
    cands = [Candidate(m, "http://127.0.0.1:9") for m in MODELS[:3]]
    await oracle.prepare(cands)
    results = [await oracle.answer(c, it) for c in cands for it in items]
    assert [r.reward for r in results] == [
        expected(matrix, c.model_id, it.id) for c in cands for it in items
    ]
    with pytest.raises(UserError):
        await oracle.prepare([Candidate("org/unknown", "http://127.0.0.1:9")])
