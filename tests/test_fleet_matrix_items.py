"""The fleet answers only from its correctness matrix: no coin flips for items it does not have.

Items of the query set that are not matrix columns are refused when the fleet starts (naming
them); a prompt that matches no item is a 422 with TGI's error body, never a made-up answer;
`fleet items --matrix` writes a query set whose items are exactly the matrix's.
"""

from __future__ import annotations

import json

import aiohttp
import numpy as np
import pytest
from fleet_support import fleet_config, make_items, make_matrix
from gemfinder.cli import main
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.build import fleet_dict_from_matrix
from gemfinder.sim.fleet.synthetic_items import generate, write_jsonl
from gemfinder.sim.matrix import CorrectnessMatrix, save_npz
from gemfinder.tasks import get_task, load_query_set

MODELS = ["org/base", "org/lora-a"]


def _config():
    return fleet_config({"name": "ep", "model_id": "org/base", "adapters": ["org/lora-a"]})


def test_fleet_refuses_items_outside_its_matrix():
    items = make_items(4, tasks=("arc_challenge", "gsm8k"))
    matrix = make_matrix(items[:5], MODELS)  # the last 3 items are not columns
    with pytest.raises(ValueError, match="3 of 8 items") as err:
        Fleet(_config(), matrix, items)
    assert "gsm8k/1" in str(err.value) and "gsm8k/3" in str(err.value)
    assert "arc_challenge/0" not in str(err.value)


async def test_unknown_prompt_is_a_422_with_tgi_body():
    items = make_items(2, tasks=("arc_challenge",))
    matrix = make_matrix(items, MODELS)
    async with Fleet(_config(), matrix, items) as fleet, aiohttp.ClientSession() as http:
        url = fleet.url("ep")
        for route, body in [
            ("/generate", {"inputs": "What is the capital of Mars?", "parameters": {}}),
            ("/", {"inputs": "hello there", "parameters": {"max_new_tokens": 5}}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ]:
            async with http.post(url + route, json=body) as resp:
                assert resp.status == 422, route
                payload = await resp.json()
            assert payload["error_type"] == "validation"
            assert "matches no item" in payload["error"]
        # A known prompt is still answered from the matrix.
        prompt = get_task(items[0].task).build_prompt(items[0], False).text
        body = {"inputs": prompt, "parameters": {"max_new_tokens": 20, "do_sample": False}}
        async with http.post(url + "/generate", json=body) as resp:
            assert resp.status == 200
    assert fleet.state("ep").served == {"org/base": 1}


def _tree(tmp_path) -> CorrectnessMatrix:
    ids = [f"arc_challenge/{i}" for i in (0, 2, 5)] + ["gsm8k/1", "mmlu/0", "mmlu/3"]
    matrix = CorrectnessMatrix(
        np.ones((2, len(ids)), np.uint8),
        MODELS,
        ids,
        downloads=np.array([100.0, 1.0]),
        is_base=np.array([True, False]),
    )
    save_npz(matrix, tmp_path / "tree.npz")
    return matrix


def test_items_for_a_matrix_are_exactly_its_items(tmp_path, capsys):
    matrix = _tree(tmp_path)
    out = tmp_path / "items.jsonl"
    assert main(["fleet", "items", "--matrix", str(tmp_path / "tree.npz"), "--out", str(out)]) == 0
    assert "wrote 6 items" in capsys.readouterr().out
    items = load_query_set(out)
    assert sorted(it.id for it in items) == sorted(matrix.items)
    # The same text as the plain generator gives those ids (prefix-stable per task).
    plain = {r["id"]: r for r in generate(6, seed=0, tasks=("arc_challenge", "gsm8k", "mmlu"))}
    for line in out.read_text().splitlines():
        record = json.loads(line)
        assert record == plain[record["id"]]
    # --tasks and --per-task narrow it down.
    argv = ["fleet", "items", "--matrix", str(tmp_path / "tree.npz"), "--out", str(out)]
    assert main([*argv, "--tasks", "arc_challenge,mmlu", "--per-task", "3"]) == 0
    assert sorted(it.id for it in load_query_set(out)) == [
        "arc_challenge/0",
        "arc_challenge/2",
        "mmlu/0",
    ]


def test_items_for_a_matrix_without_generators_is_an_error(tmp_path, capsys):
    ids = ["arc_challenge/0", "hellaswag/4"]
    matrix = CorrectnessMatrix(np.ones((2, 2), np.uint8), MODELS, ids)
    save_npz(matrix, tmp_path / "m.npz")
    argv = ["fleet", "items", "--matrix", str(tmp_path / "m.npz"), "--out", str(tmp_path / "i")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--matrix" in err and "hellaswag/4" in err and len(err.strip().splitlines()) == 1


def test_serve_refuses_a_query_set_outside_the_matrix(tmp_path, capsys):
    matrix = _tree(tmp_path)
    write_jsonl(generate(3, seed=0, tasks=("arc_challenge",)), tmp_path / "items.jsonl")
    argv = ["fleet", "serve", "--matrix", str(tmp_path / "tree.npz"), "--endpoints", "1"]
    argv += ["--query-set", str(tmp_path / "items.jsonl"), "--duration", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gemfinder fleet: error: --query-set:")
    assert "1 of 3 items" in err and "arc_challenge/1" in err and "fleet items --matrix" in err
    # The same through a config file: the field is the config's query_set.
    fleet = fleet_dict_from_matrix(matrix, 1)
    fleet |= {"matrix": "tree.npz", "query_set": "items.jsonl"}
    (tmp_path / "fleet.json").write_text(json.dumps(fleet))
    assert main(["fleet", "serve", "--config", str(tmp_path / "fleet.json")]) == 2
    assert "query_set: 1 of 3 items" in capsys.readouterr().err
