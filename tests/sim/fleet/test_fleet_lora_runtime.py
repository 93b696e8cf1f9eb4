"""The fleet's vLLM runtime LoRA API and its virtual serving clock.

Requests, statuses and error bodies are vLLM's, as of vllm/entrypoints/openai/serving_models.py
at commit 075e9ba825513f0e50ae1a5185d6db0ee405f84e: `_check_load_lora_adapter_request` (both
fields required, 400 InvalidUserInput; a name already loaded, 400), `load_lora_adapter` (engine
"No adapter found" -> 404 NotFoundError; success text "Success: LoRA adapter '...' added
successfully."), `_check_unload_lora_adapter_request` (no name, 400; unknown name, 404
NotFoundError "cannot be found."), and the unregistered model refused by `_check_model` (404
"The model `...` does not exist.").
"""

from __future__ import annotations

import random

import aiohttp
import pytest
from fleet_support import FAST_RETRY, expected, fleet_config, make_items, make_matrix
from gemfinder.candidates import Candidate
from gemfinder.errors import UserError
from gemfinder.oracles import EndpointConfig, FailureKind, InferenceOracle
from gemfinder.sim.fleet import Fleet
from gemfinder.tasks import get_task

MODELS = ["org/base", "org/lora-a", "org/lora-b", "org/lora-c", "org/lora-d", "org/lora-e"]
PATHS = {f"/adapters/{m.split('/')[1]}": m for m in MODELS[1:]}
COSTS = {"model_load_s": 30.0, "adapter_load_s": 2.0, "swap_s": 0.5, "query_s": 0.2}


def _endpoint(runtime: bool = True, **serving) -> dict:
    return {
        "name": "vllm",
        "model_id": MODELS[0],
        "chat_template": False,
        "server": "vllm",
        "serving": {
            "runtime_lora_updating": runtime,
            "max_loras": 2,
            "max_cpu_loras": 3,
            "lora_paths": PATHS,
            **COSTS,
            **serving,
        },
    }


@pytest.fixture(scope="module")
def pool():
    items = make_items(2, tasks=("arc_challenge", "gsm8k"))
    return items, make_matrix(items, MODELS)


async def _post(session, url, path, body):
    async with session.post(url + path, json=body) as response:
        ctype = response.headers.get("Content-Type", "")
        return response.status, await (response.json() if "json" in ctype else response.text())


def _vllm_error(status: int, message: str, kind: str) -> dict:
    return {"object": "error", "message": message, "type": kind, "param": None, "code": status}


async def _complete(session, url, name, item):
    prompt = get_task(item.task).build_prompt(item, False).text
    body = {"model": name, "prompt": prompt, "max_tokens": 512, "temperature": 0}
    return await _post(session, url, "/v1/completions", body)


async def test_load_and_unload_speak_vllms_api(pool):
    items, matrix = pool
    async with Fleet(fleet_config(_endpoint()), matrix, items) as fleet:
        url = fleet.url("vllm")
        async with aiohttp.ClientSession() as s:
            load = "/v1/load_lora_adapter"
            assert await _post(
                s, url, load, {"lora_name": "a", "lora_path": "/adapters/lora-a"}
            ) == (
                200,
                "Success: LoRA adapter 'a' added successfully.",
            )
            assert await _post(
                s, url, load, {"lora_name": "a", "lora_path": "/adapters/lora-a"}
            ) == (
                400,
                _vllm_error(
                    400, "The lora adapter 'a' has already been loaded.", "InvalidUserInput"
                ),
            )
            both = _vllm_error(
                400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput"
            )
            assert await _post(s, url, load, {"lora_name": "", "lora_path": "/x"}) == (400, both)
            assert await _post(s, url, load, {"lora_name": "b", "lora_path": ""}) == (400, both)
            status, body = await _post(s, url, load, {"lora_name": "z", "lora_path": "/nowhere"})
            assert (status, body["type"], body["code"]) == (404, "NotFoundError", 404)
            assert "No adapter found for /nowhere" in body["message"]
            # Registered adapters are models: listed, and answered from their matrix row.
            async with s.get(url + "/v1/models") as response:
                ids = [card["id"] for card in (await response.json())["data"]]
            assert ids == [MODELS[0], "a"]
            status, body = await _complete(s, url, "a", items[0])
            assert status == 200 and body["model"] == "a"
            assert fleet.state("vllm").served == {MODELS[1]: 1}
            # A failed load registered nothing: the name is refused like any unknown model.
            missing = _vllm_error(404, "The model `z` does not exist.", "NotFoundError")
            assert await _complete(s, url, "z", items[0]) == (404, missing)
            unload = "/v1/unload_lora_adapter"
            assert await _post(s, url, unload, {"lora_name": "a"}) == (
                200,
                "Success: LoRA adapter 'a' removed successfully.",
            )
            gone = _vllm_error(404, "The lora adapter 'a' cannot be found.", "NotFoundError")
            assert await _post(s, url, unload, {"lora_name": "a"}) == (404, gone)
            assert await _post(s, url, unload, {}) == (
                400,
                _vllm_error(
                    400,
                    "either 'lora_name' and 'lora_int_id' needs to be provided.",
                    "InvalidUserInput",
                ),
            )
            # Unloaded: refused on completions and on chat, as vLLM's _check_model does.
            assert (await _complete(s, url, "a", items[0]))[0] == 404
            chat = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
            status, body = await _post(s, url, "/v1/chat/completions", chat)
            assert (status, body["message"]) == (404, "The model `a` does not exist.")
            status, body = await _post(s, url, load, {"lora_name": 7, "lora_path": "/x"})
            assert (status, body["type"]) == (400, "BadRequestError")
        assert fleet.state("vllm").failed_loads == 1


