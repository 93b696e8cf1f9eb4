"""Derive a fleet from a correctness matrix, and the candidate list and endpoint settings that
reach it (the two files `gemfinder search` and `gemfinder serve` need).

Models are spread over a few endpoints the way a real model tree is served: each endpoint runs
one base checkpoint (official models first) and serves the other models as LoRA adapters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gemfinder.backends.registry import DEFAULT, enum_name
from gemfinder.candidates import Candidate
from gemfinder.errors import UserError
from gemfinder.sim.fleet.config import FleetConfig, fleet_from_dict
from gemfinder.sim.matrix import CorrectnessMatrix


def fleet_dict_from_matrix(
    matrix: CorrectnessMatrix,
    endpoints: int = 3,
    *,
    base_port: int = 0,
    latency_median_s: float = 0.0,
    latency_sigma: float = 0.0,
    max_concurrent_requests: int = 128,
    seed: int = 0,
) -> dict[str, Any]:
    """A fleet config (as JSON-ready dict) serving every matrix row on `endpoints` servers."""
    if endpoints < 1:
        raise UserError("endpoints", "need at least one endpoint")
    endpoints = min(endpoints, matrix.n_models)
    order = list(range(matrix.n_models))
    if matrix.is_base is not None:
        downloads = matrix.downloads if matrix.downloads is not None else np.zeros(matrix.n_models)
        order.sort(key=lambda k: (not bool(matrix.is_base[k]), -float(downloads[k]), k))
    bases, rest = order[:endpoints], order[endpoints:]
    specs = []
    for e, base in enumerate(bases):
        adapters = [matrix.models[k] for k in rest[e::endpoints]]
        specs.append(
            {
                "name": f"endpoint-{e}",
                "model_id": matrix.models[base],
                "adapters": adapters,
                "port": base_port + e if base_port else 0,
                "max_concurrent_requests": max_concurrent_requests,
                "latency": {"median_s": latency_median_s, "sigma": latency_sigma},
            }
        )
    return {"host": "127.0.0.1", "seed": seed, "endpoints": specs}


def fleet_from_matrix(matrix: CorrectnessMatrix, endpoints: int = 3, **kwargs: Any) -> FleetConfig:
    return fleet_from_dict(fleet_dict_from_matrix(matrix, endpoints, **kwargs))


def candidates_for(
    config: FleetConfig,
    urls: dict[str, str],
    matrix: CorrectnessMatrix | None = None,
    backend: str = DEFAULT,
) -> list[Candidate]:
    """One candidate per served model: base models directly, the others by adapter id."""
    rows = {name: k for k, name in enumerate(matrix.models)} if matrix is not None else {}

    def extras(row: str) -> dict[str, Any]:
        k = rows.get(row)
        if k is None or matrix is None:
            return {}
        out: dict[str, Any] = {}
        if matrix.downloads is not None:
            out["downloads"] = float(matrix.downloads[k])
        if matrix.is_base is not None:
            out["official"] = bool(matrix.is_base[k])
        return out

    candidates = []
    for spec in config.endpoints:
        url = urls[spec.name]
        candidates.append(
            Candidate(
                model_id=spec.model_id, endpoint=url, backend=backend, **extras(spec.model_id)
            )
        )
        for adapter_id, row in spec.adapters.items():
            candidates.append(
                Candidate(
                    model_id=row,
                    endpoint=url,
                    backend=backend,
                    adapter_id=adapter_id,
                    **extras(row),
                )
            )
    return candidates


def endpoints_for(
    config: FleetConfig, urls: dict[str, str], backend: str = DEFAULT
) -> list[dict[str, Any]]:
    """The endpoint settings (`gemfinder.oracles.load_endpoint_configs`) for the candidates of
    `candidates_for`: one per endpoint, listing the LoRA adapters it serves, which a search
    needs before it accepts adapter ids (TGI's /info does not list them)."""
    out = []
    for spec in config.endpoints:
        endpoint: dict[str, Any] = {
            "url": urls[spec.name],
            "backend": enum_name(backend),
            "adapters": list(spec.adapters),
        }
        if spec.serving is not None:  # the fleet's own costs, for the search to account
            endpoint["cost"] = spec.serving.cost.to_json()
            pool = spec.serving.gpu_pool
            if pool is not None:
                endpoint["gpu_pool"] = {"name": pool.name, "slots": pool.slots}
        out.append(endpoint)
    return out
