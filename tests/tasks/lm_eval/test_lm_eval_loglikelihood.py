"""Multiple-choice lm_eval items over the wire: each choice's log-likelihood from TGI
(`/generate` prefill log-probabilities) and from vLLM (`/v1/completions` echo + logprobs),
against the simulated fleet on real sockets; grades equal to the matrix, to each other and to
lm-eval's own acc for the same log-likelihoods; one query per item; chat refused up front."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import numpy as np
import pytest
from fleet_support import FAST_RETRY, fleet_config
from gemfinder.backends.errors import GarbageResponse
from gemfinder.backends.loglik import continuation_sum, offsets_from_texts
from gemfinder.candidates import Candidate
from gemfinder.cli import main
from gemfinder.errors import UserError
from gemfinder.oracles import EndpointConfig, InferenceOracle
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.tasks import get_task, parse_item
from gemfinder.tasks.lmeval.build import build_query_set
from gemfinder.tasks.lmeval.grading import score_loglikelihoods

from tests import lm_eval_support as sup

MODELS = ["org/base", "org/lora"]
SHOTS = 2


@pytest.fixture(scope="module")
def arc(tmp_path_factory) -> tuple[Path, list]:
    tmp = tmp_path_factory.mktemp("arc")
    files = {
        "test": sup.write_jsonl(tmp / "test.jsonl", sup.ARC_TEST),
        "train": sup.write_jsonl(tmp / "train.jsonl", sup.ARC_TRAIN),
    }
    records = build_query_set("arc_challenge", files, num_fewshot=SHOTS)
    return files, [parse_item(json.dumps(r), "item") for r in records]


def _matrix(items, models) -> CorrectnessMatrix:
    # Each model right and wrong on some items; rows differ, so a swap of models would show.
    correct = np.array([[(i + k) % 3 != 0 for i in range(len(items))] for k in range(len(models))])
    return CorrectnessMatrix(correct.astype(np.uint8), models, [it.id for it in items])


def _endpoints(**extra):
    tgi = {"name": "tgi", "model_id": MODELS[0], "adapters": {"lora": MODELS[1]}, **extra}
    vllm = {"name": "vllm", "model_id": MODELS[0], "adapters": {"lora": MODELS[1]}}
    return tgi, {**vllm, "server": "vllm"}


def test_continuation_tokens_are_found_by_position() -> None:
    full = "Q: sky?\nA: blue"
    # <s> leads the prefill; " blue" is the continuation; a token straddling the boundary
    # ("A: b" style merges) counts for the continuation.
    texts = ["<s>", "Q", ":", " sky", "?", "\n", "A", ":", " blue"]
    offsets = offsets_from_texts(texts, full)
    assert offsets[0] == -3 and offsets[-1] == len("Q: sky?\nA:")
    lps = [None, None, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -0.25]
    assert continuation_sum(offsets, lps, "Q: sky?\nA:", full) == -0.25
    assert continuation_sum([0, 3, 6], [None, -1.0, -2.0], "abcd", "abcdefg") == -3.0
    # a generated token after the text (vLLM's max_tokens=1) is not counted
    assert continuation_sum([0, 4, 7], [None, -2.0, -9.0], "abcd", "abcdefg") == -2.0
    with pytest.raises(GarbageResponse, match="do not spell"):
        offsets_from_texts(["Q", "A"], full)
    with pytest.raises(GarbageResponse, match="no log-probability"):
        continuation_sum([0, 4], [None, None], "abcd", "abcdefg")


async def _answers(items, matrix, backend: str, **extra):
    async with Fleet(fleet_config(*_endpoints(**extra)), matrix, items) as fleet:
        name = "tgi" if backend == "tgi" else "vllm"
        url = fleet.url(name)
        oracle = InferenceOracle(
            [EndpointConfig(url, backend, adapters=("lora",))], policy=FAST_RETRY
        )
        cands = [
            Candidate(MODELS[0], url, backend=backend),
            Candidate(MODELS[1], url, backend=backend, adapter_id="lora"),
        ]
        results = [await oracle.answer(c, it) for c in cands for it in items]
        await oracle.aclose()
        state = fleet.state(name)
        return results, state


async def test_tgi_and_vllm_give_the_matrix_grade_and_lm_evals_acc(arc, tmp_path: Path) -> None:
    files, items = arc
    matrix = _matrix(items, MODELS)
    want = [int(matrix.correct[k, i]) for k in range(len(MODELS)) for i in range(len(items))]
    tgi, tgi_state = await _answers(items, matrix, "tgi")
    vllm, vllm_state = await _answers(items, matrix, "openai_completions")
    assert [r.reward for r in tgi] == want == [r.reward for r in vllm]
    assert {0, 1} == set(want)
    # The same log-likelihoods both ways, one request per choice: what each API was asked
    task = get_task(items[0].task)
    for a, b in zip(tgi, vllm, strict=True):
        assert json.loads(a.response) == pytest.approx(json.loads(b.response))
        # the recorded response grades again to the same reward
        item = next(it for it in items if it.id == a.item_id)
        assert task.grade_loglikelihoods(item, json.loads(a.response)).correct == a.reward
    n_requests = sum(len(it.fields["requests"]) for it in items) * len(MODELS)
    assert tgi_state.requests["/generate"] == n_requests
    assert vllm_state.requests["/v1/completions"] == n_requests
    params = tgi_state.bodies[0]["body"]["parameters"]
    assert params["decoder_input_details"] is True and params["max_new_tokens"] == 1
    body = vllm_state.bodies[0]["body"]
    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 1
    # lm-eval's own acc on the log-likelihoods the fleet gave the base model
    lls = {}
    for item, res in zip(items, tgi[: len(items)], strict=True):
        for (ctx, cont), ll in zip(item.fields["requests"], json.loads(res.response), strict=True):
            lls[(ctx, cont)] = ll
    bonus = {pair: ll - sup.scripted_ll(*pair) for pair, ll in lls.items()}
    samples = sup.run_lm_eval(
        sup.reference_yaml(tmp_path, "arc_challenge", "arc/arc_challenge.yaml", files),
        sup.ScriptedLM(bonus=bonus),
        num_fewshot=SHOTS,
        limit=len(items),
        seed=1234,
    )
    by_doc = {s["doc_id"]: s for s in samples}
    for item, res in zip(items, tgi[: len(items)], strict=True):
        s = by_doc[item.fields["doc_id"]]
        assert res.reward == s["acc"], item.id
        fields = copy.deepcopy(item.fields)
        fields["metric"] = {"name": "acc_norm", "kwargs": {}}  # the fleet's answer is argmax
        assert score_loglikelihoods(fields, json.loads(res.response))[0] == s["acc_norm"]


async def test_tgi_boundary_from_tokenize_when_prefill_texts_do_not_spell_the_input(
    arc, monkeypatch
) -> None:
    """SentencePiece tokenizers decode a lone token without its leading space, so the prefill
    texts do not spell the input: the boundary then comes from POST /tokenize, by token id."""
    from gemfinder.sim.fleet.simulator import SimulatedModel

    real = SimulatedModel.loglikelihood_tokens

    def sentencepiece_like(self, text, adapter_id):
        found = real(self, text, adapter_id)
        if found is None:
            return None
        row, toks = found
        return row, [("<s>", None), *((t.lstrip(" "), lp) for t, lp in toks)]

    monkeypatch.setattr(SimulatedModel, "loglikelihood_tokens", sentencepiece_like)
    monkeypatch.setattr(
        "gemfinder.sim.fleet.server.tokens.token_id",
        lambda piece: 1 if piece == "<s>" else 3 + sum(piece.lstrip(" ").encode()) % 30000,
    )
    _, items = arc
    matrix = _matrix(items, MODELS)
    results, state = await _answers(items, matrix, "tgi")
    want = [int(matrix.correct[k, i]) for k in range(len(MODELS)) for i in range(len(items))]
    assert [r.reward for r in results] == want
    assert state.requests["/tokenize"] == state.requests["/generate"] > 0


async def test_a_failure_on_one_choice_fails_the_query(arc) -> None:
    _, items = arc
    matrix = _matrix(items, MODELS)
    # The second request of the first query gets a 422 (not retried): the whole query fails.
    results, state = await _answers(items[:1], matrix, "tgi", fault_script=[None, "422"])
    first = results[0]
    assert first.reward is None and first.failure is not None
    assert first.failure.value == "validation" and "validation" in (first.error or "")
    assert results[1].reward == int(matrix.correct[1, 0])  # the next query is whole again
    # the failed query's choices went out together (idle endpoint: one slot each), so it sent
    # 2 to 4 of them before the 422 stopped it; the next query asked all of its choices again
    n = len(items[0].fields["requests"])
    assert n + 2 <= state.requests["/generate"] <= 2 * n


def test_chat_backends_are_refused_naming_candidate_and_item(arc) -> None:
    _, items = arc
    cands = [
        Candidate(MODELS[0], "http://127.0.0.1:9", backend="tgi"),
        Candidate(MODELS[1], "http://127.0.0.1:8", backend="openai"),
    ]
    with pytest.raises(UserError) as err:
        SearchSpec(candidates=cands, items=items, budget=20, seed=1).validate()
    assert err.value.field == "spec.candidates[1].backend"
    assert "org/lora" in err.value.reason and items[0].id in err.value.reason
    assert "BACKEND_OPENAI_COMPLETIONS" in err.value.reason


def test_grade_cli_regrades_recorded_loglikelihoods(arc, tmp_path: Path, capsys) -> None:
    _, items = arc
    item = items[0]  # gold 1 of 4 choices
    lines = [
        {"task": item.task, **item.fields, "response": json.dumps(lls)}
        for lls in ([-3.0, -1.0, -5.0, -9.0], [-1.0, -3.0, -5.0, -9.0], [-1.0, -2.0], "x")
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["grade", str(path)]) == 1  # the last two lines are refused, the rest graded
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o.get("correct") for o in out] == [True, False, None, None]
    assert out[0]["extracted"] == "1"
    assert "JSON list of 4 log-likelihoods" in out[2]["error"] == out[3]["error"]


def test_items_graded_from_text_are_not_scored_from_loglikelihoods(arc) -> None:
    _, items = arc
    assert get_task(items[0].task).loglikelihood_requests(items[0])
    gsm = parse_item(
        json.dumps({"id": "g", "task": "gsm8k", "question": "1+1?", "answer": "#### 2"}), "i"
    )
    assert get_task("gsm8k").loglikelihood_requests(gsm) == ()


async def test_search_on_an_lm_eval_multiple_choice_set_picks_the_best(
    arc, tmp_path: Path, capsys
) -> None:
    _, items = arc
    models = [f"org/m{k}" for k in range(4)]
    # m2 is right on every item, the others on a third to two thirds of them.
    rows = [[(i + k) % 3 != 0 for i in range(len(items))] for k in range(4)]
    rows[2] = [True] * len(items)
    rows[0] = [i % 3 == 0 for i in range(len(items))]
    matrix = CorrectnessMatrix(np.array(rows, dtype=np.uint8), models, [it.id for it in items])
    query_set = tmp_path / "q.jsonl"
    query_set.write_text(
        "".join(json.dumps({"id": it.id, "task": it.task, **it.fields}) + "\n" for it in items)
    )
    spec = {"name": "tgi", "model_id": models[0], "adapters": {m: m for m in models[1:]}}
    vllm = {"name": "vllm", "model_id": models[3], "server": "vllm"}
    spec["adapters"].pop(models[3])
    async with Fleet(fleet_config(spec, vllm), matrix, items) as fleet:
        tgi_url, vllm_url = fleet.url("tgi"), fleet.url("vllm")
        cands = [{"model_id": models[0], "endpoint": tgi_url}]
        cands += [{"model_id": m, "endpoint": tgi_url, "adapter_id": m} for m in models[1:3]]
        cands += [
            {"model_id": models[3], "endpoint": vllm_url, "backend": "BACKEND_OPENAI_COMPLETIONS"}
        ]
        (tmp_path / "c.json").write_text(json.dumps(cands))
        (tmp_path / "e.json").write_text(
            json.dumps(
                [
                    {"url": tgi_url, "adapters": models[1:3]},
                    {"url": vllm_url, "backend": "BACKEND_OPENAI_COMPLETIONS"},
                ]
            )
        )
        budget = 4 * len(items)
        argv = ["search", "--query-set", str(query_set), "--candidates", str(tmp_path / "c.json")]
        argv += ["--endpoints", str(tmp_path / "e.json"), "--budget", str(budget), "--json"]
        argv += ["--algorithm", "uniform"]
        code = await asyncio.to_thread(main, argv)
        served = sum(sum(fleet.state(n).served.values()) for n in fleet.names)
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["recommended_model_id"] == models[2]
    assert result["queries_spent"] == budget  # one query per item and model, all choices in it
    assert served == sum(len(it.fields["requests"]) for it in items) * 4


@pytest.mark.parametrize("backend", ["tgi", "openai_completions"])
async def test_choices_run_in_parallel_on_free_slots_and_never_above_the_limit(
    arc, backend: str
) -> None:
    """An idle endpoint scores a 4-choice item in about one request's time; with a
    concurrency of 1 the choices go one after another and the server, which refuses a second
    request in flight (429), never sees one."""
    _, items = arc
    item = next(it for it in items if len(it.fields["requests"]) == 4)
    matrix = _matrix(items, MODELS)
    name = "tgi" if backend == "tgi" else "vllm"
    timings = {}
    for limit in (8, 1):
        extra = {"latency": {"median_s": 0.2, "sigma": 0.0}, "max_concurrent_requests": limit}
        tgi, vllm = _endpoints(**extra)
        vllm = {**vllm, **extra}
        async with Fleet(fleet_config(tgi, vllm), matrix, items) as fleet:
            url = fleet.url(name)
            oracle = InferenceOracle(
                [EndpointConfig(url, backend, adapters=("lora",), max_concurrency=limit)],
                policy=FAST_RETRY,
            )
            t0 = asyncio.get_running_loop().time()
            result = await oracle.answer(Candidate(MODELS[0], url, backend=backend), item)
            timings[limit] = asyncio.get_running_loop().time() - t0
            await oracle.aclose()
            state = fleet.state(name)
        assert result.reward == int(matrix.correct[0, matrix.items.index(item.id)])
        assert state.statuses[429] == 0 and sum(state.statuses.values()) >= 4
    assert timings[8] < 0.5 < timings[1], timings  # 4 x 0.2 s one after another
