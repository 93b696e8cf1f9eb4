"""BACKEND_OPENAI_COMPLETIONS: OpenAI-compatible `POST /v1/completions`, the raw prompt and no
chat template (for base models that vLLM serves without one), greedy.

The request: `model`, `prompt`, `max_tokens` (vLLM's default is 16), `temperature=0` (vLLM would
otherwise sample, at 1.0 or the model's generation config), `stop`.
AsyncInferenceClient cannot send it to a URL (its `text_generation` posts TGI's
`{"inputs", "parameters"}` body; its completions helpers serve hosted providers found on the
Hub), so `CompletionsClient` posts it with the library's headers and error types: a failure is
the same HfHubHTTPError (or timeout) as on the other two paths, and `retry.classify` counts it
the same way.

Log-likelihoods (multiple-choice lm_eval items), as lm-eval's `local-completions` model asks
vLLM: the prompt context + continuation with `echo: true`, `logprobs: 1`, `max_tokens: 1`,
`temperature: 0`; `choices[0].logprobs` then holds the prompt's tokens (`token_logprobs`, the
first None) and their character positions (`text_offset`), then the one generated token, which
is ignored. The continuation's tokens are summed (gemfinder.backends.loglik).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gemfinder.backends.base import Backend, Call, Completion
from gemfinder.backends.checks import served_by_listing
from gemfinder.backends.errors import GarbageResponse, count
from gemfinder.backends.loglik import continuation_sum
from gemfinder.backends.probe import info_and_models
from gemfinder.v1 import gemfinder_pb2 as pb

if TYPE_CHECKING:
    import httpx2

ROUTE = "/v1/completions"


class CompletionsClient:
    """`POST {base_url}/v1/completions` for one endpoint, closed like an AsyncInferenceClient."""

    def __init__(self, base_url: str, token: str, timeout: float):
        from huggingface_hub.utils import build_hf_headers, get_async_session

        from gemfinder.oracles.transport import install

        install()  # get_async_session builds the byte-capped client (oracles.transport)
        self.url = f"{base_url.rstrip('/')}{ROUTE}"
        self.headers = build_hf_headers(token=token)  # what the chat client sends, too
        self.timeout = timeout
        self._session: httpx2.AsyncClient | None = get_async_session()

    async def create(self, payload: dict[str, Any]) -> Any:
        """The decoded JSON of a 2xx answer; HfHubHTTPError for an error status."""
        from huggingface_hub.utils import hf_raise_for_status

        if self._session is None:
            raise RuntimeError(f"the client of {self.url} is closed")
        # A timeout is the HTTP library's TimeoutException, which retry.classify knows.
        response = await self._session.post(
            self.url, json=payload, headers=self.headers, timeout=self.timeout
        )
        hf_raise_for_status(response)
        return response.json()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.aclose()
            self._session = None


async def query(client: CompletionsClient, call: Call) -> Completion:
    payload: dict[str, Any] = {
        "model": call.model,
        "prompt": call.prompt.text,
        "max_tokens": call.generation.max_new_tokens,
        "temperature": 0,
    }
    if call.generation.stop:
        payload["stop"] = list(call.generation.stop)
    out = await client.create(payload)
    choices = out.get("choices") if isinstance(out, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise GarbageResponse("response has no choices")
    text = choices[0].get("text")
    if not isinstance(text, str):
        raise GarbageResponse("response has no choices[0].text")
    usage = out.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return Completion(
        text, count(usage.get("prompt_tokens")), count(usage.get("completion_tokens"))
    )


async def loglikelihood(
    client: CompletionsClient, call: Call, context: str, continuation: str
) -> tuple[float, int | None]:
    full = context + continuation
    payload = {
        "model": call.model,
        "prompt": full,
        "max_tokens": 1,
        "temperature": 0,
        "echo": True,
        "logprobs": 1,
    }
    out = await client.create(payload)
    choices = out.get("choices") if isinstance(out, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise GarbageResponse("response has no choices")
    logprobs = choices[0].get("logprobs")
    if not isinstance(logprobs, dict):
        raise GarbageResponse("response has no choices[0].logprobs (echo with logprobs)")
    offsets, values = logprobs.get("text_offset"), logprobs.get("token_logprobs")
    if not isinstance(offsets, list) or not isinstance(values, list):
        raise GarbageResponse("choices[0].logprobs has no text_offset or token_logprobs")
    if not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets):
        raise GarbageResponse("choices[0].logprobs.text_offset holds a non-integer")
    usage = out.get("usage")
    prompt_tokens = count(usage.get("prompt_tokens")) if isinstance(usage, dict) else None
    return continuation_sum(offsets, values, context, full), prompt_tokens


BACKEND = Backend(
    enum=pb.BACKEND_OPENAI_COMPLETIONS,
    name="openai_completions",
    route=ROUTE,
    summary="POST /v1/completions, raw prompt, for base models",
    connect=CompletionsClient,
    query=query,
    probe=info_and_models,
    check=served_by_listing,
    loglikelihood=loglikelihood,
)
