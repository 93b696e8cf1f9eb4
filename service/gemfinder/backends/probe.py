"""The pre-search probe of the servers gemfinder speaks to: GET /info and GET /v1/models.

TGI answers /info (its model id and max_concurrent_requests, which sizes the oracle's pool) and
a single ModelInfo at /v1/models; vLLM and SGLang have no /info and list the base model and
every LoRA adapter at /v1/models. Both are asked, concurrently, whatever the backend: any HTTP
status from either means the server is up (a TGI whose Messages API is called through an OpenAI
backend still tells its concurrency).
"""

from __future__ import annotations

import asyncio

from gemfinder.backends.base import Get


async def info_and_models(get: Get) -> dict:
    (info_ok, info, info_err), (listed_ok, listed, _) = await asyncio.gather(
        get("/info"), get("/v1/models")
    )
    ids = None
    # vLLM/SGLang list base model and adapters; TGI returns one ModelInfo object.
    if isinstance(listed, dict) and isinstance(listed.get("data"), list):
        ids = [str(m.get("id")) for m in listed["data"] if isinstance(m, dict)]
    return {
        "info": info if isinstance(info, dict) else None,
        "models": ids,
        "unreachable": None if info_ok or listed_ok else info_err,
    }
