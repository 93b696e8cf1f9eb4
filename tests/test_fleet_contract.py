"""The simulated fleet against TGI's OpenAPI description, driven by the real huggingface_hub."""

from __future__ import annotations

import json

import aiohttp
import jsonschema
import pytest
from fleet_support import fleet_config, make_items, make_matrix
from gemfinder.sim.fleet import Fleet
from gemfinder.tasks import get_task
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import ValidationError

MODELS = ["org/base", "org/lora-a", "org/lora-b"]


def _to_json_schema(node):
    """OpenAPI 3.0 -> JSON Schema: `nullable: true` becomes an explicit null alternative."""
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items() if k not in ("nullable", "example")}
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


@pytest.fixture(scope="module")
def schemas(shared_data):
    # The contract sits beside the data (../shared/contracts), found the same way.
    spec = json.loads((shared_data.parent / "contracts" / "tgi-openapi.json").read_text())
    components = _to_json_schema(spec["components"])

    def validator(name: str, array: bool = False):
        ref = {"$ref": f"#/components/schemas/{name}"}
        schema = {"components": components, **({"type": "array", "items": ref} if array else ref)}
        return jsonschema.Draft202012Validator(schema)

    return validator


@pytest.fixture
async def fleet():
    items = make_items(3, tasks=("arc_challenge", "gsm8k"))
    matrix = make_matrix(items, MODELS)
    config = fleet_config(
        {
            "name": "ep",
            "model_id": "org/base",
            "adapters": ["org/lora-a", "org/lora-b"],
        }
    )
    async with Fleet(config, matrix, items) as running:
        running.items = items
        yield running


def _prompt(item):
    task = get_task(item.task)
    return task, task.build_prompt(item, False)


async def test_generate_request_and_response_match_the_contract(fleet, schemas):
    item = fleet.items[0]
    task, prompt = _prompt(item)
    url = fleet.url("ep")
    async with AsyncInferenceClient(token="t", timeout=5) as client:
        out = await client.text_generation(
            prompt.text,
            model=f"{url}/generate",
            max_new_tokens=50,
            stop=list(task.generation.stop),
            do_sample=False,
            return_full_text=False,
            details=True,
            adapter_id="org/lora-a",
        )
    assert out.details.generated_tokens == len(out.details.tokens) > 0
    sent = fleet.state("ep").bodies[-1]
    assert sent["route"] == "/generate"
    schemas("GenerateRequest").validate(sent["body"])
    assert sent["body"]["parameters"]["do_sample"] is False
    assert "temperature" not in sent["body"]["parameters"]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/generate", json=sent["body"]) as resp:
            assert resp.status == 200
            body = await resp.json()
    schemas("GenerateResponse").validate(body)
    assert body["generated_text"] == out.generated_text


async def test_compat_route_returns_a_list_with_the_prompt_by_default(fleet, schemas):
    item = fleet.items[1]
    _, prompt = _prompt(item)
    url = fleet.url("ep")
    async with AsyncInferenceClient(token="t", timeout=5) as client:
        # The trap: a bare URL posts to `/`, which prepends the prompt unless told otherwise.
        full = await client.text_generation(
            prompt.text, model=url, max_new_tokens=50, do_sample=False
        )
        bare = await client.text_generation(
            prompt.text, model=url, max_new_tokens=50, do_sample=False, return_full_text=False
        )
    assert full == prompt.text + bare
    sent = fleet.state("ep").bodies[-1]
    assert sent["route"] == "/"
    schemas("CompatGenerateRequest").validate(sent["body"])
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/", json=sent["body"]) as resp:
            body = await resp.json()
    schemas("GenerateResponse", array=True).validate(body)
    assert isinstance(body, list) and body[0]["generated_text"] == bare


async def test_chat_completion_request_and_response_match_the_contract(fleet, schemas):
    item = fleet.items[3]
    task, prompt = _prompt(item)
    url = fleet.url("ep")
    async with AsyncInferenceClient(base_url=url, token="t", timeout=5) as client:
        out = await client.chat_completion(
            prompt.messages,
            model="org/lora-b",
            temperature=0,
            max_tokens=512,
            stop=list(task.generation.stop),
        )
    assert out.usage.completion_tokens > 0
    sent = fleet.state("ep").bodies[-1]
    assert sent["route"] == "/v1/chat/completions" and sent["body"]["model"] == "org/lora-b"
    schemas("ChatRequest").validate(sent["body"])
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/chat/completions", json=sent["body"]) as resp:
            body = await resp.json()
    schemas("ChatCompletion").validate(body)
    assert body["choices"][0]["message"]["content"] == out.choices[0].message.content


