"""`gemfinder plan` against what the search then spends, side by side, on the simulated fleets
of bench.speed.serving_cost (adapter-heavy and full-model-heavy; 4 slots, 30 s per full model,
2 s per adapter, 0.2 s per query).

For each tree the plan (gemfinder.search.plan: the algorithm on a synthetic tree of the same
size, its pulls replayed through the endpoints' cost models) is made from the candidates, the
endpoint settings and the budget alone, without a query; then the search runs through the
service's runner and the real HTTP oracle against the fleet, and the fleet's own measurements
(its ledger on the virtual clock) are the actual figures. Ratio = plan / actual; the issue's
acceptance is within 20% (0.8-1.2) for queries, GPU-seconds and wall time.

    python -m bench.speed.plan_accuracy [--models 64] [--endpoints 4] [--budget-per-model 20]
"""

from __future__ import annotations

import argparse
import asyncio

from gemfinder.search import plan
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.config import fleet_from_dict

from bench.speed.serving_cost import _fleet, _pool, _run, served

FIGURES = (("queries", "queries"), ("gpu_seconds", "GPU-s"), ("wall_s", "wall s"))


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


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=64)
    p.add_argument("--endpoints", type=int, default=4)
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--budget-per-model", type=int, default=20)
    p.add_argument("--algorithm", default="gem")
    p.add_argument("--trials", type=int, default=plan.DEFAULT_TRIALS)
    args = p.parse_args()
    matrix, items = _pool(args.models, args.items, seed=3)
    budget = args.budget_per_model * args.models
    print(
        f"{args.models} models on {args.endpoints} endpoints, {len(items)} items, budget "
        f"{budget:,}, {args.algorithm}, plan of {args.trials} trials; load-aware order"
    )
    print(f"{'tree':<17}{'figure':<9}{'plan':>10}{'p10-p90':>18}{'actual':>10}{'ratio':>7}")
    worst = 0.0
    for tree, full in (("adapter-heavy", False), ("full-model-heavy", True)):
        raw = _fleet(matrix, args.endpoints, full)
        found = await _plan(matrix, items, raw, budget, args.algorithm, args.trials)
        _, measured, _ = await _run(matrix, items, raw, True, budget, args.algorithm)
        spent = actual(measured)
        for name, label in FIGURES:
            s = getattr(found, name)
            ratio = s.mean / spent[name]
            worst = max(worst, abs(ratio - 1))
            band = f"{s.p10:,.0f}-{s.p90:,.0f}"
            print(
                f"{tree:<17}{label:<9}{s.mean:>10,.0f}{band:>18}{spent[name]:>10,.0f}{ratio:>7.2f}"
            )
    print(f"largest deviation {100 * worst:.0f}% (acceptance: 20%)")


if __name__ == "__main__":
    asyncio.run(main())
