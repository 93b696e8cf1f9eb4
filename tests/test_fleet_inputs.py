"""Inputs of the oracle and fleet layers: candidate and config files, synthetic items, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gemfinder.candidates import load_candidates
from gemfinder.cli import main
from gemfinder.errors import UserError
from gemfinder.oracles import load_endpoint_configs
from gemfinder.sim.fleet.config import load_fleet_config
from gemfinder.sim.fleet.synthetic_items import generate
from gemfinder.sim.matrix import CorrectnessMatrix, save_npz
from gemfinder.tasks import get_task, load_query_set


def test_candidates_load_from_jsonl_and_json(tmp_path):
    rows = [
        {"model_id": "org/base", "endpoint": "http://127.0.0.1:8080/", "official": True},
        {
            "model_id": "org/ft",
            "endpoint": "http://127.0.0.1:8080",
            "adapter_id": "org/ft",
            "downloads": 12,
        },
    ]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "c.json").write_text(json.dumps(rows))
    for path in (jsonl, tmp_path / "c.json"):
        base, ft = load_candidates(path)
        assert base.endpoint == "http://127.0.0.1:8080" and base.official and base.backend == "tgi"
        assert ft.served_name == "org/ft" and ft.downloads == 12.0


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"endpoint": "http://127.0.0.1:1"}, "model_id"),
        ({"model_id": "m", "endpoint": "localhost:80"}, "endpoint"),
        ({"model_id": "m", "endpoint": "http://127.0.0.1:1", "backend": "vllm"}, "backend"),
        ({"model_id": "m", "endpoint": "http://127.0.0.1:1", "downloads": -1}, "downloads"),
        ({"model_id": "m", "endpoint": "http://127.0.0.1:1", "adapter": "x"}, "adapter"),
    ],
)
def test_candidate_errors_name_the_field(tmp_path, record, field):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(UserError) as err:
        load_candidates(path)
    assert err.value.field.endswith(f".{field}") and "line 1" in err.value.field


def test_endpoint_configs_reject_bad_fields(tmp_path):
    path = tmp_path / "e.json"
    path.write_text(json.dumps([{"url": "http://127.0.0.1:1", "adapters": ["a"], "token": "t"}]))
    (config,) = load_endpoint_configs(path)
    assert config.adapters == ("a",) and config.bearer == "t"
    path.write_text(json.dumps([{"url": "http://127.0.0.1:1", "max_concurrency": 0}]))
    with pytest.raises(UserError, match="max_concurrency"):
        load_endpoint_configs(path)


def test_fleet_config_validation(tmp_path):
    path = tmp_path / "fleet.json"
    good = {
        "matrix": "m.npz",
        "endpoints": [{"name": "a", "model_id": "m", "faults": {"429": 0.5}}],
    }
    path.write_text(json.dumps(good))
    config = load_fleet_config(path)
    assert config.matrix == str(tmp_path / "m.npz") and config.endpoints[0].faults == {"429": 0.5}
    for bad, field in [
        ({**good, "host": "0.0.0.0"}, "host"),
        ({"endpoints": [{"name": "a", "model_id": "m", "faults": {"418": 0.1}}]}, "faults.418"),
        (
            {"endpoints": [{"name": "a", "model_id": "m", "faults": {"429": 0.7, "503": 0.6}}]},
            "faults",
        ),
        ({"endpoints": []}, "endpoints"),
    ]:
        path.write_text(json.dumps(bad))
        with pytest.raises(UserError) as err:
            load_fleet_config(path)
        assert err.value.field.endswith(field)


def test_synthetic_items_are_seeded_distinct_and_valid(tmp_path):
    first, again, other = generate(40, seed=1), generate(40, seed=1), generate(40, seed=2)
    assert first == again and first != other
    path = tmp_path / "items.jsonl"
    assert main(["fleet", "items", "--per-task", "40", "--seed", "1", "--out", str(path)]) == 0
    items = load_query_set(path)  # every item passes its task's validation
    assert [it.id for it in items] == [r["id"] for r in first]
    prompts = {get_task(it.task).build_prompt(it, False).text for it in items}
    assert len(prompts) == len(items)
    assert {it.task for it in items} == {"arc_challenge", "mmlu", "winogrande", "gsm8k", "mbpp"}


def test_cli_config_spreads_models_as_base_plus_adapters(tmp_path):
    names = [f"org/m{k}" for k in range(7)]
    matrix = CorrectnessMatrix(
        np.zeros((7, 2), np.uint8),
        names,
        ["a", "b"],
        downloads=np.arange(7.0),
        is_base=np.array([0, 0, 0, 0, 0, 1, 1], bool),
    )
    save_npz(matrix, tmp_path / "m.npz")
    out = tmp_path / "fleet.json"
    argv = ["fleet", "config", "--matrix", str(tmp_path / "m.npz"), "--endpoints", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    config = load_fleet_config(out)
    assert [e.model_id for e in config.endpoints] == ["org/m6", "org/m5"]  # official first
    served = [e.model_id for e in config.endpoints]
    served += [a for e in config.endpoints for a in e.adapters]
    assert sorted(served) == sorted(names)
