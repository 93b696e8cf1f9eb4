"""vLLM's OpenAI-compatible side of a simulated endpoint: `POST /v1/completions` and its errors.

Follows vLLM 0.6 (the version k8s/examples/vllm-fleet pins), where it differs from TGI:
- the raw `prompt` is completed as is (no chat template); `model` must name the served base
  model or a LoRA adapter (`--lora-modules`), anything else is a 404, not the base model;
- `max_tokens` defaults to 16 and `temperature` to 1.0, so a client that leaves either out is
  cut short or samples; temperature 0 is greedy;
- a stop string ends the text and is left out of it (`include_stop_str_in_output` false), the
  choice saying `finish_reason: "stop"` and which string in `stop_reason`;
- every error is `{"object": "error", "message", "type", "param", "code"}`, and a request that
  fails validation is a 400 (TGI says 422);
- an endpoint whose model has no chat template (`chat_template: false` in the fleet config)
  answers `/v1/chat/completions` with vLLM's 400 for that;
- `GET /v1/models` of a `server: "vllm"` endpoint lists the base model and its adapters.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from gemfinder.sim.fleet import tokens
from gemfinder.sim.fleet.config import EndpointSpec
from gemfinder.sim.fleet.simulator import Generation, RequestInvalid
from gemfinder.sim.fleet.state import EndpointState

ROUTE = "/v1/completions"
DEFAULT_MAX_TOKENS = 16  # vLLM's CompletionRequest default
GREEDY_BELOW = 1e-5  # vLLM samples greedily under this temperature
NO_CHAT_TEMPLATE = (
    "As of transformers v4.44, default chat template is no longer allowed, so you must provide "
    "a chat template if the tokenizer does not define one."
)


class OpenAIError(Exception):
    """An error vLLM reports with this status (400 unless said otherwise)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def error(status: int, message: str, _kind: str = "") -> web.Response:
    """vLLM's ErrorResponse. A TGI validation status (422) becomes vLLM's 400; `_kind` (TGI's
    error_type) has no place in this shape."""
    status = 400 if status == 422 else status
    name = HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    body = {"object": "error", "message": message, "type": f"{name}Error", "param": None}
    return web.json_response({**body, "code": status}, status=status)


def model_list(spec: EndpointSpec, adapters: Iterable[str]) -> dict[str, Any]:
    """vLLM's GET /v1/models: the base model, then each LoRA module with the base as parent."""

    def card(name: str, parent: str | None) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "vllm",
                "root": name, "parent": parent, "max_model_len": spec.max_total_tokens}  # fmt: skip

    cards = [card(spec.model_id, None)] + [card(a, spec.model_id) for a in adapters]
    return {"object": "list", "data": cards}


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]  # a batch of one
    if not isinstance(prompt, str):
        raise OpenAIError("simulated fleet: `prompt` must be a string (or a list of one)")
    if not prompt:
        raise OpenAIError("The prompt cannot be empty")
    return prompt