async def test_stream_events_match_the_contract_and_the_plain_answer(fleet, schemas):
    item = fleet.items[4]
    task, prompt = _prompt(item)
    url = fleet.url("ep")
    params = {"max_new_tokens": 512, "stop": list(task.generation.stop), "do_sample": False}
    async with AsyncInferenceClient(token="t", timeout=5) as client:
        plain = await client.text_generation(prompt.text, model=f"{url}/generate", **params)
        pieces = [
            event
            async for event in await client.text_generation(
                prompt.text, model=f"{url}/generate_stream", stream=True, details=True, **params
            )
        ]
    assert "".join(e.token.text for e in pieces if not e.token.special) == plain
    assert pieces[-1].generated_text == plain
    async with aiohttp.ClientSession() as http:
        body = {"inputs": prompt.text, "parameters": params}
        async with http.post(f"{url}/generate_stream", json=body) as resp:
            raw = (await resp.read()).decode()
    events = [json.loads(chunk[5:]) for chunk in raw.split("\n\n") if chunk.startswith("data:")]
    assert events and "[DONE]" not in raw
    for event in events:
        schemas("StreamResponse").validate(event)


async def test_info_health_metrics(fleet, schemas):
    url = fleet.url("ep")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/info") as resp:
            info = await resp.json()
        async with http.get(f"{url}/health") as resp:
            assert resp.status == 200
        async with http.post(f"{url}/generate", json={"inputs": "hello there", "parameters": {}}):
            pass
        async with http.get(f"{url}/metrics") as resp:
            metrics = await resp.text()
    schemas("Info").validate(info)
    assert info["model_id"] == "org/base" and info["max_concurrent_requests"] == 128
    assert "tgi_request_count 1" in metrics.splitlines()
    assert 'gemfinder_fleet_requests_total{route="/generate"} 1' in metrics


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"temperature": 0.0, "max_new_tokens": 5}, "temperature"),
        ({"top_p": 1.5, "max_new_tokens": 5}, "top_p"),
        ({"max_new_tokens": 100000}, "max_new_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"], "max_new_tokens": 5}, "stop"),
    ],
)
async def test_validation_errors_are_422_with_tgi_body(fleet, schemas, parameters, fragment):
    async with aiohttp.ClientSession() as http:
        body = {"inputs": "What is 2 + 2?", "parameters": parameters}
        async with http.post(f"{fleet.url('ep')}/generate", json=body) as resp:
            assert resp.status == 422
            payload = await resp.json()
    schemas("ErrorResponse").validate(payload)
    assert payload["error_type"] == "validation" and fragment in payload["error"]


async def test_hf_client_maps_422_to_its_validation_error(fleet):
    async with AsyncInferenceClient(token="t", timeout=5) as client:
        with pytest.raises(ValidationError):
            await client.text_generation(
                "Question: 1+1?",
                model=f"{fleet.url('ep')}/generate",
                max_new_tokens=5,
                temperature=0.0,
            )


async def test_overload_and_injected_errors_have_tgi_bodies(schemas):
    items = make_items(1, tasks=("mmlu",))
    matrix = make_matrix(items, ["org/base"])
    config = fleet_config(
        {"name": "ep", "model_id": "org/base", "fault_script": ["429", "424", "500", "503"]}
    )
    async with Fleet(config, matrix, items) as running, aiohttp.ClientSession() as http:
        seen = []
        for _ in range(4):
            body = {"inputs": "x y z", "parameters": {"max_new_tokens": 3}}
            async with http.post(f"{running.url('ep')}/generate", json=body) as resp:
                seen.append(resp.status)
                if resp.status != 503:  # a proxy's 503 is plain text, like the real thing
                    schemas("ErrorResponse").validate(await resp.json())
    assert seen == [429, 424, 500, 503]
