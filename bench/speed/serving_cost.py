"""GPU-seconds and wall time of one search in load-aware vs item-major order, side by side.

Runs the search (gem by default) through the service's runner and the real HTTP oracle against
the simulated vLLM fleet on its virtual clock (docs/oracles.md "Serving cost"), once per order,
for two trees of the same size:
- adapter-heavy: each endpoint serves a base model (30 s to bring up) and LoRA adapters that
  take 2 s to move into one of 4 GPU slots (all held in host memory);
- full-model-heavy: each endpoint is a model-swapping server with 4 GPUs in front of full models,
  each 30 s to bring onto a GPU (modelled as slots whose swap costs 30 s);
- gpu-pool: one endpoint per full model, all sharing one `gpu_pool` of 4 GPUs (a model 30 s to
  bring up, the least recently used one taken down for it), in the fleet as in the endpoints
  file the search accounts from.
Every query costs 0.2 s. The figures are the fleet's (measured on its clock); the search's own
accounting (result.cost) is printed beside them, and the winner, which must not change.

    python -m bench.speed.serving_cost [--models 64] [--endpoints 4] [--budget-per-model 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np
from gemfinder.oracles import InferenceOracle
from gemfinder.oracles.endpoints import endpoint_config_from_dict
from gemfinder.search import gpu_budget
from gemfinder.search.runner import SearchRunner
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.build import candidates_for, endpoints_for
from gemfinder.sim.fleet.config import fleet_from_dict
from gemfinder.sim.fleet.synthetic_items import generate
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.store import Store
from gemfinder.tasks import parse_item

SLOTS, QUERY_S, MODEL_S, ADAPTER_S = 4, 0.2, 30.0, 2.0


def _pool(models: int, items: int, seed: int):
    records = generate(items, seed=seed, tasks=("mmlu",))
    its = [parse_item(json.dumps(r), f"item {r['id']}") for r in records]
    rng = np.random.default_rng(seed)
    acc = rng.uniform(0.45, 0.8, models)
    acc[rng.integers(models)] = 0.9
    correct = (rng.random((models, len(its))) < acc[:, None]).astype(np.uint8)
    names = [f"org/model-{k}" for k in range(models)]
    return CorrectnessMatrix(correct, names, [it.id for it in its]), its


def _fleet(matrix: CorrectnessMatrix, endpoints: int, full_models: bool) -> dict:
    per = [matrix.models[e::endpoints] for e in range(endpoints)]
    serving = {
        "model_load_s": 0.0 if full_models else MODEL_S,
        "swap_s": MODEL_S if full_models else ADAPTER_S,
        "query_s": QUERY_S,
        "max_loras": SLOTS,
        "max_cpu_loras": max(len(p) for p in per),
    }
    return {
        "endpoints": [
            {
                "name": f"endpoint-{e}",
                "model_id": rows[0],
                "adapters": rows[1:],
                "server": "vllm",
                "chat_template": False,
                "max_concurrent_requests": 512,
                "serving": serving,
            }
            for e, rows in enumerate(per)
        ]
    }


def _pooled_fleet(matrix: CorrectnessMatrix) -> dict:
    """One endpoint per model, every one in the same GPU pool of SLOTS models."""
    serving = {"model_load_s": MODEL_S, "query_s": QUERY_S,
               "gpu_pool": {"name": "rack", "slots": SLOTS}}  # fmt: skip
    return {
        "endpoints": [
            {
                "name": f"endpoint-{k}",
                "model_id": model,
                "server": "vllm",
                "chat_template": False,
                "max_concurrent_requests": 512,
                "serving": serving,
            }
            for k, model in enumerate(matrix.models)
        ]
    }


def served(config, urls: dict[str, str], matrix) -> tuple[list, list]:
    """The fleet's models as candidates and its endpoints' settings, as a caller writes them."""
    candidates = candidates_for(config, urls, matrix, "openai_completions")
    configs = [
        endpoint_config_from_dict(e, f"endpoints[{i}]")
        for i, e in enumerate(endpoints_for(config, urls, "openai_completions"))
    ]
    return candidates, configs


async def _run(
    matrix,
    items,
    raw: dict,
    load_aware: bool,
    budget: int,
    algorithm: str,
    gpu_seconds: float | None = None,
    seed: int = 1,
):
    """The search through the runner and the HTTP oracle against the fleet: its result, the
    fleet's measurements per endpoint, the real seconds. With `gpu_seconds` its query budget is
    planned from the cap as a start plans it (search.gpu_budget)."""
    config = fleet_from_dict(raw)
    async with Fleet(config, matrix, items) as fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        candidates, configs = served(config, urls, matrix)
        oracle = InferenceOracle(configs)
        spec = SearchSpec(
            candidates,
            items,
            budget=budget,
            algorithm=algorithm,
            seed=seed,
            gpu_seconds=gpu_seconds,
        )
        spec.validate()
        spec = gpu_budget.planned(spec, oracle.configs)
        store = Store()
        store.create_search("s", None, spec.to_dict())
        await oracle.prepare(candidates)
        started = time.perf_counter()
        result = await SearchRunner("s", spec, oracle, store, load_aware=load_aware).run()
        seconds = time.perf_counter() - started
        await oracle.aclose()
        measured = [fleet.state(n).ledger.summary() for n in fleet.names]
    return result, measured, seconds


def _row(tree: str, order: str, result, measured, seconds: float) -> str:
    gpu = sum(m["gpu_seconds"] for m in measured)
    wall = max(m["wall_s"] for m in measured)
    loads = sum(m["model_loads"] + m["swaps"] for m in measured)
    queries = sum(m["queries"] for m in measured)
    accounted = result.cost.gpu_seconds if result.cost else float("nan")
    return (
        f"{tree:<17}{order:<12}{queries:>8}{loads:>8}{gpu:>12,.0f}{wall:>11,.0f}"
        f"{accounted:>12,.0f}  {result.winner.model_id:<16}{seconds:>6.1f}"
    )


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=64)
    p.add_argument("--endpoints", type=int, default=4)
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--budget-per-model", type=int, default=20)
    p.add_argument("--algorithm", default="gem")
    args = p.parse_args()
    matrix, items = _pool(args.models, args.items, seed=3)
    budget = args.budget_per_model * args.models
    print(
        f"{args.models} models on {args.endpoints} endpoints, {len(items)} items, budget "
        f"{budget:,}, {args.algorithm}; {SLOTS} slots, {MODEL_S:.0f} s per full model, "
        f"{ADAPTER_S:.0f} s per adapter, {QUERY_S} s per query"
    )
    print(
        f"{'tree':<17}{'order':<12}{'queries':>8}{'loads':>8}{'GPU-s':>12}{'wall s':>11}"
        f"{'accounted':>12}  {'winner':<16}{'real s':>6}"
    )
    trees = (
        ("adapter-heavy", _fleet(matrix, args.endpoints, False)),
        ("full-model-heavy", _fleet(matrix, args.endpoints, True)),
        ("gpu-pool", _pooled_fleet(matrix)),
    )
    for tree, raw in trees:
        winners = set()
        for order, aware in (("item-major", False), ("load-aware", True)):
            result, measured, seconds = await _run(
                matrix, items, raw, aware, budget, args.algorithm
            )
            winners.add(result.winner.model_id)
            print(_row(tree, order, result, measured, seconds))
        assert len(winners) == 1, f"{tree}: the order changed the winner: {winners}"


if __name__ == "__main__":
    asyncio.run(main())
