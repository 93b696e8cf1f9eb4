"""The three wire protocols, through huggingface_hub, with greedy params.

TGI `/generate`: `do_sample=False` and no temperature/top_k/top_p/typical_p (any of them turns
sampling on), `max_new_tokens` always, `return_full_text=False` always, `details=True` for
token counts, `adapter_id` for LoRA candidates.
OpenAI-compatible chat (vLLM, SGLang, TGI Messages API): a client built with `base_url=`,
explicit `model=` (else it sends "dummy"), `temperature=0`, `max_tokens`.
OpenAI-compatible completions (`POST /v1/completions`, raw prompt, no chat template; for base
models that vLLM serves without one): `model`, `prompt`, `max_tokens` (vLLM's default is 16),
`temperature=0` (vLLM would otherwise sample, at 1.0 or the model's generation config), `stop`.
AsyncInferenceClient cannot send this request to a URL (its `text_generation` posts TGI's
`{"inputs", "parameters"}` body; its completions helpers serve hosted providers found on the
Hub), so `CompletionsClient` posts it with the library's HTTP session, headers and error
types: a failure is the same HfHubHTTPError (or timeout) as on the other two paths, and
`retry.classify` counts it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import build_hf_headers, get_async_session, hf_raise_for_status

from gemfinder.candidates import Candidate
from gemfinder.tasks import GenerationSettings, Prompt


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None


class GarbageResponse(ValueError):
    """A 200 response that parsed but lacks what the API promises."""


async def tgi_generate(
    client: AsyncInferenceClient,
    url: str,
    candidate: Candidate,
    prompt: Prompt,
    generation: GenerationSettings,
) -> Completion:
    out = await client.text_generation(
        prompt.text,
        model=f"{url}/generate",  # posted to as given: a bare URL would hit POST /
        max_new_tokens=generation.max_new_tokens,
        stop=list(generation.stop),
        do_sample=False,
        return_full_text=False,
        details=True,
        adapter_id=candidate.adapter_id,
    )
    text = getattr(out, "generated_text", None)
    if not isinstance(text, str):
        raise GarbageResponse("response has no generated_text")
    details = getattr(out, "details", None)
    generated = getattr(details, "generated_tokens", None)
    prefill = getattr(details, "prefill", None)
    return Completion(text, len(prefill) if prefill else None, generated)


async def openai_chat(
    client: AsyncInferenceClient,
    model_name: str,
    prompt: Prompt,
    generation: GenerationSettings,
) -> Completion:
    out = await client.chat_completion(
        prompt.messages,
        model=model_name,
        temperature=0,
        max_tokens=generation.max_new_tokens,
        stop=list(generation.stop) or None,
    )
    choices = getattr(out, "choices", None)
    if not choices:
        raise GarbageResponse("response has no choices")
    content = getattr(choices[0].message, "content", None)
    if not isinstance(content, str):
        raise GarbageResponse("response has no message content")
    usage = getattr(out, "usage", None)
    return Completion(
        content,
        getattr(usage, "prompt_tokens", None),
        getattr(usage, "completion_tokens", None),
    )


class CompletionsClient:
    """`POST {base_url}/v1/completions` for one endpoint, closed like an AsyncInferenceClient."""

    def __init__(self, base_url: str, token: str, timeout: float | None) -> None:
        self.url = f"{base_url.rstrip('/')}/v1/completions"
        self.headers = build_hf_headers(token=token)  # what the chat client sends, too
        self.timeout = timeout
        self._session: Any = None

    async def create(self, payload: dict[str, Any]) -> Any:
        """The decoded JSON of a 2xx answer; HfHubHTTPError for an error status."""
        if self._session is None:
            self._session = get_async_session()
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


NO_CHAT_TEMPLATE_HINT = (
    " (a model without a chat template: call it with the raw prompt, backend "
    "BACKEND_OPENAI_COMPLETIONS; docs/oracles.md)"
)


def add_server_message(exc: BaseException) -> None:
    """vLLM (0.6) puts its reason in a top-level `message`, which huggingface_hub does not
    read (it reads `error`): add it to an HTTP error from any backend, so the recorded failure
    says why, and for a chat request refused for want of a chat template, what to use."""
    response = getattr(exc, "response", None)
    if not isinstance(exc, HfHubHTTPError) or response is None:
        return
    message = getattr(exc, "server_message", None)
    if not message:
        try:
            body = response.json()
        except ValueError:
            return
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message:
            return
        exc.append_to_message(f"\n{message}")
    if "chat template" in str(message) and "BACKEND_OPENAI_COMPLETIONS" not in str(exc):
        exc.append_to_message(NO_CHAT_TEMPLATE_HINT)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def openai_completion(
    client: CompletionsClient,
    model_name: str,
    prompt: Prompt,
    generation: GenerationSettings,
) -> Completion:
    payload: dict[str, Any] = {
        "model": model_name,
        "prompt": prompt.text,
        "max_tokens": generation.max_new_tokens,
        "temperature": 0,
    }
    if generation.stop:
        payload["stop"] = list(generation.stop)
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
        text, _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    )
