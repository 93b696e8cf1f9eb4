"""The two wire protocols, through huggingface_hub's AsyncInferenceClient, with greedy params.

TGI `/generate`: `do_sample=False` and no temperature/top_k/top_p/typical_p (any of them turns
sampling on), `max_new_tokens` always, `return_full_text=False` always, `details=True` for
token counts, `adapter_id` for LoRA candidates.
OpenAI-compatible chat (vLLM, SGLang, TGI Messages API): a client built with `base_url=`,
explicit `model=` (else it sends "dummy"), `temperature=0`, `max_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

from huggingface_hub import AsyncInferenceClient

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
