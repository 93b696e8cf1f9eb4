"""vLLM's runtime LoRA API on a simulated `server: "vllm"` endpoint.

Follows vLLM's handlers as of vllm/entrypoints/openai/serving_models.py at commit
075e9ba825513f0e50ae1a5185d6db0ee405f84e (OpenAIServingModels.load_lora_adapter,
unload_lora_adapter, _check_load_lora_adapter_request, _check_unload_lora_adapter_request,
create_error_response) and the routes of vllm/entrypoints/openai/api_server.py, which exist only
when the server runs with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (here `serving.
runtime_lora_updating`; without it both paths are FastAPI's 404 `{"detail": "Not Found"}`):
- `POST /v1/load_lora_adapter {"lora_name", "lora_path"}`: 200 with the text body
  "Success: LoRA adapter 'NAME' added successfully."; a missing or empty name or path is 400
  InvalidUserInput "Both 'lora_name' and 'lora_path' must be provided."; a name already
  registered is 400 InvalidUserInput "The lora adapter 'NAME' has already been loaded."; a path
  the engine cannot read is 404 NotFoundError (its message says "No adapter found"), and the
  name stays unregistered;
- `POST /v1/unload_lora_adapter {"lora_name"}`: 200 "Success: LoRA adapter 'NAME' removed
  successfully."; no name (nor lora_int_id) is 400 InvalidUserInput "either 'lora_name' and
  'lora_int_id' needs to be provided."; an unknown name is 404 NotFoundError "The lora adapter
  'NAME' cannot be found.";
- a path the engine reads but refuses (an adapter whose rank is above --max-lora-rank, say; here
  `serving.failing_lora_paths`, path -> the engine's message) is 400 BadRequestError with that
  message, and the name stays unregistered;
- `serving.lora_fault_script` fails the first loads in order with 500 InternalServerError
  (what vLLM answers for an unexpected error), nothing registered;
- a body that is no such request (FastAPI's RequestValidationError: not JSON, a Content-Type
  other than JSON, a field of the wrong type) is vLLM's 400 BadRequestError;
- errors are vLLM's flat ErrorResponse `{"object": "error", "message", "type", "param", "code"}`;
- once unloaded (or never loaded), the name is refused by /v1/completions and
  /v1/chat/completions with 404 "The model `NAME` does not exist." (completions.py).
Loading reads the adapter into the endpoint's host-memory cache on the virtual clock
(serving.py); the GPU slot is taken when a query first asks for it.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gemfinder.sim.fleet.state import EndpointState

LOAD_ROUTE = "/v1/load_lora_adapter"
UNLOAD_ROUTE = "/v1/unload_lora_adapter"


def _error(status: int, message: str, kind: str) -> web.Response:
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    return web.json_response(body, status=status)


def _json_type(ctype: str) -> bool:
    """FastAPI reads a body as JSON for application/json and application/*+json."""
    main, _, sub = ctype.split(";")[0].strip().lower().partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def _success(text: str) -> web.Response:
    return web.Response(status=200, text=text)


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    ctype = request.headers.get("Content-Type")
    if ctype is not None and not _json_type(ctype):  # FastAPI validates the raw bytes: refused
        return _error(400, "simulated fleet: Content-Type must be JSON", "BadRequestError")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "simulated fleet: the body is not JSON", "BadRequestError")
    if not isinstance(body, dict):
        return _error(400, "simulated fleet: the body must be a JSON object", "BadRequestError")
    for key in ("lora_name", "lora_path"):
        if key in body and body[key] is not None and not isinstance(body[key], str):
            return _error(400, f"{key}: Input should be a valid string", "BadRequestError")
    return body


def add_routes(app: web.Application, state: EndpointState) -> None:
    """Add both routes when the endpoint allows runtime LoRA updating."""
    serving = state.spec.serving
    if serving is None or not serving.runtime_lora_updating:

        async def absent(request: web.Request) -> web.Response:  # FastAPI's unknown route
            return web.json_response({"detail": "Not Found"}, status=404)

        if state.spec.server == "vllm":
            app.router.add_post(LOAD_ROUTE, absent)
            app.router.add_post(UNLOAD_ROUTE, absent)
        return
    model = state.model
    script = list(serving.lora_fault_script)

    async def load(request: web.Request) -> web.Response:
        state.requests[LOAD_ROUTE] += 1
        body = await _body(request)
        state.lora_requests.append((LOAD_ROUTE, request.headers.get("Content-Type"), body))
        if isinstance(body, web.Response):
            return body
        name, path = body.get("lora_name"), body.get("lora_path")
        if "lora_name" not in body or "lora_path" not in body:
            return _error(400, "lora_name and lora_path: Field required", "BadRequestError")
        if not name or not path:
            return _error(
                400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput"
            )
        if name in model.adapters:
            return _error(
                400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput"
            )
        if script and script.pop(0) == "500":  # the server's trouble: nothing registered
            return _error(500, "simulated fleet: engine error", "InternalServerError")
        refusal = serving.failing_lora_paths.get(path)
        if refusal is not None:  # the engine read it and raised: vLLM's generic 400
            state.failed_loads += 1
            return _error(400, refusal, "BadRequestError")
        row = serving.lora_paths.get(path)
        if row is None:  # the engine's add_lora raised; vLLM maps "No adapter found" to 404
            state.failed_loads += 1
            return _error(
                404, f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError"
            )
        model.adapters[name] = row
        state.runtime_registered.add(name)
        state.most_registered = max(state.most_registered, len(state.runtime_registered))
        state.ledger.register(name)
        state.lora_log.append((LOAD_ROUTE, name, state.ledger.queries))
        return _success(f"Success: LoRA adapter '{name}' added successfully.")

    async def unload(request: web.Request) -> web.Response:
        state.requests[UNLOAD_ROUTE] += 1
        body = await _body(request)
        state.lora_requests.append((UNLOAD_ROUTE, request.headers.get("Content-Type"), body))
        if isinstance(body, web.Response):
            return body
        name = body.get("lora_name")
        if not name and not body.get("lora_int_id"):
            return _error(
                400,
                "either 'lora_name' and 'lora_int_id' needs to be provided.",
                "InvalidUserInput",
            )
        if name not in model.adapters:
            return _error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        del model.adapters[name]
        state.runtime_registered.discard(name)
        state.ledger.unregister(name)
        state.lora_log.append((UNLOAD_ROUTE, name, state.ledger.queries))
        return _success(f"Success: LoRA adapter '{name}' removed successfully.")

    def counted(handler):
        async def route(request: web.Request) -> web.Response:
            response = await handler(request)
            state.lora_statuses[response.status] += 1
            return response

        return route

    app.router.add_post(LOAD_ROUTE, counted(load))
    app.router.add_post(UNLOAD_ROUTE, counted(unload))
