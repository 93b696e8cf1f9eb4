"""Endpoint settings the user gives (token, adapters, concurrency) and a JSON loader for them.

TGI's /info does not list LoRA adapters (see the Info schema in tgi-openapi.json), and TGI
silently serves the base model for an unknown adapter id, so the adapters an endpoint was
launched with must come from here for adapter ids to be checked before a search.

Answers cached from one endpoint are served only to searches on the same endpoint (its URL), or
on endpoints the operator put in the same `cache_group`: the operator, not the caller, says
which servers give the same answers (search.spec.CacheKeys).

`backend` is spelled as in candidates files: the proto enum name (`BACKEND_OPENAI_COMPLETIONS`,
what gemfinder writes) or the short name (`openai_completions`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemfinder.backends.registry import DEFAULT, parse_backend
from gemfinder.candidates import check_endpoint_url
from gemfinder.cost import CostModel, GpuPool, cost_model_from_dict, gpu_pool_from_dict
from gemfinder.errors import UserError

# Sent instead of the locally saved Hugging Face token, which huggingface_hub would otherwise
# attach to every request, to whatever URL.
PLACEHOLDER_TOKEN = "gemfinder-no-token"
_KEYS = {
    "url",
    "backend",
    "token",
    "adapters",
    "max_concurrency",
    "served_model",
    "cache_group",
    "cost",
    "lora_paths",
    "gpu_pool",
}
MAX_CACHE_GROUP = 200


def url_scope(url: str) -> str:
    """The cache scope of an endpoint no operator setting groups: its own URL (no sharing)."""
    return f"url:{url.rstrip('/')}"


@dataclass(frozen=True)
class EndpointConfig:
    url: str
    backend: str = DEFAULT
    token: str | None = None  # None: PLACEHOLDER_TOKEN, never the local HF token
    adapters: tuple[str, ...] | None = None  # LoRA ids it was launched with; None = not given
    max_concurrency: int | None = None  # None: from /info max_concurrent_requests, capped
    served_model: str | None = None  # OpenAI backends: the name selecting the base model
    # Endpoints of one group share cached answers (replicas of one deployment, or one server
    # that moves to a new URL); None: answers are shared with no other endpoint.
    cache_group: str | None = None
    # What serving costs there (gemfinder.cost); None: the search accounts no GPU time for it.
    cost: CostModel | None = None
    # vLLM with runtime LoRA updating: adapters gemfinder registers on demand, name -> path on
    # the server (gemfinder.oracles.lora_runtime); None: none.
    lora_paths: dict[str, str] | None = None
    # Full-model endpoints sharing GPUs: at most `slots` of the pool's models up at once, in
    # the serving-cost accounting and the load-aware order (gemfinder.cost.ModelPool); None:
    # the endpoint's model has GPUs of its own.
    gpu_pool: GpuPool | None = None

    @property
    def key(self) -> str:
        return self.url.rstrip("/")

    @property
    def cache_scope(self) -> str:
        """Who produced an answer, for the evaluation cache key: the operator's group, else
        the URL (prefixed, so that a group's name never equals some endpoint's URL), plus
        the served model name when one selects the model."""
        scope = f"group:{self.cache_group}" if self.cache_group else url_scope(self.key)
        return f"{scope}|served:{self.served_model}" if self.served_model else scope

    @property
    def bearer(self) -> str:
        return self.token if self.token else PLACEHOLDER_TOKEN


def endpoint_config_from_dict(data: Any, where: str) -> EndpointConfig:
    if not isinstance(data, dict):
        raise UserError(where, "expected an object")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise UserError(
            f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(_KEYS))})"
        )
    url = data.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise UserError(f"{where}.url", "required, an http(s) URL")
    # The rules a candidate's endpoint meets: a URL no candidate may name (credentials, a
    # query, a bad host) would make the operator's endpoint unusable, found only on a request.
    check_endpoint_url(url, f"{where}.url")
    backend = parse_backend(data.get("backend", DEFAULT), f"{where}.backend")
    token = data.get("token")
    if token is not None and (not isinstance(token, str) or not token):
        raise UserError(f"{where}.token", "must be a non-empty string (or omitted)")
    adapters = data.get("adapters")
    if adapters is not None:
        if not isinstance(adapters, list) or not all(isinstance(a, str) and a for a in adapters):
            raise UserError(f"{where}.adapters", "must be a list of adapter ids")
        adapters = tuple(adapters)
    limit = data.get("max_concurrency")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UserError(f"{where}.max_concurrency", "must be an integer >= 1")
    served = data.get("served_model")
    if served is not None and not isinstance(served, str):
        raise UserError(f"{where}.served_model", "must be a string")
    group = data.get("cache_group")
    if group is not None and (
        not isinstance(group, str) or not group.strip() or len(group) > MAX_CACHE_GROUP
    ):
        raise UserError(
            f"{where}.cache_group", f"must be a non-empty string of at most {MAX_CACHE_GROUP}"
        )
    cost = data.get("cost")
    paths = data.get("lora_paths")
    if paths is not None and (
        not isinstance(paths, dict)
        or not paths
        or not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in paths.items())
    ):
        raise UserError(f"{where}.lora_paths", "must be an object adapter name -> path")
    pool = data.get("gpu_pool")
    if pool is not None:
        pool = gpu_pool_from_dict(pool, f"{where}.gpu_pool")
        if cost is None:
            raise UserError(
                f"{where}.gpu_pool", "needs the endpoint's cost block (its model's load seconds)"
            )
    return EndpointConfig(
        url.rstrip("/"),
        backend,
        token,
        adapters,
        limit,
        served,
        cache_group=group,
        cost=None if cost is None else cost_model_from_dict(cost, f"{where}.cost"),
        lora_paths=None if paths is None else dict(paths),
        gpu_pool=pool,
    )


def load_endpoint_configs(path: str | Path) -> list[EndpointConfig]:
    """A JSON list of endpoint objects (url, backend, token, adapters, max_concurrency,
    served_model, cache_group, cost, lora_paths, gpu_pool)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError("endpoints", f"cannot read {path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise UserError("endpoints", f"{path.name}: invalid JSON ({err.msg})") from None
    if not isinstance(data, list):
        raise UserError("endpoints", f"{path.name}: expected a JSON list")
    configs = [endpoint_config_from_dict(d, f"endpoints[{i}]") for i, d in enumerate(data)]
    urls = [c.key for c in configs]
    if len(set(urls)) != len(urls):
        raise UserError("endpoints", "each url may appear once")
    check_pools(configs)
    return configs


def check_pools(configs: list[EndpointConfig]) -> None:
    """The endpoints of one GPU pool must agree on its size."""
    first: dict[str, tuple[int, int]] = {}  # pool name -> (endpoint index, slots)
    for i, config in enumerate(configs):
        if config.gpu_pool is None:
            continue
        j, slots = first.setdefault(config.gpu_pool.name, (i, config.gpu_pool.slots))
        if slots != config.gpu_pool.slots:
            raise UserError(
                f"endpoints[{i}].gpu_pool.slots",
                f"pool {config.gpu_pool.name!r} has {slots} slots at endpoints[{j}], "
                f"{config.gpu_pool.slots} here",
            )
