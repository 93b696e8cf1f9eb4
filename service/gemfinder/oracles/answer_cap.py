"""A cap on the bytes of one endpoint answer, in the HTTP client the oracle's calls go through.

huggingface_hub reads a whole answer into memory and parses it on the event loop: a hostile or
broken endpoint answering 100 MB took the server from 82 MB to 1.7 GB and stalled every other
call for 15 s. Here the client stops reading past `max_bytes` (a declared Content-Length above
it is refused before any byte is read) and raises AnswerTooLarge, which the oracle counts as an
endpoint failure (`too_large`), never as a wrong answer. Answers are asked for uncompressed
(`Accept-Encoding: identity`) and a compressed one is refused as garbage: the cap counts bytes
on the wire, and a small gzip body can expand a thousandfold.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx2
from huggingface_hub.utils._http import async_hf_request_event_hook, async_hf_response_event_hook

from gemfinder import bounded_json

# TGI's /generate with details for 512 tokens is about 50 KB; chat answers are smaller.
DEFAULT_MAX_ANSWER_BYTES = 1024 * 1024
# The pre-search probes (/info, /v1/models of a server with many adapters): a few KB.
MAX_PROBE_BYTES = 1024 * 1024


class AnswerTooLarge(Exception):
    """An answer longer than the cap (an endpoint failure, not retried: it would answer the
    same again)."""


class CompressedAnswer(ValueError):
    """A compressed answer although `identity` was asked (garbage: its size is unknowable)."""


class _CappedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, max_bytes: int, url: str) -> None:
        self.inner, self.max_bytes, self.url = inner, max_bytes, url

    async def __aiter__(self) -> AsyncIterator[bytes]:
        total = 0
        async for chunk in self.inner:
            total += len(chunk)
            if total > self.max_bytes:
                raise AnswerTooLarge(_reason(self.url, self.max_bytes, "read"))
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


def _reason(url: str, max_bytes: int, how: str) -> str:
    return f"answer from {url} is over {max_bytes} bytes ({how}; --max-answer-bytes)"


class CappedTransport(httpx2.AsyncBaseTransport):
    """Wraps a transport: every response body passes through the byte cap."""

    def __init__(self, max_bytes: int, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self.max_bytes = max_bytes
        self.inner = inner or httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        url = f"{request.url.scheme}://{request.url.netloc.decode()}"
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await response.aclose()
            raise AnswerTooLarge(_reason(url, self.max_bytes, f"Content-Length {declared}"))
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            await response.aclose()
            raise CompressedAnswer(f"answer from {url} is compressed ({encoding})")
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_CappedStream(response.stream, self.max_bytes, url),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def capped_session(max_bytes: int) -> httpx2.AsyncClient:
    """An httpx client like huggingface_hub's own (its logging hooks, redirects followed, no
    client-level timeout: the oracle sets one) that reads answers through the cap. Each
    backend's client is built on one (gemfinder.backends.base.Connect)."""
    return httpx2.AsyncClient(
        transport=CappedTransport(max_bytes),
        headers={"accept-encoding": "identity"},
        event_hooks={
            "request": [async_hf_request_event_hook],
            "response": [async_hf_response_event_hook],
        },
        follow_redirects=True,
        timeout=None,
    )


async def probe_json(response: aiohttp.ClientResponse, max_bytes: int = MAX_PROBE_BYTES) -> Any:
    """The JSON body of a probe's answer (aiohttp), read up to `max_bytes` and parsed with a
    bound on nesting; ValueError when longer, nested deeper, or not JSON. (A 100,000-deep /info
    raised RecursionError out of the probe: an internal error for the caller's request.)"""
    body = await response.content.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise ValueError(f"answer over {max_bytes} bytes")
    return bounded_json.loads(body)
