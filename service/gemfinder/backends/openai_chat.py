"""BACKEND_OPENAI: OpenAI-compatible `POST /v1/chat/completions` (vLLM, SGLang, TGI Messages
API), the prompt as chat messages, greedy.

A client built with `base_url=`, explicit `model=` (else it sends "dummy"), `temperature=0`,
`max_tokens`.
"""

from __future__ import annotations

from typing import Any

from gemfinder.backends.base import Backend, Call, Completion
from gemfinder.backends.checks import served_by_listing
from gemfinder.backends.errors import GarbageResponse
from gemfinder.backends.hf import inference_client
from gemfinder.backends.probe import info_and_models
from gemfinder.v1 import gemfinder_pb2 as pb


def connect(url: str, token: str, timeout: float) -> Any:
    return inference_client(url, token, timeout)


async def query(client: Any, call: Call) -> Completion:
    out = await client.chat_completion(
        call.prompt.messages,
        model=call.model,
        temperature=0,
        max_tokens=call.generation.max_new_tokens,
        stop=list(call.generation.stop) or None,
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


BACKEND = Backend(
    enum=pb.BACKEND_OPENAI,
    name="openai",
    route="/v1/chat/completions",
    summary="POST /v1/chat/completions, chat messages",
    connect=connect,
    query=query,
    probe=info_and_models,
    check=served_by_listing,
)
