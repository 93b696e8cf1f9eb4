"""A pool with a clear best model served by a simulated fleet, and a server configured for it:
shared by the server, search, oracle, CLI, simulation and k8s tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from gemfinder.config import ServerConfig
from gemfinder.oracles import EndpointConfig, OracleResult
from gemfinder.server.convert import spec_to_proto
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.build import candidates_for, fleet_from_matrix
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.v1 import gemfinder_pb2 as pb

from tests.fleet_support import make_items

BEST = "org/gem-7b"


def clear_best_pool(n_models: int = 16, per_task: int = 12, seed: int = 0):
    """Models of accuracy ~0.2-0.6 plus BEST at ~0.95; BEST has few downloads (a gem).

    The most downloaded model (org/ft-0) is a weak one (accuracy ~0.1), so that the few items it
    shares with BEST before its early elimination are enough for a clear paired verdict.
    """
    items = make_items(per_task, tasks=("arc_challenge", "mmlu", "winogrande", "gsm8k"))
    rng = np.random.default_rng(seed)
    models = [f"org/ft-{k}" for k in range(n_models - 1)] + [BEST]
    acc = np.append(rng.uniform(0.2, 0.6, n_models - 1), 0.95)
    acc[0] = 0.1
    correct = (rng.random((n_models, len(items))) < acc[:, None]).astype(np.uint8)
    downloads = np.append(rng.uniform(10, 1000, n_models - 1), 5.0)
    downloads[0] = 1e6
    is_base = np.zeros(n_models, dtype=bool)
    is_base[0] = True
    matrix = CorrectnessMatrix(correct, models, [it.id for it in items], downloads, is_base)
    return matrix, items


async def start_fleet(matrix, items, endpoints: int = 2, latency_s: float = 0.0):
    config = fleet_from_matrix(matrix, endpoints, latency_median_s=latency_s)
    fleet = await Fleet(config, matrix, items).start()
    urls = {name: fleet.url(name) for name in fleet.names}
    candidates = candidates_for(config, urls, matrix)
    endpoint_configs = [
        EndpointConfig(urls[s.name], adapters=tuple(s.adapters), max_concurrency=16)
        for s in config.endpoints
    ]
    return fleet, candidates, endpoint_configs


def write_endpoints(endpoint_configs, path: Path) -> Path:
    data = [
        {"url": c.url, "adapters": list(c.adapters or ()), "max_concurrency": c.max_concurrency}
        for c in endpoint_configs
    ]
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def server_config(tmp_path: Path, endpoint_configs, **kw) -> ServerConfig:
    """A server on a free port whose endpoints file lists `endpoint_configs`: the endpoints its
    callers may name (oracles.allowlist)."""
    endpoints = write_endpoints(endpoint_configs, tmp_path / "endpoints.json")
    fields = {"address": "127.0.0.1:0", "metrics_port": 0, "db": str(tmp_path / "g.db")}
    return ServerConfig(**(fields | {"endpoints": str(endpoints)} | kw))


def generate_requests(fleet: Fleet) -> int:
    return sum(fleet.state(name).requests["/generate"] for name in fleet.names)


def spec_proto(candidates, items, per_model: int = 30, seed: int = 0, **kw) -> pb.SearchSpec:
    return spec_to_proto(candidates, items, per_model, seed, **kw)


class InstantOracle:
    """An oracle that answers at once, every model right on even items (no endpoint: for tests
    of the manager and the store)."""

    async def prepare(self, candidates) -> None:
        pass

    async def release(self, candidates) -> None:
        pass

    async def answer(self, candidate, item, *, system_prompt: bool = False) -> OracleResult:
        return OracleResult(candidate.model_id, item.id, int(item.id[-1]) % 2)

    async def aclose(self) -> None:
        pass