def _stop(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise OpenAIError("`stop` must be a string or a list of strings")
    return stop


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OpenAIError(f"`{key}` must be a number, got {value!r}")
    return float(value)


def _max_tokens(body: dict[str, Any]) -> int:
    value = body.get("max_tokens")
    if value is None:
        return DEFAULT_MAX_TOKENS
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OpenAIError(f"max_tokens must be at least 1, got {value!r}.")
    return value


def _cut_stop(gen: Generation, stop: list[str]) -> tuple[str, str | None]:
    """The text without the stop string it ended on (vLLM leaves it out), and that string."""
    if gen.finish_reason != "stop_sequence":
        return gen.text, None
    matched = max((s for s in stop if s and gen.text.endswith(s)), key=len)
    return gen.text[: -len(matched)], matched


def make_handler(
    state: EndpointState,
) -> Callable[[web.Request, dict[str, Any]], Awaitable[web.Response]]:
    model = state.model
    spec = state.spec

    async def completions(request: web.Request, body: dict[str, Any]) -> web.Response:
        try:
            return _complete(body)
        except OpenAIError as err:
            return error(err.status, str(err))
        except RequestInvalid as err:  # the fleet has no verdict for this prompt
            return error(400, str(err))

    def _complete(body: dict[str, Any]) -> web.Response:
        name = body.get("model")
        if name != spec.model_id and name not in model.adapters:
            raise OpenAIError(f"The model `{name}` does not exist.", 404)
        prompt = _prompt(body)
        scored = model.loglikelihood_tokens(prompt, name if name != spec.model_id else None)
        if scored is not None:
            return _echo_logprobs(body, name, prompt, *scored)
        stop = _stop(body)
        max_tokens = _max_tokens(body)
        temperature = _number(body, "temperature", 1.0)
        if temperature < 0:
            raise OpenAIError(f"temperature must be non-negative, got {temperature}.")
        n_in = tokens.count(prompt)
        if n_in + max_tokens > spec.max_total_tokens:
            raise OpenAIError(
                f"This model's maximum context length is {spec.max_total_tokens} tokens. "
                f"However, you requested {n_in + max_tokens} tokens ({n_in} in the messages, "
                f"{max_tokens} in the completion). Please reduce the length of the messages or "
                "completion."
            )
        seed = body.get("seed")
        gen = model.generate(
            model.index.find_text(prompt),
            n_in,
            adapter_id=name if name != spec.model_id else None,
            sampling=temperature >= GREEDY_BELOW,
            seed=seed if isinstance(seed, int) else None,
            max_new_tokens=max_tokens,
            stop=stop,
            chat=False,
        )
        state.served[gen.row] += 1
        state.account(name)
        text, stop_reason = _cut_stop(gen, stop)
        n_out = len(gen.pieces)
        choice = {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": "length" if gen.finish_reason == "length" else "stop",
            "stop_reason": stop_reason,
            "prompt_logprobs": None,
        }
        return _completion(name, choice, n_in, n_out)

    def _echo_logprobs(
        body: dict[str, Any], name: str, prompt: str, row: str, toks: list[Any]
    ) -> web.Response:
        """A multiple-choice item's choice, asked as lm-eval asks vLLM: the prompt echoed with
        its tokens' log-probabilities and positions, then `max_tokens` generated tokens."""
        if not body.get("echo") or body.get("logprobs") is None:
            raise OpenAIError(
                "simulated fleet: the prompt is a choice of a multiple-choice item, which the "
                "fleet answers only with its log-likelihoods (echo: true, logprobs: 0 or more)"
            )
        max_tokens = _max_tokens(body)
        if len(toks) + max_tokens > spec.max_total_tokens:
            raise OpenAIError(f"This model's maximum context length is {spec.max_total_tokens}")
        state.served[row] += 1
        state.account(name)
        generated = [("\n", -0.3)] * max_tokens
        texts, logprobs, offsets, pos = [], [], [], 0
        for piece, lp in [*toks, *generated]:
            texts.append(piece)
            logprobs.append(lp)
            offsets.append(pos)
            pos += len(piece)
        top = [None if lp is None else {t: lp} for t, lp in zip(texts, logprobs, strict=True)]
        choice = {
            "index": 0,
            "text": "".join(texts),
            "logprobs": {
                "text_offset": offsets,
                "token_logprobs": logprobs,
                "tokens": texts,
                "top_logprobs": top,
            },
            "finish_reason": "length",
            "stop_reason": None,
            "prompt_logprobs": None,
        }
        return _completion(name, choice, len(toks), max_tokens)

    return completions


def _completion(name: str, choice: dict[str, Any], n_in: int, n_out: int) -> web.Response:
    """vLLM's completions body around one choice, with its token usage."""
    return web.json_response(
        {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": name,
            "choices": [choice],
            "usage": {
                "prompt_tokens": n_in,
                "total_tokens": n_in + n_out,
                "completion_tokens": n_out,
                "prompt_tokens_details": None,
            },
        }
    )
