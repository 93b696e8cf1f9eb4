"""A query set mixing two lm-eval tasks (arc_challenge scored from log-likelihoods, gsm8k from
generated text) searched through the simulated TGI fleet: per-task results under the lm-eval
task names, and a samples log whose responses regrade to the logged grade and extraction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fleet_support import FAST_RETRY, fleet_config
from gemfinder import samples
from gemfinder.candidates import Candidate
from gemfinder.oracles import EndpointConfig, InferenceOracle
from gemfinder.search.manager import SearchManager
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.store import Store
from gemfinder.tasks import get_task, parse_item
from gemfinder.tasks.lmeval import LM_EVAL_VERSION
from gemfinder.tasks.lmeval.build import build_query_set
from gemfinder.tasks.lmeval.grading import score_loglikelihoods

from tests import lm_eval_support as sup

MODELS = ["org/base", "org/lora"]


async def test_lm_eval_tasks_are_reported_apart_and_their_samples_regrade(
    tmp_path: Path, shared_data: Path
) -> None:
    arc = build_query_set("arc_challenge", {
        "test": sup.write_jsonl(tmp_path / "arc.jsonl", sup.ARC_TEST),
        "train": sup.write_jsonl(tmp_path / "arc_train.jsonl", sup.ARC_TRAIN),
    }, num_fewshot=1)  # fmt: skip
    gsm = shared_data / "gsm8k" / "test.jsonl"
    math = build_query_set("gsm8k", {
        "test": sup.write_jsonl(tmp_path / "g.jsonl", sup.shared_rows(gsm, 0, 6)),
        "train": sup.write_jsonl(tmp_path / "gf.jsonl", sup.shared_rows(gsm, 1000, 10)),
    }, num_fewshot=1, filter_name="flexible-extract")  # fmt: skip
    items = [parse_item(json.dumps(r), "item") for r in arc + math]
    correct = np.array([[(i + k) % 3 != 0 for i in range(len(items))] for k in range(2)])
    matrix = CorrectnessMatrix(correct.astype(np.uint8), MODELS, [it.id for it in items])
    tgi = {"name": "tgi", "model_id": MODELS[0], "adapters": {"lora": MODELS[1]}}
    store = Store(tmp_path / "s.db")
    async with Fleet(fleet_config(tgi), matrix, items) as fleet:
        url = fleet.url("tgi")
        oracle = InferenceOracle([EndpointConfig(url, adapters=("lora",))], policy=FAST_RETRY)
        cands = [Candidate(MODELS[0], url), Candidate(MODELS[1], url, adapter_id="lora")]
        spec = SearchSpec(cands, items, budget=2 * len(items), algorithm="sh", seed=1)
        spec.validate()
        manager = SearchManager(store, oracle)
        try:
            row = await manager.wait((await manager.start(spec)).id)
        finally:
            await manager.close()
            await oracle.aclose()
    assert row.state == "succeeded", row.error
    tasks = {t.task: t for t in row.result.per_task}
    assert set(tasks) == {"arc_challenge", "gsm8k"}
    assert tasks["gsm8k"].items == len(math) and tasks["arc_challenge"].items == len(arc)
    lines = list(samples.export(store, row.id))
    made = lines[0]["provenance"]
    assert made["lm_eval_built_with"] == [LM_EVAL_VERSION] and made["lm_eval_installed"]
    by_id = {it.id: it for it in items}
    body = lines[1:]
    assert {x["task"] for x in body} == {"arc_challenge", "gsm8k"}
    for x in body:
        item = by_id[x["item_id"]]
        if item.fields["output_type"] == "multiple_choice":
            # the raw response is the choices' log-likelihoods, the extraction the choice
            score, pred = score_loglikelihoods(item.fields, json.loads(x["response"]))
            assert (int(score), str(pred)) == (x["reward"], x["extracted"])
        else:
            grade = get_task(item.task).grade(item, x["response"])
            assert (int(grade.correct), grade.extracted) == (x["reward"], x["extracted"])
            assert x["extracted"] is not None
    store.close()
