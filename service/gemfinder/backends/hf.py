"""huggingface_hub's AsyncInferenceClient, built for one endpoint: the client of the TGI and
OpenAI chat backends. Imported when a client is built, not with the registry: the candidates
loader and the CLI need the backends' names, not the HTTP stack (about a second to import)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx2


def inference_client(
    base_url: str | None, token: str, timeout: float, http: httpx2.AsyncClient
) -> Any:
    """An AsyncInferenceClient (with `base_url`: OpenAI-compatible routes under it) that reads
    its answers through `http` and closes it with itself. The client opens its httpx client
    lazily in `_async_client` and uses one set beforehand instead."""
    from huggingface_hub import AsyncInferenceClient

    client = AsyncInferenceClient(base_url=base_url, token=token, timeout=timeout)
    client._async_client = http
    client.exit_stack.push_async_callback(http.aclose)
    return client
