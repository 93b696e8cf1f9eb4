"""The HTTP transport under huggingface_hub's clients: aiohttp behind httpx2's transport API,
reading every answer through the byte cap (oracles.answer_cap).

huggingface_hub builds its requests and raises its errors with httpx2; the library lets a
program choose the `httpx2.AsyncClient` it uses (`set_async_client_factory`), so the bytes can
move through a cheaper transport while the library's request building, error types and parsing
stay as they are. Against the simulated fleet, a bare huggingface_hub loop spent 0.94 ms of CPU
per request on httpx2's own transport (httpcore2 over anyio) and 0.53 ms on this one
(docs/oracles.md, "Client cost and worker processes"); and httpx2 built one SSL context
(21-25 ms of CPU) per client, where one per process serves all.

What the transport keeps from the one it replaces:
- the cap: a declared Content-Length above it is refused before any byte is read, reading stops
  past it (AnswerTooLarge: `too_large`), and a compressed answer is garbage (its size once
  inflated is unknowable);
- httpx2's exception types (connect, read, timeout, protocol errors), so retry.classify and the
  circuit breaker see what they saw;
- redirects are httpx2's to follow, and the client never does (`capped_client`); the timeout is
  the request's.
Proxies from the environment are not used (`trust_env=False`): endpoints are reached directly,
as the pre-search probes reach them.
"""

from __future__ import annotations

import asyncio
import ssl
from contextvars import ContextVar
from typing import Any

import aiohttp
import httpx2

from gemfinder.backends.base import RESPONSE_HEADERS
from gemfinder.oracles.answer_cap import (
    DEFAULT_MAX_ANSWER_BYTES,
    AnswerTooLarge,
    CompressedAnswer,
    reason,
)

# The cap of the answer being read: set by the oracle for its calls (InferenceOracle._attempt),
# so that every client in the process reads through the cap of the oracle that calls it.
MAX_ANSWER_BYTES: ContextVar[int] = ContextVar("max_answer_bytes", default=DEFAULT_MAX_ANSWER_BYTES)

# The connect timeout of the attempt being made (RetryPolicy.connect_timeout_s, set by the
# oracle like the cap): huggingface_hub gives httpx2 one timeout for connect and read alike, so
# without this a black-holed address would hold each attempt for the whole request timeout.
CONNECT_TIMEOUT_S: ContextVar[float | None] = ContextVar("connect_timeout_s", default=None)

_SSL: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """One verifying SSL context for every connection of the process (building one loads the
    CA bundle: 21-25 ms of CPU)."""
    global _SSL
    if _SSL is None:
        _SSL = ssl.create_default_context()
    return _SSL


def tls_settings() -> tuple[str, bool]:
    """What a client's TLS connections depend on, for the keys of reused clients
    (oracles.client_cache): every client of the process connects with `ssl_context()`, so this
    is the same for all of them today; TLS settings per endpoint would have to be part of it."""
    context = ssl_context()
    return (context.verify_mode.name, context.check_hostname)


def warm() -> None:
    """Pay now for what the first endpoint client of the process would pay for on the event
    loop: importing huggingface_hub's async client (140-180 ms of CPU in a bare interpreter:
    it is imported when first used, see backends.hf) and building the SSL context (21-25 ms).
    `gemfinder serve` calls this before it accepts requests (server.app), so that the first
    StartSearch does not."""
    from huggingface_hub import AsyncInferenceClient  # noqa: F401 - imported for its cost

    install()
    ssl_context()


