"""`gemfinder plan` against what the search then spends, side by side, on the simulated fleets
of bench.speed.serving_cost (adapter-heavy and full-model-heavy; 4 slots, 30 s per full model,
2 s per adapter, 0.2 s per query).

For each tree the plan (gemfinder.search.plan: the algorithm on a synthetic tree of the same
size, its pulls replayed through the endpoints' cost models) is made from the candidates, the
endpoint settings and the budget alone, without a query; then the search runs through the
service's runner and the real HTTP oracle against the fleet, and the fleet's own measurements
(its ledger on the virtual clock) are the actual figures. Ratio = plan / actual; the issue's
acceptance is within 20% (0.8-1.2) for queries, GPU-seconds and wall time.

A sequential algorithm's spend varies widely from one search to the next (the item order alone
moves UCB-E's GPU-seconds 2x on one pool), and one search is one draw: `--searches N` runs the
search with seeds 1..N and compares the plan's mean with theirs (the plan's trials are such
draws). `--pool tree` serves a synthetic tree of the shape the plan assumes (the qwen2.5-7b
preset, another seed) instead of the default pool (uniform 0.45-0.8 with one model at 0.9).

    python -m bench.speed.plan_accuracy [--models 64] [--endpoints 4] [--budget-per-model 20]
        [--algorithm gem] [--searches 1] [--pool clear-gem|tree]
"""

from __future__ import annotations

import argparse
import asyncio
import json

import numpy as np
from gemfinder.search import plan
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.config import fleet_from_dict
from gemfinder.sim.fleet.synthetic_items import for_items
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.tasks import parse_item

from bench.speed.serving_cost import _fleet, _pool, _run, served

FIGURES = (("queries", "queries"), ("gpu_seconds", "GPU-s"), ("wall_s", "wall s"))
TREE_SEED = 11  # the served tree's (the plan draws its own from the spec's seed)


async def _plan(
    matrix,
    items,
    raw: dict,
    budget: int,
    algorithm: str,
    trials: int,
    gpu_seconds: float | None = None,
):
    """The plan, made from what a caller has: candidates, endpoint settings, budget (the
    fleet is started only to know its URLs; the plan sends it nothing)."""
    config = fleet_from_dict(raw)
    async with Fleet(config, matrix, items) as fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        candidates, configs = served(config, urls, matrix)
        sent = sum(fleet.state(n).ledger.summary()["queries"] for n in fleet.names)
    assert sent == 0, "a plan sent queries"
    spec = SearchSpec(
        candidates, items, budget=budget, algorithm=algorithm, seed=1, gpu_seconds=gpu_seconds
    )
    spec.validate()
    return plan.plan(spec, {c.key: c for c in configs}, trials)


def actual(measured: list[dict]) -> dict[str, float]:
    """The fleet's measurements in the plan's terms."""
    return {
        "queries": sum(m["queries"] for m in measured),
        "gpu_seconds": sum(m["gpu_seconds"] for m in measured),
        "wall_s": max(m["wall_s"] for m in measured),
    }


def tree_pool(models: int, items: int):
    """A synthetic tree of the plan's preset as the served pool, its items as text (without
    downloads, like the default pool: the plan then deals its models afresh per trial)."""
    from gemfinder.sim import trees

    tree = trees.generate(plan.PRESET, TREE_SEED, models=models, items=items).matrix
    records = {r["id"]: r for r in for_items(tree.items)}
    its = [parse_item(json.dumps(records[i]), f"item {i}") for i in tree.items]
    return CorrectnessMatrix(tree.correct, list(tree.models), list(tree.items)), its


async def searched(matrix, items, raw: dict, budget: int, algorithm: str, searches: int):
    """The fleet's measurements of `searches` searches (seeds 1..searches): their mean, and
    per figure the lowest and highest."""
    runs = []
    for seed in range(1, searches + 1):
        _, measured, _ = await _run(matrix, items, raw, True, budget, algorithm, seed=seed)
        runs.append(actual(measured))
    return {
        name: (float(np.mean([r[name] for r in runs])), min(r[name] for r in runs),
               max(r[name] for r in runs))
        for name, _ in FIGURES
    }  # fmt: skip


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=64)
    p.add_argument("--endpoints", type=int, default=4)
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--budget-per-model", type=int, default=20)
    p.add_argument("--algorithm", default="gem")
    p.add_argument("--trials", type=int, default=plan.DEFAULT_TRIALS)
    p.add_argument("--searches", type=int, default=1, help="actual: the mean of this many "
                   "searches (seeds 1..N)")  # fmt: skip
    p.add_argument("--pool", choices=("clear-gem", "tree"), default="clear-gem")
    args = p.parse_args()
    if args.pool == "tree":
        matrix, items = tree_pool(args.models, args.items)
    else:
        matrix, items = _pool(args.models, args.items, seed=3)
    budget = args.budget_per_model * args.models
    print(
        f"{args.models} models on {args.endpoints} endpoints, {len(items)} items, budget "
        f"{budget:,}, {args.algorithm}, plan of {args.trials} trials, {args.pool} pool, "
        f"actual: {args.searches} search(es); load-aware order"
    )
    print(
        f"{'tree':<17}{'figure':<9}{'plan':>10}{'p10-p90':>18}{'actual':>10}"
        f"{'min-max':>18}{'ratio':>7}"
    )
    worst = 0.0
    for tree, full in (("adapter-heavy", False), ("full-model-heavy", True)):
        raw = _fleet(matrix, args.endpoints, full)
        found = await _plan(matrix, items, raw, budget, args.algorithm, args.trials)
        spent = await searched(matrix, items, raw, budget, args.algorithm, args.searches)
        for name, label in FIGURES:
            s = getattr(found, name)
            mean, low, high = spent[name]
            ratio = s.mean / mean
            worst = max(worst, abs(ratio - 1))
            band, seen = f"{s.p10:,.0f}-{s.p90:,.0f}", f"{low:,.0f}-{high:,.0f}"
            print(
                f"{tree:<17}{label:<9}{s.mean:>10,.0f}{band:>18}{mean:>10,.0f}{seen:>18}"
                f"{ratio:>7.2f}"
            )
    print(f"largest deviation {100 * worst:.0f}% (acceptance: 20%)")


if __name__ == "__main__":
    asyncio.run(main())
