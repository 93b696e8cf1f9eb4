"""lm-eval items through the oracle: each is sent with its own stop strings and token cap, and
the simulated fleet's answers, graded with the task's filters and metric, match the matrix."""

from __future__ import annotations

import json
from pathlib import Path

from fleet_support import FAST_RETRY, expected, fleet_config, make_matrix
from gemfinder.candidates import Candidate
from gemfinder.oracles import EndpointConfig, InferenceOracle, inference
from gemfinder.sim.fleet import Fleet
from gemfinder.tasks import parse_item
from gemfinder.tasks.lmeval.build import build_query_set

from tests import lm_eval_support as sup

MODELS = ["org/base", "org/lora"]


async def test_oracle_sends_each_items_decoding_and_grades_as_lm_eval(
    tmp_path: Path, shared_data: Path, monkeypatch
) -> None:
    rows = sup.shared_rows(shared_data / "gsm8k" / "test.jsonl", 0, 8)
    pool = sup.shared_rows(shared_data / "gsm8k" / "test.jsonl", 1000, 20)
    files = {
        "test": sup.write_jsonl(tmp_path / "t.jsonl", rows),
        "train": sup.write_jsonl(tmp_path / "f.jsonl", pool),
    }
    records = build_query_set("gsm8k", files, num_fewshot=2, filter_name="flexible-extract")
    items = [parse_item(json.dumps(r), "item") for r in records]
    sent = []
    real_call = inference.Call
    monkeypatch.setattr(inference, "Call", lambda **kw: sent.append(kw) or real_call(**kw))
    matrix = make_matrix(items, MODELS, seed=3)
    spec = {"name": "e", "model_id": MODELS[0], "adapters": {"lora": MODELS[1]}}
    async with Fleet(fleet_config(spec), matrix, items) as fleet:
        url = fleet.url("e")
        oracle = InferenceOracle([EndpointConfig(url, adapters=("lora",))], policy=FAST_RETRY)
        cands = [Candidate(MODELS[0], url), Candidate(MODELS[1], url, adapter_id="lora")]
        results = [await oracle.answer(c, it) for c in cands for it in items]
        await oracle.aclose()
    assert [r.reward for r in results] == [
        expected(matrix, m, it.id) for m in MODELS for it in items
    ]
    assert {0, 1} <= {r.reward for r in results}
    for kw in sent:  # lm-eval's prompt (2 shots) with gsm8k's until and lm-eval's token cap
        assert kw["prompt"].text.count("Question:") == 3
        assert kw["generation"].stop == ("Question:", "</s>", "<|im_end|>")
        assert kw["generation"].max_new_tokens == 256
