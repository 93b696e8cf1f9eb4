"""Clients of ended searches' endpoints, kept for the next search on the same endpoint.

An endpoint a caller names (not in the operator's endpoints file) is forgotten when the last
search on it ends (InferenceOracle.release), so that request-supplied URLs do not pile up. Its
client was closed with it, and the next search on that endpoint built a new one (a
huggingface_hub client and an aiohttp session: milliseconds of the event loop) and opened new
connections. Now the client waits here, up to `max_idle` of them (the least recently parked
closed first), and the next search on the same endpoint takes it back.

What this must never do is let a search use a client it would not have been given: the key of a
client (`identity`) is everything the client was built from and sends with each request:
- the backend and the URL as the oracle uses it (an OpenAI client holds its base URL, a TGI
  client is given the URL per request: either way, one URL per client here);
- the bearer token it sends (as a SHA-256 digest: the key, unlike the client, may end up in a
  log or a debugger), so a client built with the operator's token for one endpoint is never
  handed to a search that would have sent another token, or none;
- the request timeout it was built with, and the TLS settings of its connections
  (oracles.transport.tls_settings).
Which endpoints a caller may name is not decided here: the manager checks every request against
the allowlist (oracles.allowlist) before the oracle prepares anything, so a refused URL never
reaches this cache, and a URL allowed earlier does not stay allowed by having a client here.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from typing import Any

from gemfinder.oracles.endpoints import EndpointConfig
from gemfinder.oracles.transport import tls_settings

log = logging.getLogger(__name__)
Identity = tuple[Any, ...]
DEFAULT_MAX_IDLE = 32


def identity(config: EndpointConfig, timeout_s: float) -> Identity:
    """The key of the client `backend(config.backend).connect(...)` builds for `config`."""
    token = hashlib.sha256(config.bearer.encode()).hexdigest()
    return (config.backend, config.key, token, timeout_s, tls_settings())


class ClientCache:
    """Idle clients by identity. `built` and `reused` count the clients the oracle asked for
    that were built anew and taken from here."""

    def __init__(self, max_idle: int = DEFAULT_MAX_IDLE) -> None:
        self.max_idle = max_idle
        self._idle: OrderedDict[Identity, Any] = OrderedDict()
        self.built = 0
        self.reused = 0

    def __len__(self) -> int:
        return len(self._idle)

    def take(self, key: Identity) -> Any | None:
        """The idle client of exactly this identity (now the caller's), or None."""
        client = self._idle.pop(key, None)
        if client is None:
            self.built += 1
        else:
            self.reused += 1
        return client

    async def park(self, key: Identity, client: Any) -> None:
        """Keep `client` (no search uses it now) for the next search of its identity; closes
        the least recently parked beyond `max_idle`, or `client` itself when one of its
        identity is idle already."""
        if key in self._idle or self.max_idle <= 0:
            await _close(client)
            return
        self._idle[key] = client
        while len(self._idle) > self.max_idle:
            _, evicted = self._idle.popitem(last=False)
            await _close(evicted)

    async def aclose(self) -> None:
        while self._idle:
            _, client = self._idle.popitem(last=False)
            await _close(client)


async def _close(client: Any) -> None:
    try:
        await client.close()
    except Exception:  # noqa: BLE001 - dropped either way; nothing is waiting for it
        log.warning("closing an idle endpoint client failed", exc_info=True)
