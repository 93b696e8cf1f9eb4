"""The backend registry (gemfinder.backends): one entry per value of the proto's Backend enum,
every spelling files and requests use, and each entry's client, query, probe and check working
against the simulated fleet, so that a backend added to the registry is exercised here without
a test of its own (and a fleet that does not serve its route fails here)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fleet_support import FAST_RETRY, expected, fleet_config, make_items, make_matrix
from gemfinder.backends import registry
from gemfinder.backends.registry import NAMES, REGISTRY, parse_backend
from gemfinder.candidates import Candidate
from gemfinder.errors import UserError
from gemfinder.oracles import EndpointConfig, InferenceOracle
from gemfinder.server.convert import BACKENDS, spec_to_proto
from gemfinder.sim.fleet import Fleet
from gemfinder.v1 import gemfinder_pb2 as pb

MODELS = [f"org/model-{k}" for k in range(3)]


def test_every_enum_value_has_one_entry_and_each_entry_is_spelled_as_the_enum():
    assert set(REGISTRY) == set(pb.Backend.values()) - {pb.BACKEND_UNSPECIFIED}
    for value, entry in REGISTRY.items():
        assert pb.Backend.Name(value) == entry.enum_name == "BACKEND_" + entry.name.upper()
        # Every spelling a file or request may use means this backend, both ways.
        for spelling in (entry.name, entry.enum_name, value):
            assert parse_backend(spelling, "backend") == entry.name
        assert BACKENDS[value] == entry.name
        cand = Candidate("m", "http://h:1", entry.name)
        assert spec_to_proto([cand], [], 1).candidates[0].backend == value
    assert parse_backend("BACKEND_UNSPECIFIED", "b") == parse_backend(0, "b") == "tgi"


@pytest.mark.parametrize("value", ["TGI", "BACKEND_tgi", "vllm", 99, 1.0, True, None, [1]])
def test_other_spellings_are_refused_naming_the_field(value):
    with pytest.raises(UserError, match="must be one of BACKEND_TGI") as err:
        parse_backend(value, "candidates[3].backend")
    assert err.value.field == "candidates[3].backend"


def test_an_enum_value_without_an_entry_stops_the_import(monkeypatch):
    tgi = REGISTRY[pb.BACKEND_TGI]
    monkeypatch.setattr(registry, "REGISTRY", {k: v for k, v in REGISTRY.items() if v != tgi})
    with pytest.raises(RuntimeError, match=r"no entry for \['BACKEND_TGI'\]"):
        registry._check_against_the_enum()


def test_the_registry_is_cheap_to_import():
    """The CLI and the candidates loader read names from it: no HTTP stack on import."""
    code = (
        "import sys, gemfinder.candidates, gemfinder.backends; "
        "print(sorted(m for m in ('aiohttp', 'httpx2', 'huggingface_hub.inference') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", NAMES)
async def test_each_backend_answers_from_the_matrix_through_its_route(name):
    items = make_items(2, tasks=("arc_challenge", "gsm8k", "mbpp"))
    matrix = make_matrix(items, MODELS, seed=5)
    entry = registry.backend(name)
    spec = {"name": "e", "model_id": MODELS[0], "adapters": {"l1": MODELS[1]}}
    async with Fleet(fleet_config(spec), matrix, items) as fleet:
        url = fleet.url("e")
        oracle = InferenceOracle([EndpointConfig(url, name, adapters=("l1",))], policy=FAST_RETRY)
        cands = [Candidate(MODELS[0], url, name), Candidate(MODELS[1], url, name, "l1")]
        await oracle.prepare(cands)  # the probe and the check pass
        results = [await oracle.answer(c, it) for c in cands for it in items]
        # The check refuses an adapter the endpoint was not launched with, by field.
        typo = Candidate(MODELS[2], url, name, adapter_id="l2")
        with pytest.raises(UserError, match="'l2' is not served") as err:
            await oracle.prepare([typo])
        assert err.value.field == "candidates[0].adapter_id"
        await oracle.aclose()
        state = fleet.state("e")
    assert all(r.ok for r in results), [r.error for r in results]
    assert [r.reward for r in results] == [
        expected(matrix, m, it.id) for m in MODELS[:2] for it in items
    ]
    assert state.requests[entry.route] == len(results)
    assert sum(state.requests.values()) - state.requests["/info"] == len(results)
