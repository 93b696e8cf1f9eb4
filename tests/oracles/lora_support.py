"""One simulated vLLM endpoint with 15 adapters registered on demand within a small cap, and
the fleet's checks of it: shared by the adapter lifecycle tests, the replica tests and
bench/speed/lora_replicas.py."""

from __future__ import annotations

from gemfinder.candidates import Candidate
from gemfinder.oracles.endpoints import endpoint_config_from_dict
from gemfinder.search.runner import SearchRunner
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.fleet import Fleet
from gemfinder.store import Store

from tests.fleet_support import fleet_config
from tests.pool_support import clear_best_pool

COMPLETIONS = "openai_completions"
CAP = 3  # max_cpu_loras: far fewer than the 15 adapters a round asks
SLOTS = 2  # max_loras
LOAD, UNLOAD = "/v1/load_lora_adapter", "/v1/unload_lora_adapter"


class Setup:
    """One vLLM endpoint: a base model and 15 adapters registered on demand (BEST among them)."""

    def __init__(self, serving: dict | None = None, latency_s: float = 0.0) -> None:
        self.matrix, self.items = clear_best_pool()
        self.base, *self.rows = self.matrix.models
        self.names = {row: f"ft{k}" for k, row in enumerate(self.rows)}
        self.raw = {
            "name": "vllm",
            "model_id": self.base,
            "server": "vllm",
            "chat_template": False,
            "latency": {"median_s": latency_s, "sigma": 0.0},
            "serving": {
                "runtime_lora_updating": True,
                "max_loras": SLOTS,
                "max_cpu_loras": CAP,
                "lora_paths": {f"/adapters/{n}": row for row, n in self.names.items()},
                **(serving or {}),
            },
        }

    def fleet(self) -> Fleet:
        return Fleet(fleet_config(self.raw), self.matrix, self.items)

    def endpoint_dict(self, url: str, cap: int = CAP) -> dict:
        """The endpoint as an endpoints file lists it."""
        return {
            "url": url,
            "backend": COMPLETIONS,
            "max_concurrency": 8,
            "lora_paths": {n: f"/adapters/{n}" for n in self.names.values()},
            "cost": {"max_loras": min(SLOTS, cap), "max_cpu_loras": cap, "query_s": 0.2},
        }

    def endpoint(self, url: str, cap: int = CAP):
        return endpoint_config_from_dict(self.endpoint_dict(url, cap), "endpoints[0]")

    def candidates(self, url: str, rows: list[str] | None = None) -> list[Candidate]:
        rows = self.rows if rows is None else rows
        return [Candidate(self.base, url, COMPLETIONS)] + [
            Candidate(row, url, COMPLETIONS, adapter_id=self.names[row]) for row in rows
        ]

    def runner(self, oracle, url: str, sid: str = "s", rows=None, store=None) -> SearchRunner:
        candidates = self.candidates(url, rows)
        spec = SearchSpec(candidates, self.items, budget=25 * len(candidates), seed=3)
        spec.validate()
        store = store or Store()
        store.create_search(sid, None, spec.to_dict())
        return SearchRunner(sid, spec, oracle, store)


def assert_within_the_cap(state, oracle_adapters, url: str) -> None:
    """The fleet never had more of gemfinder's registrations than the cap, nor more adapters
    in GPU slots than it has, and no query reached it for an adapter it did not have."""
    assert 0 < state.most_registered <= CAP
    assert oracle_adapters.most_held(url) <= CAP
    assert state.ledger.max_resident <= SLOTS
    refused = [b for b in state.bodies if b["route"] == "/v1/completions"]
    assert refused  # the search asked
    assert state.statuses[404] == 0  # no "The model `...` does not exist."


def assert_requests_are_vllms(state) -> None:
    """Every runtime LoRA request is the documented one: JSON, exactly these fields."""
    assert state.lora_requests
    for route, ctype, body in state.lora_requests:
        assert ctype is not None and ctype.startswith("application/json")
        expected = {"lora_name", "lora_path"} if route == LOAD else {"lora_name"}
        assert set(body) == expected, (route, body)
        assert all(isinstance(v, str) and v for v in body.values())
