"""The HTTP face of one simulated endpoint: TGI's routes, error bodies, faults and metrics.

Routes and shapes follow TGI's OpenAPI description (shared/contracts/tgi-openapi.json):
`POST /generate`, `POST /` (compat, a JSON list), `POST /generate_stream` (SSE), `POST /tokenize`,
`POST /v1/chat/completions`, `GET /info`, `GET /health`, `GET /metrics`, `GET /v1/models`;
plus vLLM's `POST /v1/completions` (gemfinder.sim.fleet.completions), whose errors, injected faults
included, come in vLLM's shape. An endpoint with `server: "vllm"` is vLLM's OpenAI server
instead: no TGI routes and no /info, and /v1/models lists the base model and its adapters.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from gemfinder.sim.fleet import completions, lora_api, tokens
from gemfinder.sim.fleet.simulator import Generation, RequestInvalid
from gemfinder.sim.fleet.state import VERSION, EndpointState

_ERRORS = {
    "429": (429, "Model is overloaded", "overloaded"),
    "424": (424, "Request failed during generation", "generation"),
    "500": (500, "Incomplete generation", "incomplete_generation"),
    "422": (422, "Input validation error", "validation"),
}


def error(status: int, message: str, error_type: str) -> web.Response:
    return web.json_response({"error": message, "error_type": error_type}, status=status)


def _details(gen: Generation, decoder_input_details: bool, prompt: str) -> dict[str, Any]:
    toks = [
        {"id": tokens.token_id(p), "text": p, "logprob": -0.05 - 0.01 * (i % 7), "special": False}
        for i, p in enumerate(gen.pieces)
    ]
    if gen.special_eos:
        toks.append({"id": 2, "text": "</s>", "logprob": -0.01, "special": True})
    prefill = []
    if decoder_input_details:
        prefill = [
            {"id": tokens.token_id(p), "text": p, "logprob": None if i == 0 else -1.5}
            for i, p in enumerate(tokens.pieces(prompt))
        ]
    return {
        "finish_reason": gen.finish_reason,
        "generated_tokens": len(toks),
        "seed": gen.seed,
        "prefill": prefill,
        "tokens": toks,
    }


def _sampling(body: dict[str, Any], params: dict[str, Any]) -> bool:
    # A body with no `parameters` samples; otherwise any warper turns sampling on (TGI).
    if "parameters" not in body:
        return True
    temperature = params.get("temperature")
    return bool(
        params.get("do_sample")
        or (temperature is not None and temperature != 1.0)
        or params.get("top_k")
        or (params.get("top_p") is not None and params["top_p"] < 1.0)
        or (params.get("typical_p") is not None and params["typical_p"] < 1.0)
    )


def make_app(state: EndpointState) -> web.Application:
    model = state.model

    async def guarded(request: web.Request, route: str, handler) -> web.StreamResponse:
        state.requests[route] += 1
        state.authorization[request.headers.get("Authorization", "")] += 1
        fail = completions.error if route == completions.ROUTE else error
        if state.in_flight >= state.spec.max_concurrent_requests:
            state.statuses[429] += 1
            return fail(429, "Model is overloaded", "overloaded")
        state.in_flight += 1
        try:
            response = await _serve(request, route, handler, fail)
        finally:
            state.in_flight -= 1
        state.statuses[response.status] += 1
        return response

    async def _serve(request: web.Request, route: str, handler, fail) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return fail(422, "Failed to parse the request body as JSON", "validation")
        if not isinstance(body, dict):
            return fail(422, "Failed to deserialize the JSON body", "validation")
        if len(state.bodies) < 64:
            state.bodies.append({"route": route, "body": body})
        fault = state.next_fault()
        delay = state.latency()
        if delay:
            await asyncio.sleep(delay)
        if fault:
            state.faults[fault] += 1
            if fault == "timeout":
                await asyncio.sleep(state.spec.hang_s)
            elif fault == "503":  # what a proxy in front of a loading model says
                return web.Response(
                    status=503, text="503 Service Unavailable", content_type="text/plain"
                )
            elif fault == "garbage":
                if state.faults[fault] % 2:
                    return web.Response(
                        text="<html><body>upstream hiccup</body></html>", content_type="text/html"
                    )
                return web.Response(
                    text='{"generated_text": "The ans', content_type="application/json"
                )
            else:
                return fail(*_ERRORS[fault])
        try:
            return await handler(request, body)
        except RequestInvalid as err:
            return fail(422, str(err), "validation")
        except (KeyError, TypeError, ValueError) as err:
            return fail(422, f"Failed to deserialize the JSON body: {err}", "validation")

    def run_generate(body: dict[str, Any]) -> tuple[Generation, dict[str, Any]]:
        inputs = body["inputs"]
        if not isinstance(inputs, str):
            raise TypeError("`inputs` must be a string")
        params = body.get("parameters") or {}
        n_in = tokens.count(inputs)
        max_new = model.validate(n_in, params)
        gen = model.generate(
            model.index.find_text(inputs),
            n_in,
            adapter_id=params.get("adapter_id"),
            sampling=_sampling(body, params),
            seed=params.get("seed"),
            max_new_tokens=max_new,
            stop=list(params.get("stop") or []),
            chat=False,
        )
        state.served[gen.row] += 1
        state.account(params.get("adapter_id"))
        return gen, params

    def loglikelihood_body(body: dict[str, Any], compat: bool) -> dict[str, Any] | None:
        """A multiple-choice item's choice asked with `decoder_input_details` (how log-
        likelihoods are read from TGI): prefill log-probabilities from the matrix and one
        generated token. None when the input is no such choice."""
        inputs, params = body.get("inputs"), body.get("parameters") or {}
        if not isinstance(inputs, str):
            return None
        found = model.loglikelihood_tokens(inputs, params.get("adapter_id"))
        if found is None:
            return None
        if not params.get("decoder_input_details"):
            raise RequestInvalid(
                "simulated fleet: the input is a choice of a multiple-choice item, which the "
                "fleet answers only with its log-likelihoods (decoder_input_details: true)"
            )
        row, toks = found
        model.validate(len(toks), params)
        state.served[row] += 1
        state.account(params.get("adapter_id"))
        text = "\n"
        full = params.get("return_full_text")
        out: dict[str, Any] = {
            "generated_text": inputs + text if (full or (full is None and compat)) else text
        }
        out["details"] = {
            "finish_reason": "length",
            "generated_tokens": 1,
            "seed": None,
            "prefill": [{"id": tokens.token_id(p), "text": p, "logprob": lp} for p, lp in toks],
            "tokens": [
                {"id": tokens.token_id(text), "text": text, "logprob": -0.3, "special": False}
            ],
        }
        return out

    def generate_body(body: dict[str, Any], compat: bool) -> dict[str, Any]:
        return generate_answer(body, compat)[0]

    def generate_answer(body: dict[str, Any], compat: bool) -> tuple[dict[str, Any], dict]:
        """The body of a /generate answer and TGI's token-count headers for it."""
        scored = loglikelihood_body(body, compat)
        if scored is not None:
            prefill = len(scored["details"]["prefill"])
            return scored, {"x-prompt-tokens": str(prefill), "x-generated-tokens": "1"}
        gen, params = run_generate(body)
        counts = {
            "x-prompt-tokens": str(gen.input_tokens),
            "x-generated-tokens": str(len(gen.pieces) + (1 if gen.special_eos else 0)),
        }
        full = params.get("return_full_text")
        if full is None:
            full = compat  # POST / prepends the prompt by default for local models
        out: dict[str, Any] = {"generated_text": (body["inputs"] + gen.text) if full else gen.text}
        if params.get("details") or params.get("decoder_input_details"):
            out["details"] = _details(
                gen, bool(params.get("decoder_input_details")), body["inputs"]
            )
        return out, counts

    async def stream(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        gen, params = run_generate(body)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        details = _details(gen, False, body["inputs"])
        toks = details["tokens"]
        for i, tok in enumerate(toks):
            event: dict[str, Any] = {
                "index": i,
                "token": tok,
                "generated_text": None,
                "details": None,
            }
            if i == len(toks) - 1:
                event["generated_text"] = gen.text
                event["details"] = {
                    "finish_reason": gen.finish_reason,
                    "generated_tokens": len(toks),
                    "input_length": gen.input_tokens,
                    "seed": gen.seed,
                }
            await response.write(f"data:{json.dumps(event)}\n\n".encode())
        await response.write_eof()
        return response

    async def generate(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        # TGI's /generate reports its token counts in headers too (router/src/server.rs), with
        # or without `details`.
        out, counts = generate_answer(body, compat=False)
        return web.json_response(out, headers=counts)

    async def compat(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        if body.get("stream"):
            return await stream(request, body)
        return web.json_response([generate_body(body, compat=True)])

    async def tokenize(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        """TGI's POST /tokenize: the input's tokens with their character span."""
        inputs = body["inputs"]
        if not isinstance(inputs, str):
            raise TypeError("`inputs` must be a string")
        out, pos = [], 0
        for piece in tokens.pieces(inputs):
            out.append({"id": tokens.token_id(piece), "text": piece, "start": pos,
                        "stop": pos + len(piece)})  # fmt: skip
            pos += len(piece)
        return web.json_response(out)

    async def chat(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        name = body.get("model")
        if state.spec.server == "vllm" and name != model.spec.model_id:
            if name not in model.adapters:  # vLLM's _check_model, before anything else
                return completions.error(404, f"The model `{name}` does not exist.")
        if not state.spec.chat_template:  # a base model served by vLLM
            return completions.error(400, completions.NO_CHAT_TEMPLATE)
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise RequestInvalid("Input validation error: `messages` cannot be empty")
        flat = "\n".join(str(m.get("content", "")) for m in messages)
        n_in = tokens.count(flat) + 4 * len(messages)  # chat-template markup
        temperature = body.get("temperature")
        # Chat: temperature 0 means greedy; leaving it out samples at T=1 (TGI Messages API).
        sampling = temperature is None or temperature > 0 or body.get("top_p") is not None
        max_new = model.validate(
            n_in, {"max_new_tokens": body.get("max_tokens"), "stop": body.get("stop")}
        )
        gen = model.generate(
            model.index.find_messages(messages),
            n_in,
            adapter_id=body.get("model"),
            sampling=sampling,
            seed=body.get("seed"),
            max_new_tokens=max_new,
            stop=list(body.get("stop") or []),
            chat=True,
        )
        state.served[gen.row] += 1
        state.account(body.get("model"))
        n_out = len(gen.pieces) + (1 if gen.special_eos else 0)
        return web.json_response(
            {
                "object": "chat.completion",
                "id": "",
                "created": int(time.time()),
                "model": state.spec.model_id,
                "system_fingerprint": f"{VERSION}-native",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": gen.text},
                        "logprobs": None,
                        "finish_reason": "length" if gen.finish_reason == "length" else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": n_in,
                    "completion_tokens": n_out,
                    "total_tokens": n_in + n_out,
                },
            }
        )

    async def info(request: web.Request) -> web.Response:
        state.requests["/info"] += 1
        return web.json_response(state.info())

    async def health(request: web.Request) -> web.Response:
        state.requests["/health"] += 1
        return web.Response(status=200)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=state.metrics_text(), content_type="text/plain")

    async def models(request: web.Request) -> web.Response:
        if state.spec.server == "vllm":  # a list: the base model and every LoRA module
            return web.json_response(completions.model_list(state.spec, model.adapters))
        return web.json_response(
            {
                "id": state.spec.model_id,
                "object": "model",
                "created": 0,
                "owned_by": state.spec.model_id,
            }
        )

    def route(path: str, handler):
        async def wrapped(request: web.Request) -> web.StreamResponse:
            return await guarded(request, path, handler)

        return wrapped

    app = web.Application(client_max_size=8 * 1024 * 1024)
    if state.spec.server == "tgi":  # vLLM's OpenAI server has none of these (404)
        app.router.add_post("/generate", route("/generate", generate))
        app.router.add_post("/", route("/", compat))
        app.router.add_post("/generate_stream", route("/generate_stream", stream))
        app.router.add_post("/tokenize", route("/tokenize", tokenize))
        app.router.add_get("/info", info)
    app.router.add_post("/v1/chat/completions", route("/v1/chat/completions", chat))
    complete = completions.make_handler(state)
    app.router.add_post(completions.ROUTE, route(completions.ROUTE, complete))
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", models)
    lora_api.add_routes(app, state)
    return app
