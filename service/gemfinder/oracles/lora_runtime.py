"""Adapters on demand on vLLM (issue 17): registered before they are asked, unregistered once
eliminated, through vLLM's runtime LoRA API.

An endpoint's settings may list `lora_paths` (adapter name -> path on the vLLM server; vLLM must
run with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True). The operator, not the caller, names the paths:
a request can only pick among them by adapter id, so no caller makes a server read a path of its
choosing. Before the first query to such an adapter, `ensure` posts
`/v1/load_lora_adapter {"lora_name", "lora_path"}`; vLLM's 400 "has already been loaded" means
someone else registered it, and gemfinder then uses it but never unregisters it. `release`
posts `/v1/unload_lora_adapter` only for names gemfinder registered itself. A load that fails
fails that adapter's queries (HTTP_ERROR, counted as failures, never as wrong answers), at once
and without asking the server again. The runner releases eliminated candidates after each round
and every candidate at the end, so at most one round's survivors are registered at once; the
core's load-aware order asks them one after another per endpoint.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from gemfinder.oracles.endpoints import EndpointConfig

log = logging.getLogger(__name__)

LOAD = "/v1/load_lora_adapter"
UNLOAD = "/v1/unload_lora_adapter"
ALREADY = "has already been loaded"  # vLLM's 400 for a name registered before


class RuntimeAdapters:
    def __init__(self, timeout_s: float = 60.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._ours: dict[str, set[str]] = {}  # endpoint -> names gemfinder registered
        self._ready: dict[str, set[str]] = {}  # endpoint -> names registered (anyone's)
        self._failed: dict[tuple[str, str], str] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.loads = 0
        self.unloads = 0

    @staticmethod
    def on_demand(config: EndpointConfig | None, adapter_id: str | None) -> bool:
        return bool(config and config.lora_paths and adapter_id in config.lora_paths)

    def registered_by_us(self, endpoint: str) -> set[str]:
        return set(self._ours.get(endpoint.rstrip("/"), ()))

    async def _post(self, config: EndpointConfig, path: str, body: dict) -> tuple[int, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Authorization": f"Bearer {config.bearer}"}
        async with self._session.post(config.key + path, json=body, headers=headers) as resp:
            return resp.status, (await resp.text())[:500]

    async def ensure(self, config: EndpointConfig, name: str) -> str | None:
        """None once `name` is registered on the endpoint, else why it cannot be."""
        key = (config.key, name)
        if name in self._ready.get(config.key, ()):
            return None
        if key in self._failed:
            return self._failed[key]
        async with self._locks.setdefault(key, asyncio.Lock()):
            if name in self._ready.get(config.key, ()):
                return None
            if key in self._failed:
                return self._failed[key]
            assert config.lora_paths is not None
            path = config.lora_paths[name]
            try:
                status, text = await self._post(
                    config, LOAD, {"lora_name": name, "lora_path": path}
                )
            except (aiohttp.ClientError, TimeoutError) as err:
                return f"registering adapter {name!r} on {config.key} failed: {err!r}"[:500]
            if status == 200:
                self._ours.setdefault(config.key, set()).add(name)
                self.loads += 1
            elif not (status == 400 and ALREADY in text):
                self._failed[key] = (
                    f"registering adapter {name!r} ({path}) on {config.key} failed: HTTP "
                    f"{status}: {text}"
                )[:500]
                return self._failed[key]
            self._ready.setdefault(config.key, set()).add(name)
            return None

    async def release(self, config: EndpointConfig, names: list[str]) -> None:
        """Unregister those of `names` that gemfinder registered on the endpoint."""
        for name in names:
            if name not in self._ours.get(config.key, ()):
                continue  # not ours (or not registered): never unregistered
            async with self._locks.setdefault((config.key, name), asyncio.Lock()):
                if name not in self._ours.get(config.key, ()):
                    continue
                try:
                    status, text = await self._post(config, UNLOAD, {"lora_name": name})
                except (aiohttp.ClientError, TimeoutError) as err:
                    log.warning("unregistering %s on %s failed: %r", name, config.key, err)
                    continue
                if status not in (200, 404):  # 404: gone already (someone unloaded it)
                    log.warning("unregistering %s on %s: %s %s", name, config.key, status, text)
                    continue
                self._ours[config.key].discard(name)
                self._ready.get(config.key, set()).discard(name)
                self.unloads += status == 200

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
