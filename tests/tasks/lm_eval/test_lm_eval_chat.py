"""Chat candidates get what lm-eval sends a chat model: its chat template applied
(`apply_chat_template=True`), with few-shot examples as user/assistant turns or in one user
turn (`fewshot_as_multiturn`). The reference is lm_eval.simple_evaluate with a scripted chat
model built like lm-eval's OpenAI-chat model (messages as JSON, loaded back into the request);
then the same messages go through gemfinder's OpenAI-chat backend to the simulated fleet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lm_eval
import pytest
from fleet_support import FAST_RETRY, expected, fleet_config, make_matrix
from gemfinder.candidates import Candidate
from gemfinder.oracles import EndpointConfig, InferenceOracle, inference
from gemfinder.sim.fleet import Fleet
from gemfinder.tasks import get_task, parse_item
from gemfinder.tasks.lmeval.build import build_query_set
from gemfinder.tasks.lmeval.codeeval import guarded_evaluate_load
from gemfinder.tasks.lmeval.grading import grade_generation
from gemfinder.tasks.lmeval.loading import task_manager

from tests import lm_eval_support as sup


class ScriptedChatLM(sup.ScriptedLM):
    """lm-eval's chat-completions model without a tokenizer (TemplateAPI.apply_chat_template):
    the chat history becomes a JSON string, which the API model sends as `messages`."""

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        return json.dumps(chat_history, ensure_ascii=False)

    @property
    def tokenizer_name(self) -> str:
        return "scripted-chat"


def _run(yaml_path: Path, model: ScriptedChatLM, multiturn: bool, limit: int) -> list[dict]:
    with guarded_evaluate_load():
        results = lm_eval.simple_evaluate(
            model=model,
            tasks=[str(yaml_path)],
            task_manager=task_manager(),
            num_fewshot=3,
            limit=limit,
            log_samples=True,
            fewshot_random_seed=1234,
            bootstrap_iters=0,
            apply_chat_template=True,
            fewshot_as_multiturn=multiturn,
        )
    (samples,) = results["samples"].values()
    return samples


def _gsm8k(tmp: Path, shared: Path) -> dict[str, Path]:
    rows = sup.shared_rows(shared / "gsm8k" / "test.jsonl", 0, 6)
    pool = sup.shared_rows(shared / "gsm8k" / "test.jsonl", 1000, 20)
    return {
        "test": sup.write_jsonl(tmp / "t.jsonl", rows),
        "train": sup.write_jsonl(tmp / "f.jsonl", pool),
    }


@pytest.mark.parametrize("multiturn", [True, False])
def test_chat_messages_and_scores_match_lm_eval_with_its_chat_template(
    multiturn: bool, tmp_path: Path, shared_data: Path
) -> None:
    files = _gsm8k(tmp_path, shared_data)
    records = build_query_set(
        "gsm8k", files, num_fewshot=3, fewshot_as_multiturn=multiturn, filter_name="strict-match"
    )
    script: dict[str, str] = {}
    for rec in records:
        gold = rec["doc"]["answer"].split("####")[-1].strip()
        reply = [f"So #### {gold}", f"#### {gold}1", "no idea"][rec["doc_id"] % 3]
        script[json.dumps(rec["chat_messages"], ensure_ascii=False)] = reply
    model = ScriptedChatLM(script)
    samples = _run(
        sup.reference_yaml(tmp_path, "gsm8k", "gsm8k/gsm8k.yaml", files), model, multiturn, 6
    )
    by_doc = {s["doc_id"]: s for s in samples if s["filter"] == "strict-match"}
    assert sorted(model.prompts) == sorted(script)  # lm-eval asked exactly these
    for rec in records:
        sent = json.loads(by_doc[rec["doc_id"]]["arguments"][0][0])
        assert sent == rec["chat_messages"]
        if multiturn:  # 3 shots as user/assistant pairs, then the question
            assert [m["role"] for m in sent] == ["user", "assistant"] * 3 + ["user"]
        else:
            assert [m["role"] for m in sent] == ["user"]
            assert sent[0]["content"] == rec["prompt"]  # one turn: the plain prompt's text
        reply = script[json.dumps(sent, ensure_ascii=False)]
        score, extracted = grade_generation(rec, reply)
        assert extracted == by_doc[rec["doc_id"]]["filtered_resps"][0]
        assert score == by_doc[rec["doc_id"]]["exact_match"]
    # the few-shot examples are the ones of the plain (TGI) prompt: the same sampler draw
    for rec in records:
        shots = [m["content"] for m in rec["chat_messages"] if m["role"] == "assistant"]
        assert all(s in rec["prompt"] for s in shots)


async def test_the_chat_backend_sends_lm_evals_messages(
    tmp_path: Path, shared_data: Path, monkeypatch
) -> None:
    files = _gsm8k(tmp_path, shared_data)
    records = build_query_set("gsm8k", files, num_fewshot=2, filter_name="flexible-extract")
    items = [parse_item(json.dumps(r), "item") for r in records]
    models = ["org/chat-a", "org/chat-b"]
    matrix = make_matrix(items, models, seed=4)
    sent: list[dict[str, Any]] = []
    real_call = inference.Call
    monkeypatch.setattr(inference, "Call", lambda **kw: sent.append(kw) or real_call(**kw))
    specs = [{"name": f"v{k}", "model_id": m, "server": "vllm"} for k, m in enumerate(models)]
    async with Fleet(fleet_config(*specs), matrix, items) as fleet:
        urls = [fleet.url(s["name"]) for s in specs]
        oracle = InferenceOracle(
            [EndpointConfig(u, backend="openai") for u in urls], policy=FAST_RETRY
        )
        cands = [Candidate(m, u, backend="openai") for m, u in zip(models, urls, strict=True)]
        results = [await oracle.answer(c, it) for c in cands for it in items]
        await oracle.aclose()
    assert [r.reward for r in results] == [
        expected(matrix, m, it.id) for m in models for it in items
    ]
    task = get_task("lm_eval")
    for kw, it in zip(sent, items * 2, strict=True):
        assert kw["prompt"].messages == it.fields["chat_messages"]
        assert kw["prompt"].messages == task.build_prompt(it, system_prompt=True).messages
        assert len(kw["prompt"].messages) == 5  # 2 shots x (user, assistant) + the question