async def test_a_body_that_is_not_vllms_request_is_refused(pool):
    """vLLM's routes take a JSON body (FastAPI validates it against LoadLoRAAdapterRequest):
    another Content-Type, or fields of the wrong type, are its 400 BadRequestError, and nothing
    is registered; a path the engine reads but refuses is its generic 400 with the engine's
    message."""
    items, matrix = pool
    refusal = "LoRA rank 64 is greater than max_lora_rank 16."
    endpoint = _endpoint(failing_lora_paths={"/adapters/big": refusal})
    async with Fleet(fleet_config(endpoint), matrix, items) as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        body = '{"lora_name": "a", "lora_path": "/adapters/lora-a"}'
        async with aiohttp.ClientSession() as s:
            for ctype in ("text/plain", "application/x-www-form-urlencoded"):
                headers = {"Content-Type": ctype}
                async with s.post(url + "/v1/load_lora_adapter", data=body, headers=headers) as r:
                    assert (r.status, (await r.json())["type"]) == (400, "BadRequestError")
            bad = {"lora_name": "a", "lora_path": ["/adapters/lora-a"]}
            status, answer = await _post(s, url, "/v1/load_lora_adapter", bad)
            assert (status, answer["type"]) == (400, "BadRequestError")
            big = {"lora_name": "big", "lora_path": "/adapters/big"}
            assert await _post(s, url, "/v1/load_lora_adapter", big) == (
                400,
                _vllm_error(400, refusal, "BadRequestError"),
            )
            headers = {"Content-Type": "application/json; charset=utf-8"}
            async with s.post(url + "/v1/load_lora_adapter", data=body, headers=headers) as r:
                assert r.status == 200  # JSON with a charset is JSON
        assert state.runtime_registered == {"a"} and state.failed_loads == 1
        assert state.lora_statuses == {400: 4, 200: 1}


async def test_without_runtime_updating_the_routes_do_not_exist(pool):
    items, matrix = pool
    async with Fleet(fleet_config(_endpoint(runtime=False)), matrix, items) as fleet:
        async with aiohttp.ClientSession() as s:
            body = {"lora_name": "a", "lora_path": "/adapters/lora-a"}
            for path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
                assert await _post(s, fleet.url("vllm"), path, body) == (
                    404,
                    {"detail": "Not Found"},
                )


