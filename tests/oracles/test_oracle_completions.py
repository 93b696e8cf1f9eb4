"""The OpenAI completions backend against the fleet speaking vLLM's `/v1/completions`, over
sockets: the request vLLM needs for greedy raw-prompt answers, vLLM's answers and errors, the
chat failure that makes base models need this backend, the preflight, and a whole search."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import grpc
import pytest
from fleet_support import FAST_RETRY, expected, fleet_config, make_items, make_matrix
from gemfinder.candidates import Candidate, candidate_record
from gemfinder.cli import main
from gemfinder.config import ServerConfig
from gemfinder.errors import UserError
from gemfinder.oracles import EndpointConfig, FailureKind, InferenceOracle, RetryPolicy
from gemfinder.oracles.endpoints import PLACEHOLDER_TOKEN, load_endpoint_configs
from gemfinder.oracles.preflight import EndpointUnreachable
from gemfinder.server.app import Server
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.build import candidates_for, endpoints_for, fleet_from_matrix
from gemfinder.sim.matrix import save_npz
from gemfinder.tasks import get_task
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from google.protobuf import json_format

from tests.pool_support import BEST, clear_best_pool, spec_proto

MODELS = [f"org/model-{k}" for k in range(4)]
COMPLETIONS = "openai_completions"


@pytest.fixture(scope="module")
def pool():
    items = make_items(3, tasks=("arc_challenge", "gsm8k"))
    items += make_items(2, tasks=("mbpp",))
    return items, make_matrix(items, MODELS, seed=3)


def _base_model_endpoint(**extra) -> dict:
    """vLLM serving a base model (no chat template) with one LoRA adapter."""
    return {"name": "vllm", "model_id": MODELS[0], "adapters": {"lora-1": MODELS[1]},
            "chat_template": False, "server": "vllm", **extra}  # fmt: skip


async def test_requests_are_greedy_raw_prompts_in_vllms_shape(pool):
    items, matrix = pool
    async with Fleet(fleet_config(_base_model_endpoint()), matrix, items) as fleet:
        url = fleet.url("vllm")
        oracle = InferenceOracle(
            [EndpointConfig(url, COMPLETIONS, adapters=("lora-1",))], policy=FAST_RETRY
        )
        base, lora = (
            Candidate(MODELS[0], url, COMPLETIONS),
            Candidate(MODELS[1], url, COMPLETIONS, adapter_id="lora-1"),
        )
        await oracle.prepare([base, lora])
        results = [await oracle.answer(c, it) for c in (base, lora) for it in items]
        await oracle.aclose()
        state = fleet.state("vllm")
    assert all(r.ok for r in results)
    assert [r.reward for r in results] == [
        expected(matrix, m, it.id) for m in MODELS[:2] for it in items
    ]
    assert state.served == {MODELS[0]: len(items), MODELS[1]: len(items)}
    assert set(state.requests) == {"/v1/completions"}  # vLLM has no /info
    assert state.authorization == {f"Bearer {PLACEHOLDER_TOKEN}": 2 * len(items)}
    for sent, (cand, item) in zip(
        state.bodies, [(c, it) for c in (base, lora) for it in items], strict=True
    ):
        task = get_task(item.task)
        assert sent["body"] == {
            "model": cand.served_name,
            "prompt": task.build_prompt(item, False).text,  # no chat template
            "max_tokens": task.generation.max_new_tokens,  # vLLM's default would be 16
            "temperature": 0,  # vLLM's default would sample
            "stop": list(task.generation.stop),
        }
    # vLLM leaves the stop string out of the text; the graders did not need it.
    assert all(r.completion_tokens and r.prompt_tokens for r in results)
    assert not any(r.response.rstrip().endswith("[DONE]") for r in results)


async def test_chat_on_a_base_model_fails_as_failures_not_wrong_answers(pool):
    items, matrix = pool
    async with Fleet(fleet_config(_base_model_endpoint()), matrix, items) as fleet:
        url = fleet.url("vllm")
        chat = InferenceOracle([EndpointConfig(url, "openai")], policy=FAST_RETRY)
        results = [await chat.answer(Candidate(MODELS[0], url, "openai"), it) for it in items]
        await chat.aclose()
        assert fleet.state("vllm").statuses == {400: len(items)}
    assert all(r.reward is None and r.failure is FailureKind.HTTP_ERROR for r in results)
    assert all(r.attempts == 1 and "chat template" in r.error for r in results)
    assert all("backend BACKEND_OPENAI_COMPLETIONS" in r.error for r in results)  # what to do


async def test_vllm_errors_are_recorded_with_their_reason_and_faults_retried(pool):
    items, matrix = pool
    script = ["429", "500", None, "garbage", "503", None, "422"]
    async with Fleet(
        fleet_config(_base_model_endpoint(fault_script=script)), matrix, items
    ) as fleet:
        url = fleet.url("vllm")
        oracle = InferenceOracle([EndpointConfig(url, COMPLETIONS)], policy=FAST_RETRY)
        # A served name the server does not know: vLLM says 404, never the base model.
        wrong = InferenceOracle(
            [EndpointConfig(url, COMPLETIONS, served_model="mistral-7b")], policy=FAST_RETRY
        )
        base = Candidate(MODELS[0], url, COMPLETIONS)
        results = [await oracle.answer(base, it) for it in items[:3]]
        missing = await wrong.answer(base, items[3])
        await oracle.aclose()
        await wrong.aclose()
        state = fleet.state("vllm")
    retried, invalid = results[:2], results[2]
    assert [r.attempts for r in retried] == [3, 3]  # 429, 500, ok; garbage, 503, ok
    assert all(r.ok and r.reward == expected(matrix, MODELS[0], r.item_id) for r in retried)
    assert state.faults == {"429": 1, "500": 1, "garbage": 1, "503": 1, "422": 1}
    # vLLM reports a request that fails validation as a 400, and it is not retried.
    assert invalid.failure is FailureKind.HTTP_ERROR and invalid.attempts == 1
    assert invalid.reward is None and "Input validation error" in invalid.error
    assert missing.reward is None and missing.failure is FailureKind.HTTP_ERROR
    assert missing.attempts == 1 and "The model `mistral-7b` does not exist." in missing.error
    assert state.statuses == {429: 1, 500: 1, 200: 3, 503: 1, 400: 1, 404: 1}


async def test_the_fleet_answers_and_refuses_as_vllm_does(pool):
    items, matrix = pool
    gsm8k = next(it for it in items if it.task == "gsm8k")
    mbpp = next(it for it in items if it.task == "mbpp")
    spec = _base_model_endpoint(fault_script=[None] * 6 + ["429"])  # the 7th parsed body
    async with Fleet(fleet_config(spec), matrix, items) as fleet, aiohttp.ClientSession() as http:
        url = f"{fleet.url('vllm')}/v1/completions"

        async def post(**body):
            async with http.post(url, json=body) as resp:
                return resp.status, await resp.json()

        prompt = get_task("gsm8k").build_prompt(gsm8k, False).text
        status, out = await post(model=MODELS[0], prompt=prompt, temperature=0)
        assert status == 200 and out["object"] == "text_completion"
        assert out["choices"][0]["finish_reason"] == "length"  # max_tokens defaults to 16
        assert out["usage"]["completion_tokens"] == 16
        assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + 16
        mbpp_prompt = get_task("mbpp").build_prompt(mbpp, False).text
        status, out = await post(
            model="lora-1", prompt=mbpp_prompt, max_tokens=512, temperature=0, stop=["[DONE]"]
        )
        choice = out["choices"][0]
        assert status == 200 and out["model"] == "lora-1"
        assert choice["finish_reason"] == "stop" and choice["stop_reason"] == "[DONE]"
        assert "[DONE]" not in choice["text"]
        refusals = [
            (await post(model="org/other", prompt=prompt), 404, "does not exist"),
            (await post(model=MODELS[0], prompt=prompt, temperature=-1), 400, "non-negative"),
            (await post(model=MODELS[0], prompt=prompt, max_tokens=9000), 400, "context length"),
            (await post(model=MODELS[0], prompt="What is love?"), 400, "matches no item"),
        ]
        async with http.post(url, data=b"{not json") as resp:
            refusals.append(((resp.status, await resp.json()), 400, "JSON"))
        status, out = await post(model=MODELS[0], prompt=prompt, temperature=0)  # injected
        refusals.append(((status, out), 429, "overloaded"))
        chat_url = f"{fleet.url('vllm')}/v1/chat/completions"
        async with http.post(chat_url, json={"model": MODELS[0], "messages": []}) as resp:
            refusals.append(((resp.status, await resp.json()), 400, "chat template"))
        for method, path in (("POST", "/generate"), ("GET", "/info")):  # TGI's, not vLLM's
            async with http.request(method, fleet.url("vllm") + path) as resp:
                assert resp.status == 404
    for (status, body), want, words in refusals:
        assert status == want and body["code"] == want and body["object"] == "error", body
        assert words in body["message"] and body["type"].endswith("Error"), body


async def test_preflight_checks_completions_candidates(pool):
    items, matrix = pool
    async with Fleet(fleet_config(_base_model_endpoint()), matrix, items) as fleet:
        url = fleet.url("vllm")
        base = Candidate(MODELS[0], url, COMPLETIONS)
        lora = Candidate(MODELS[1], url, COMPLETIONS, adapter_id="lora-1")
        # vLLM lists its LoRA modules at /v1/models: no adapter list needed to check them.
        await InferenceOracle([EndpointConfig(url, COMPLETIONS)]).prepare([base, lora])
        typo = Candidate(MODELS[2], url, COMPLETIONS, adapter_id="lora-l")
        with pytest.raises(UserError, match="'lora-l' is not served") as err:
            await InferenceOracle().prepare([base, lora, typo])
        assert err.value.field == "candidates[2].adapter_id"
        # A base-model name the server does not list would be a 404 on every query.
        renamed = [EndpointConfig(url, COMPLETIONS, served_model="mistral-7b")]
        with pytest.raises(UserError, match="lists org/model-0, lora-1, not 'mistral-7b'") as err:
            await InferenceOracle(renamed).prepare([base])
        assert err.value.field == "candidates[0].model_id"
        chat = Candidate(MODELS[0], url, "openai")
        with pytest.raises(UserError, match="backend openai but endpoint is openai_completions"):
            await InferenceOracle([EndpointConfig(url, COMPLETIONS)]).prepare([chat])
        assert fleet.state("vllm").requests["/v1/completions"] == 0
    # Stopped: the endpoint does not answer, and that is what the error says for the adapter.
    with pytest.raises(EndpointUnreachable) as err:
        await InferenceOracle([EndpointConfig(url, COMPLETIONS)]).prepare([lora])
    assert err.value.field == "candidates[0].endpoint"


@pytest.mark.parametrize("system_prompt", [False, True])  # the policy does not apply: no effect
async def test_every_model_answers_as_its_matrix_row(pool, system_prompt):
    items, matrix = pool
    config = fleet_from_matrix(matrix, endpoints=2)
    async with Fleet(config, matrix, items) as fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        candidates = candidates_for(config, urls, matrix, backend=COMPLETIONS)
        oracle = InferenceOracle(
            [EndpointConfig(**{**e, "backend": COMPLETIONS, "adapters": tuple(e["adapters"])})
             for e in endpoints_for(config, urls, COMPLETIONS)],
            policy=FAST_RETRY,
        )  # fmt: skip
        await oracle.prepare(candidates)
        results = await asyncio.gather(
            *(oracle.answer(c, it, system_prompt=system_prompt) for c in candidates for it in items)
        )
        await oracle.aclose()
    assert [r.reward for r in results] == [
        expected(matrix, c.model_id, it.id) for c in candidates for it in items
    ]


async def test_gemfinder_search_on_completions_endpoints(tmp_path, capsys):
    matrix, items = clear_best_pool()
    save_npz(matrix, tmp_path / "m.npz")
    lines = [json.dumps({"id": it.id, "task": it.task, **it.fields}) for it in items]
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = fleet_from_matrix(matrix, 2)
    async with Fleet(config, matrix, items) as fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        cands = candidates_for(config, urls, matrix, COMPLETIONS)
        (tmp_path / "c.jsonl").write_text(
            "".join(json.dumps(candidate_record(c)) + "\n" for c in cands), encoding="utf-8"
        )
        endpoints = endpoints_for(config, urls, COMPLETIONS)
        (tmp_path / "e.json").write_text(json.dumps(endpoints), encoding="utf-8")
        argv = ["search", "--query-set", str(tmp_path / "items.jsonl"),
                "--candidates", str(tmp_path / "c.jsonl"), "--endpoints", str(tmp_path / "e.json"),
                "--budget", "400", "--algorithm", "gem", "--param", "first_cut=8"]  # fmt: skip
        code = await asyncio.to_thread(main, argv)  # the CLI runs its own event loop
        requests = sum(
            (fleet.state(n).requests for n in fleet.names),
            start=type(fleet.state(fleet.names[0]).requests)(),
        )
    assert code == 0
    assert capsys.readouterr().out.splitlines()[1].split()[1] == BEST
    assert requests["/v1/completions"] > 0
    assert requests["/generate"] == requests["/v1/chat/completions"] == 0


async def test_the_service_searches_completions_endpoints_from_candidates_file_lines(tmp_path):
    """Lines of a candidates file go into the request as they are (ParseDict), and the server
    calls every candidate by the raw prompt on /v1/completions."""
    matrix, items = clear_best_pool()
    config = fleet_from_matrix(matrix, 2)
    async with Fleet(config, matrix, items) as fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        cands = candidates_for(config, urls, matrix, COMPLETIONS)
        (tmp_path / "e.json").write_text(json.dumps(endpoints_for(config, urls, COMPLETIONS)))
        oracle = InferenceOracle(load_endpoint_configs(tmp_path / "e.json"), policy=FAST_RETRY)
        server = Server(
            ServerConfig(
                address="127.0.0.1:0",
                metrics_port=0,
                db=str(tmp_path / "g.db"),
                endpoints=str(tmp_path / "e.json"),  # the endpoints callers may name
            ),
            oracle=oracle,
        )
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                spec = spec_proto([], items, per_model=30)
                for cand in cands:
                    line = json.dumps(candidate_record(cand))
                    spec.candidates.append(json_format.Parse(line, pb.Candidate()))
                stub = pb_grpc.ModelSearchServiceStub(channel)
                reply = await stub.SelectBestModel(pb.SelectBestModelRequest(spec=spec), timeout=60)
        finally:
            await server.stop(0)
        requests = [fleet.state(n).requests for n in fleet.names]
    assert {c.backend for c in spec.candidates} == {pb.BACKEND_OPENAI_COMPLETIONS}
    assert reply.search.state == pb.SEARCH_STATE_SUCCEEDED
    assert reply.search.result.recommended_model_id == BEST
    spent = reply.search.result.queries_spent
    assert sum(r["/v1/completions"] for r in requests) == spent > 0
    assert sum(r["/generate"] + r["/v1/chat/completions"] for r in requests) == 0


async def test_timeouts_and_refused_connections_are_counted_as_such(pool):
    items, matrix = pool
    hang = _base_model_endpoint(fault_script=["timeout"], hang_s=1.0)
    down = {**_base_model_endpoint(), "name": "down", "port": 0, "down": True}
    async with Fleet(fleet_config(hang, down), matrix, items) as fleet:
        policy = RetryPolicy(max_attempts=1, timeout_s=0.3)
        got = {}
        for name in ("vllm", "down"):
            url = fleet.url(name)
            oracle = InferenceOracle([EndpointConfig(url, COMPLETIONS)], policy=policy)
            got[name] = await oracle.answer(Candidate(MODELS[0], url, COMPLETIONS), items[0])
            await oracle.aclose()
    assert got["vllm"].failure is FailureKind.TIMEOUT and got["vllm"].reward is None
    assert got["down"].failure is FailureKind.CONNECTION and got["down"].reward is None