class Redirected(Exception):
    """An endpoint answered with a redirect, which is never followed (`capped_client`): an
    endpoint failure (retry.classify: http_error), never a response to grade (huggingface_hub
    does not raise on 3xx, so the redirect's body would otherwise be read as the answer)."""


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """One client's connections: an aiohttp session opened on first use, in the running loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No connection limit here: the oracle's per-endpoint semaphore bounds requests.
            connector = aiohttp.TCPConnector(limit=0, ssl=ssl_context())
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    def _timeout(self, request: httpx2.Request) -> aiohttp.ClientTimeout:
        t = request.extensions.get("timeout") or {}
        connect, cap = t.get("connect"), CONNECT_TIMEOUT_S.get()
        if cap is not None:
            connect = cap if connect is None else min(connect, cap)
        key = (connect, t.get("read"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=key[0], sock_read=key[1])
            self._timeouts[key] = timeout
        return timeout

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        session = self._open()
        max_bytes = MAX_ANSWER_BYTES.get()
        url = str(request.url)
        try:
            async with session.request(
                request.method,
                url,
                headers=request.headers.multi_items(),
                data=request.content or None,
                allow_redirects=False,
                timeout=self._timeout(request),
            ) as resp:
                body = await _read_capped(resp, max_bytes, request)
                headers = resp.raw_headers
                status = resp.status
        except (AnswerTooLarge, CompressedAnswer):
            raise
        except aiohttp.ClientConnectorError as exc:
            raise httpx2.ConnectError(str(exc), request=request) from exc
        except aiohttp.ConnectionTimeoutError as exc:  # no connection: the circuit counts it
            raise httpx2.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx2.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except (aiohttp.ClientPayloadError, asyncio.IncompleteReadError) as exc:
            raise httpx2.RemoteProtocolError(str(exc), request=request) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx2.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
        if 300 <= status < 400:
            location = resp.headers.get("Location", "")[:200]
            raise Redirected(
                f"{request.method} {request.url.path} answered {status} (to {location!r}): "
                "redirects are not followed, only the endpoint's own URL was allowed"
            )
        wanted = RESPONSE_HEADERS.get()
        if wanted is not None:
            wanted.update((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in headers)
        return httpx2.Response(status, headers=list(headers), content=body)

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int, request: Any) -> bytes:
    where = f"{request.url.scheme}://{request.url.netloc.decode()}"
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise AnswerTooLarge(reason(where, max_bytes, f"Content-Length {declared}"))
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise CompressedAnswer(f"answer from {where} is compressed ({encoding})")
    if resp.content_length is not None:  # the usual case: one read of a known length
        return await resp.content.readexactly(resp.content_length)
    chunks, total = [], 0
    async for chunk in resp.content.iter_any():
        total += len(chunk)
        if total > max_bytes:
            raise AnswerTooLarge(reason(where, max_bytes, "read"))
        chunks.append(chunk)
    return b"".join(chunks)


def capped_client() -> httpx2.AsyncClient:
    """The httpx2 client of every huggingface_hub async client in the process (installed with
    `set_async_client_factory` by `install`): redirects never followed, no client-level timeout
    (the oracle sets one), answers asked for uncompressed.

    An endpoint that answers with a redirect gets an endpoint failure, not a second request: a
    redirect would take the query (and the endpoint's token) past the endpoint allowlist to any
    host the endpoint names, e.g. a metadata service or the store (tests/oracles/
    test_redirects.py). Inference servers do not redirect their generation routes.

    Without the library's default event hooks, which are for the Hugging Face Hub: the request
    hook refuses every request under HF_HUB_OFFLINE (these are the operator's own servers), adds
    a trace id for the Hub's logs and a download counter; the response hook reads error bodies,
    which this transport has read already. Together they cost 0.09 ms of CPU per request, a
    fifth of the client's (docs/oracles.md). httpx2 still logs each request (at INFO, shown by
    `gemfinder serve` at --log-level DEBUG)."""
    return httpx2.AsyncClient(
        transport=AiohttpTransport(),
        headers={"accept-encoding": "identity"},
        follow_redirects=False,
        timeout=None,
        trust_env=False,
    )


_installed = False


def install() -> None:
    """Make `capped_client` huggingface_hub's async client factory (once per process)."""
    global _installed
    if not _installed:
        from huggingface_hub import set_async_client_factory

        set_async_client_factory(capped_client)
        _installed = True
