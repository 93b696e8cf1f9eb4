"""A user's own lm-eval task (docs/examples/lm-eval-custom: YAML, a `!function`, 20 hand-written
items) built through --lm-eval-include and graded by gemfinder, against lm-eval itself running
the same YAML on the same data with the same scripted answers: identical prompts, identical
per-document scores. Also the server's side: an operator-registered include directory serves the
task by name."""

from __future__ import annotations

import json
from pathlib import Path

from gemfinder.cli import main
from gemfinder.tasks.lmeval.build import build_query_set
from gemfinder.tasks.lmeval.catalog import Catalog, Request
from gemfinder.tasks.lmeval.grading import grade_generation, score_loglikelihoods

from tests import lm_eval_support as sup

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "lm-eval-custom"
TASKS = EXAMPLE / "tasks"
FILES = {"test": EXAMPLE / "data" / "test.jsonl", "train": EXAMPLE / "data" / "train.jsonl"}
INCLUDE = (str(TASKS),)


def _reference_yaml(tmp: Path, task: str) -> Path:
    """lm-eval's own way to run the user's YAML on local files: include it, set the data."""
    cfg = {
        "include": str(TASKS / f"{task}.yaml"),
        "task": task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {s: str(p) for s, p in FILES.items()}},
    }
    path = tmp / f"ref_{task}.yaml"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


def _answer(i: int, doc: dict) -> str:
    gold = doc["answer"]
    return [
        f"{doc['question'].split()[3]} ... so it is {gold}.\n\nQuestion: next",  # last number
        f"{gold[:-1]},{gold[-1]}" if len(gold) > 3 and "." not in gold else gold,  # comma ignored
        f"It is {gold}0.",  # wrong
        "I am not sure.",  # no number: [invalid]
    ][i % 4]


def test_generated_answers_match_lm_eval_on_the_users_task(tmp_path: Path) -> None:
    records = build_query_set("unit_conversion", FILES, include=INCLUDE)
    assert len(records) == 20 and records[0]["lm_eval"]["num_fewshot"] == 3
    script = {r["prompt"]: _answer(r["doc_id"], r["doc"]) for r in records}
    model = sup.ScriptedLM(script)
    samples = sup.run_lm_eval(_reference_yaml(tmp_path, "unit_conversion"), model, None, 20, 1234)
    assert sorted(model.prompts) == sorted(script)
    by_doc = {s["doc_id"]: s for s in samples}
    scores = []
    for rec in records:
        s = by_doc[rec["doc_id"]]
        assert s["arguments"][0][0] == rec["prompt"]  # byte for byte, 3 shots included
        assert rec["prompt"].count("Question:") == 4
        score, extracted = grade_generation(rec, script[rec["prompt"]])
        assert extracted == s["filtered_resps"][0]
        assert score == s["exact_match"], (rec["doc_id"], extracted)
        scores.append(score)
    assert scores.count(1.0) == 10 and scores.count(0.0) == 10


def test_log_likelihoods_match_lm_eval_on_the_users_function_prompt(tmp_path: Path) -> None:
    records = build_query_set("unit_conversion_mc", FILES, include=INCLUDE)
    first = records[0]["requests"][0][0]
    assert first.endswith("[volume] Question: How many millilitres are in 2.5 litres?\nAnswer:")
    bonus = {}
    for rec in records:
        pick = {0: rec["gold"], 1: (rec["gold"] + 1) % 4}.get(rec["doc_id"] % 3)
        if pick is not None:
            bonus[tuple(rec["requests"][pick])] = 25.0
    samples = sup.run_lm_eval(
        _reference_yaml(tmp_path, "unit_conversion_mc"), sup.ScriptedLM(bonus=bonus), None, 20, 1234
    )
    by_doc = {s["doc_id"]: s for s in samples}
    hits = set()
    for rec in records:
        s = by_doc[rec["doc_id"]]
        assert [list(a) for a in s["arguments"]] == rec["requests"]
        lls = [sup.scripted_ll(c, t) + bonus.get((c, t), 0.0) for c, t in rec["requests"]]
        for metric in ("acc", "acc_norm"):
            score, _ = score_loglikelihoods({**rec, "metric": {"name": metric}}, lls)
            assert score == s[metric], (rec["doc_id"], metric)
            hits.add(score)
    assert hits == {0.0, 1.0}


def test_the_cli_and_the_servers_catalog_build_the_same_custom_items(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "q.jsonl"
    argv = ["queryset", "build", "--lm-eval-task", "unit_conversion", "--lm-eval-include",
            str(TASKS), "--data-files", *(f"{s}={p}" for s, p in FILES.items()), "--limit", "5",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    cli = [json.loads(line) for line in out.read_text().splitlines()]
    registered = tmp_path / "tasks.json"
    registered.write_text(json.dumps({"unit_conversion": str(EXAMPLE / "data")}))
    cat = Catalog.load(str(registered), INCLUDE, "--lm-eval-tasks")
    items = cat.items(Request("unit_conversion", limit=5), "spec.query_set.lm_eval")
    assert [{"id": it.id, "task": it.task, **it.fields} for it in items] == cli
    # lm-eval indexes directories: a file is refused rather than silently ignored
    assert main([*argv[:5], str(TASKS / "unit_conversion.yaml"), *argv[6:]]) == 2
    assert "give the directory holding it" in capsys.readouterr().err
