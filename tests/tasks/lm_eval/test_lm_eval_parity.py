"""Acceptance: gemfinder's lm-eval query sets against lm-eval itself, on the same documents and
the same scripted answers: identical prompts byte for byte (few-shot included) and identical
per-document scores (lm_eval.simple_evaluate with a scripted model class is the reference)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from gemfinder.tasks.lmeval.build import build_query_set
from gemfinder.tasks.lmeval.grading import grade_generation, score_loglikelihoods

from tests import lm_eval_support as sup

SEED = 1234


def _files(tmp: Path, splits: dict[str, list[dict[str, Any]]]) -> dict[str, Path]:
    return {s: sup.write_jsonl(tmp / f"{s}.jsonl", rows) for s, rows in splits.items()}


MC_CASES = {
    # task: (its YAML in lm-eval, splits, num_fewshot)
    "arc_challenge": ("arc/arc_challenge.yaml", {"test": sup.ARC_TEST, "train": sup.ARC_TRAIN}, 3),
    "hellaswag": (
        "hellaswag/hellaswag.yaml",
        {"validation": sup.HELLASWAG_VAL, "train": sup.HELLASWAG_TRAIN},
        2,
    ),
    "mmlu_abstract_algebra": (
        "mmlu/default/mmlu_abstract_algebra.yaml",
        {"test": sup.MMLU_TEST, "dev": sup.MMLU_DEV},
        5,
    ),
    "winogrande": (
        "winogrande/default.yaml",
        {"validation": sup.WINOGRANDE_VAL, "train": sup.WINOGRANDE_TRAIN},
        2,
    ),
}


@pytest.mark.parametrize(
    ("task", "seed"), [(t, SEED) for t in sorted(MC_CASES)] + [("arc_challenge", 7)]
)
def test_multiple_choice_prompts_and_scores_match_lm_eval(
    task: str, seed: int, tmp_path: Path
) -> None:
    yaml_rel, splits, shots = MC_CASES[task]
    files = _files(tmp_path, splits)
    eval_docs = next(iter(splits.values()))
    records = build_query_set(task, files, num_fewshot=shots, limit=len(eval_docs), seed=seed)
    if seed != SEED:  # the seed reaches lm-eval's sampler: other few-shot examples
        default = build_query_set(task, files, num_fewshot=shots, limit=len(eval_docs))
        assert [r["requests"] for r in records] != [r["requests"] for r in default]
    # The model favours the gold choice on every third document, a wrong one on the next, and
    # the rest are left to the hashed log-likelihoods (where acc and acc_norm can disagree).
    bonus: dict[tuple[str, str], float] = {}
    for rec in records:
        pick = {0: rec["gold"], 1: (rec["gold"] + 1) % len(rec["choices"])}.get(rec["doc_id"] % 3)
        if pick is not None:
            bonus[tuple(rec["requests"][pick])] = 25.0
    samples = sup.run_lm_eval(
        sup.reference_yaml(tmp_path, task, yaml_rel, files),
        sup.ScriptedLM(bonus=bonus),
        num_fewshot=shots,
        limit=len(eval_docs),
        seed=seed,
    )
    assert len(records) == len(samples) == len(eval_docs)
    by_doc = {s["doc_id"]: s for s in samples}
    seen = {"acc": set(), "acc_norm": set()}
    for rec in records:
        s = by_doc[rec["doc_id"]]
        # Byte-for-byte: every (context, continuation) lm-eval asked the model about.
        assert [list(a) for a in s["arguments"]] == rec["requests"]
        assert rec["requests"][0][0].count("\n\n") >= shots  # the few-shot examples are in
        lls = [sup.scripted_ll(c, t) + bonus.get((c, t), 0.0) for c, t in rec["requests"]]
        for metric in ("acc", "acc_norm") if "acc_norm" in s else ("acc",):
            fields = copy.deepcopy(rec)
            fields["metric"] = {"name": metric, "kwargs": {}}
            score, _ = score_loglikelihoods(fields, lls)
            assert score == s[metric], (task, rec["doc_id"], metric)
            seen[metric].add(score)
    assert seen["acc"] == {0.0, 1.0}, "scripted log-likelihoods should give hits and misses"


def _gsm8k_answer(i: int, doc: dict[str, Any]) -> str:
    gold = doc["answer"].split("####")[-1].strip()
    return [
        f"Step by step.\n#### {gold}\n\nQuestion: what next?",  # strict and flexible hit
        f"The answer is {gold}.",  # only the flexible filter finds it
        f"#### {int(gold.replace(',', '')) + 1}",  # wrong
        f"#### ${gold}</s>more",  # '$' ignored by the metric; cut at </s>
        "I do not know.",
    ][i % 5]


@pytest.mark.parametrize("filter_name", ["strict-match", "flexible-extract"])
def test_gsm8k_prompts_extraction_and_scores_match_lm_eval(
    filter_name: str, tmp_path: Path, shared_data: Path
) -> None:
    test = sup.shared_rows(shared_data / "gsm8k" / "test.jsonl", 0, 10)
    train = sup.shared_rows(shared_data / "gsm8k" / "test.jsonl", 1000, 40)  # a stand-in pool
    files = _files(tmp_path, {"test": test, "train": train})
    records = build_query_set(
        "gsm8k", files, num_fewshot=5, limit=len(test), seed=SEED, filter_name=filter_name
    )
    script = {r["prompt"]: _gsm8k_answer(r["doc_id"], r["doc"]) for r in records}
    model = sup.ScriptedLM(script)
    samples = sup.run_lm_eval(
        sup.reference_yaml(tmp_path, "gsm8k", "gsm8k/gsm8k.yaml", files),
        model,
        num_fewshot=5,
        limit=len(test),
        seed=SEED,
    )
    by_doc = {s["doc_id"]: s for s in samples if s["filter"] == filter_name}
    assert sorted(model.prompts) == sorted(script)
    scores = []
    for rec in records:
        s = by_doc[rec["doc_id"]]
        assert s["arguments"][0][0] == rec["prompt"]
        assert rec["prompt"].count("Question:") == 6  # 5 shots + the question
        assert rec["until"] == ["Question:", "</s>", "<|im_end|>"]
        score, extracted = grade_generation(rec, script[rec["prompt"]])
        assert extracted == s["filtered_resps"][0]
        assert score == s["exact_match"], (rec["doc_id"], extracted)
        scores.append(score)
    assert set(scores) == {0.0, 1.0}


def _mbpp_answer(i: int, doc: dict[str, Any]) -> str:
    return [
        doc["code"] + "\n[DONE]",  # the reference solution: passes
        "def nothing():\n    return None\n[DONE]",  # fails the asserts
        doc["code"] + "\n    return (\n[DONE]",  # syntax error
        "```python\n" + doc["code"] + "\n```\n[DONE]",  # lm-eval's mbpp has no code filter
    ][i % 4]


def test_mbpp_prompts_code_and_pass_at_1_match_lm_eval(tmp_path: Path, shared_data: Path) -> None:
    rows = sup.shared_rows(shared_data / "mbpp" / "mbpp.jsonl", 0, 30)
    test = [r for r in rows if 11 <= r["task_id"] <= 510][:4]  # MBPP's test split ids
    files = _files(tmp_path, {"test": test})
    records = build_query_set("mbpp", files, limit=len(test), seed=SEED)
    script = {r["prompt"]: _mbpp_answer(r["doc_id"], r["doc"]) for r in records}
    samples = sup.run_lm_eval(
        sup.reference_yaml(tmp_path, "mbpp", "mbpp/mbpp.yaml", files),
        sup.ScriptedLM(script),
        num_fewshot=None,
        limit=len(test),
        seed=SEED,
    )
    by_doc = {s["doc_id"]: s for s in samples}
    scores = []
    for rec in records:
        s = by_doc[rec["doc_id"]]
        assert s["arguments"][0][0] == rec["prompt"]
        assert rec["prompt"].count("[BEGIN]") == 4 and rec["prompt"].endswith("[BEGIN]\n")
        assert rec["metric"]["name"] == "pass_at_1" and rec["until"] == ["[DONE]"]
        score, extracted = grade_generation(rec, script[rec["prompt"]])
        assert extracted == s["filtered_resps"][0]  # the code that runs, identical
        assert score == s["pass_at_1"], rec["doc_id"]  # both ran in gemfinder's sandbox
        scores.append(score)
    assert scores == [1.0, 0.0, 0.0, 0.0]
