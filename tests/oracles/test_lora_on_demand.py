"""Adapters on demand: a search registers its vLLM adapters through the runtime LoRA API before
asking them, unregisters them once out, never unregisters one it did not register, and counts
the queries of an adapter whose registration failed as failures."""

from __future__ import annotations

import pytest
from fleet_support import FAST_RETRY, fleet_config
from gemfinder.candidates import Candidate
from gemfinder.errors import UserError
from gemfinder.oracles import InferenceOracle
from gemfinder.oracles.endpoints import endpoint_config_from_dict
from gemfinder.oracles.preflight import CandidateProblems
from gemfinder.search.runner import SearchRunner
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.fleet import Fleet
from gemfinder.store import Store

from tests.pool_support import BEST, clear_best_pool

COMPLETIONS = "openai_completions"


async def test_a_search_registers_asks_and_unregisters_its_adapters(tmp_path):
    matrix, items = clear_best_pool()
    base, launched, *rest = matrix.models  # rest: registered on demand, BEST among them
    broken = rest.pop(0)  # its path is wrong on the server
    raw = {
        "name": "vllm",
        "model_id": base,
        "adapters": {"pre": launched},  # --lora-modules: someone else's
        "server": "vllm",
        "chat_template": False,
        "serving": {
            "runtime_lora_updating": True,
            "max_loras": 2,
            "max_cpu_loras": 4,
            "lora_paths": {f"/adapters/{k}": row for k, row in enumerate(rest)}
            | {"/adapters/pre": launched},
        },
    }
    config = fleet_config(raw)
    names = {row: f"ft{k}" for k, row in enumerate(rest)}
    async with Fleet(config, matrix, items) as fleet:
        url = fleet.url("vllm")
        endpoint = endpoint_config_from_dict(
            {
                "url": url,
                "backend": COMPLETIONS,
                "adapters": ["pre"],
                "lora_paths": {names[row]: f"/adapters/{k}" for k, row in enumerate(rest)}
                | {"pre": "/adapters/pre", "broken": "/adapters/typo"},
            },
            "endpoints[0]",
        )
        candidates = [
            Candidate(base, url, COMPLETIONS),
            Candidate(launched, url, COMPLETIONS, adapter_id="pre"),
            Candidate(broken, url, COMPLETIONS, adapter_id="broken"),
        ] + [Candidate(row, url, COMPLETIONS, adapter_id=names[row]) for row in rest]
        oracle = InferenceOracle([endpoint], policy=FAST_RETRY)
        spec = SearchSpec(candidates, items, budget=25 * len(candidates), seed=3)
        spec.validate()
        store = Store()
        store.create_search("s", None, spec.to_dict())
        await oracle.prepare(candidates)  # on-demand adapter ids pass the pre-search check
        result = await SearchRunner("s", spec, oracle, store).run()
        state = fleet.state("vllm")
        registered_at_end = dict(state.model.adapters)
        await oracle.aclose()
    assert result.winner.model_id == BEST
    # Every adapter it asked was registered first (the fleet refuses unregistered names), once.
    asked = {row for row in state.served} - {base, launched}
    assert asked == set(rest)
    assert oracle.runtime_adapters.loads == len(rest)
    assert state.requests["/v1/load_lora_adapter"] == len(rest) + 2  # + "pre" (400), "broken"
    # All of its own unregistered (the eliminated ones as they went out); "pre" kept.
    assert state.requests["/v1/unload_lora_adapter"] == len(rest)
    assert registered_at_end == {"pre": launched}
    # Eliminated adapters went out while the search still asked the others.
    unloads = [
        (name, at) for route, name, at in state.lora_log if route.endswith("unload_lora_adapter")
    ]
    assert min(at for _, at in unloads) < state.ledger.queries
    assert {name for name, _ in unloads} == set(names.values())
    # The broken adapter: failures, asked once on the server, never a wrong answer.
    assert state.failed_loads == 1
    assert broken not in state.served and result.queries_failed > 0
    broken_est = next(e for e in result.ranking if e.model_id == broken)
    assert broken_est.items_seen == 0


def test_lora_paths_must_be_names_to_paths():
    for bad in ({}, [], {"a": 3}, {"": "/p"}):
        with pytest.raises(UserError, match="lora_paths"):
            endpoint_config_from_dict({"url": "http://h:1", "lora_paths": bad}, "endpoints[0]")


async def test_a_caller_cannot_make_the_server_load_a_path():
    """Paths come only from the operator's endpoint settings: an adapter id outside them (a path,
    here) is refused before the search, and the server gets no load request."""
    matrix, items = clear_best_pool()
    paths = {"/etc/passwd": matrix.models[1], "/adapters/a": matrix.models[1]}
    raw = {"name": "vllm", "model_id": matrix.models[0], "server": "vllm", "chat_template": False,
           "serving": {"runtime_lora_updating": True, "lora_paths": paths}}  # fmt: skip
    async with Fleet(fleet_config(raw), matrix, items) as fleet:
        url = fleet.url("vllm")
        endpoint = endpoint_config_from_dict(
            {"url": url, "backend": COMPLETIONS, "lora_paths": {"a": "/adapters/a"}}, "e[0]"
        )
        oracle = InferenceOracle([endpoint], policy=FAST_RETRY)
        hostile = Candidate(matrix.models[1], url, COMPLETIONS, adapter_id="/etc/passwd")
        with pytest.raises(CandidateProblems, match="adapter"):
            await oracle.prepare([Candidate(matrix.models[0], url, COMPLETIONS), hostile])
        result = await oracle.answer(hostile, items[0])  # asked anyway: refused by the server
        await oracle.aclose()
        assert result.reward is None and result.failure is not None
        assert fleet.state("vllm").requests["/v1/load_lora_adapter"] == 0