async def test_slots_are_never_exceeded_and_the_clock_adds_up(pool):
    """Random traffic over five adapters with 2 GPU slots and 3 in host memory: the ledger's
    counts are replayed here independently and the clock is their weighted sum."""
    items, matrix = pool
    async with Fleet(fleet_config(_endpoint()), matrix, items) as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        names = [p.split("/")[-1] for p in PATHS]
        rng = random.Random(3)
        async with aiohttp.ClientSession() as s:
            for name, path in zip(names, PATHS, strict=True):
                load = {"lora_name": name, "lora_path": path}
                assert (await _post(s, url, "/v1/load_lora_adapter", load))[0] == 200
                assert len(state.ledger.in_host_memory()) <= 3
            asked = [rng.choice([*names, MODELS[0]]) for _ in range(60)]
            for name in asked:
                item = rng.choice(items)
                status, body = await _complete(s, url, name, item)
                assert status == 200
                assert len(state.ledger.resident()) <= 2
            metrics = await (await s.get(url + "/metrics")).text()
        # Replay: LRU host cache of 3 (every load read once), LRU GPU slots of 2.
        cpu, gpu, reads, swaps = names[-3:], [], len(names), 0
        for name in asked:
            if name == MODELS[0]:
                continue
            if name not in cpu:
                reads += 1
                if len(cpu) == 3:
                    dropped = cpu.pop(0)
                    gpu = [g for g in gpu if g != dropped]
            else:
                cpu.remove(name)
            cpu.append(name)
            if name not in gpu:
                swaps += 1
                if len(gpu) == 2:
                    gpu.pop(0)
            else:
                gpu.remove(name)
            gpu.append(name)
        summary = state.ledger.summary()
        assert (summary["adapter_loads"], summary["swaps"], summary["model_loads"]) == (
            reads,
            swaps,
            1,
        )
        assert summary["max_resident"] == 2 and swaps > 2  # the slots were contended
        cost = 30.0 + 2.0 * reads + 0.5 * swaps + 0.2 * len(asked)
        assert summary["gpu_seconds"] == pytest.approx(cost)
        assert summary["wall_s"] == pytest.approx(cost)  # hours would run in seconds too
        assert f'gemfinder_fleet_loads_total{{kind="swap"}} {swaps}' in metrics
        assert state.served[MODELS[1]] == sum(1 for n in asked if n == "lora-a")


async def test_a_failed_load_is_a_failure_never_a_wrong_answer(pool):
    """gemfinder asks an adapter whose load failed: every pull is a counted failure."""
    items, matrix = pool
    async with Fleet(fleet_config(_endpoint()), matrix, items) as fleet:
        url = fleet.url("vllm")
        async with aiohttp.ClientSession() as s:
            bad = {"lora_name": "broken", "lora_path": "/adapters/typo"}
            assert (await _post(s, url, "/v1/load_lora_adapter", bad))[0] == 404
            good = {"lora_name": "lora-b", "lora_path": "/adapters/lora-b"}
            assert (await _post(s, url, "/v1/load_lora_adapter", good))[0] == 200
        oracle = InferenceOracle(
            [EndpointConfig(url, "openai_completions", adapters=("broken", "lora-b"))],
            policy=FAST_RETRY,
        )
        broken = Candidate("org/broken", url, "openai_completions", adapter_id="broken")
        lora_b = Candidate(MODELS[2], url, "openai_completions", adapter_id="lora-b")
        failed = [await oracle.answer(broken, it) for it in items]
        answered = [await oracle.answer(lora_b, it) for it in items]
        await oracle.aclose()
    assert all(r.reward is None and r.failure is FailureKind.HTTP_ERROR for r in failed)
    assert [r.reward for r in answered] == [expected(matrix, MODELS[2], it.id) for it in items]


@pytest.mark.parametrize(
    ("serving", "field"),
    [
        ({"max_loras": 0}, "serving.max_loras"),
        ({"max_loras": 4, "max_cpu_loras": 2}, "serving.max_cpu_loras"),
        ({"query_s": -1}, "serving.query_s"),
        ({"lora_paths": {"/a": 3}}, "serving.lora_paths"),
        ({"failing_lora_paths": {"/a": ""}}, "serving.failing_lora_paths"),
        ({"lora_fault_script": ["429"]}, "serving.lora_fault_script"),
        ({"slots": 2}, "serving.slots"),
    ],
)
def test_bad_serving_blocks_name_the_field(serving, field):
    with pytest.raises(UserError) as err:
        fleet_config(_endpoint(**serving))
    assert field in str(err.value)


def test_runtime_updating_is_vllms_only():
    tgi = {**_endpoint(), "server": "tgi"}
    with pytest.raises(UserError, match="runtime_lora_updating"):
        fleet_config(tgi)
