"""huggingface_hub's AsyncInferenceClient, built for one endpoint: the client of the TGI and
OpenAI chat backends. Imported when a client is built, not with the registry: the candidates
loader and the CLI need the backends' names, not the HTTP stack (about a second to import)."""

from __future__ import annotations

from typing import Any


def inference_client(base_url: str | None, token: str, timeout: float) -> Any:
    """An AsyncInferenceClient (with `base_url`: OpenAI-compatible routes under it). Its httpx2
    client comes from the library's client factory, which gemfinder sets to one reading answers
    through the byte cap (oracles.transport.install); the client opens it on its first request
    and closes it with itself."""
    from huggingface_hub import AsyncInferenceClient

    from gemfinder.oracles.transport import install

    install()
    return AsyncInferenceClient(base_url=base_url, token=token, timeout=timeout)
