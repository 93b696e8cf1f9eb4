"""What the gem check buys and what it costs: hidden-gem verdicts against the truth.

    python bench/gem_check.py [--presets ...] [--seed 3] [--budgets 10 50] [--trials 100]
        [--shares 0 0.1]

For each synthetic preset (generator seed held out from every fit), budget and share of the
budget kept back for the gem check (search.gem_check), runs `--trials` searches the way the
service does: the service's SearchSpec and scheduler (default algorithm) answered from the
pool's matrix, then the check's plan and the verdict (search.gem) on the outcomes. The truth:
the winner is a hidden gem when it is not among the most downloaded 1% and its accuracy on all
items is above each of theirs. Prints per case the winner's mean rank (the check's cost: the
search gets the rest of the budget), the share of decided verdicts that are right, the share
of searches decided, and of wrong verdicts; and the mean number of items the winner shares
with the most popular model.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from gemfinder import _core
from gemfinder.candidates import Candidate
from gemfinder.search import gem, gem_check
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.trees import PRESETS, generate
from gemfinder.tasks import Item


def pool_spec(matrix, budget: int, share: float, seed: int) -> SearchSpec:
    candidates = [
        Candidate(name, f"http://fleet:80/{k}", downloads=float(matrix.downloads[k]))
        for k, name in enumerate(matrix.models)
    ]
    items = [Item(str(i), "mmlu") for i in range(matrix.n_items)]
    return SearchSpec(candidates, items, budget, seed=seed, gem_check_share=share)


def one_search(matrix, spec: SearchSpec) -> tuple[int, dict[int, dict[int, int]]]:
    """(winner, outcomes) of a search and its gem check, answered from the matrix."""
    sched = spec.scheduler()
    outcomes: dict[int, dict[int, int]] = {}
    while not sched.finished:
        for model, item in sched.ask():
            reward = int(matrix.correct[model, item])
            sched.tell(model, item, bool(reward))
            outcomes.setdefault(model, {})[item] = reward
    winner = sched.recommendation
    for model, items in gem_check.plan(spec, winner, outcomes).items():
        for item in items:
            outcomes.setdefault(model, {})[item] = int(matrix.correct[model, item])
    return winner, outcomes


def run_case(matrix, n_avg: float, share: float, trials: int) -> dict[str, float]:
    acc = matrix.accuracies()
    budget = int(round(n_avg * matrix.n_models))
    right = wrong = decided = 0
    shared = 0.0
    winners = np.empty(trials, dtype=np.uint32)
    for seed in range(trials):
        spec = pool_spec(matrix, budget, share, seed)
        winner, outcomes = one_search(matrix, spec)
        top = gem.most_downloaded(spec)
        truth = winner not in top and all(acc[winner] > acc[t] for t in top)
        verdict, evidence = gem.verdict(spec, winner, outcomes)
        winners[seed] = winner
        shared += evidence[0].shared_items if evidence else 0
        if verdict in (gem.HIDDEN_GEM, gem.NOT_A_GEM):
            decided += 1
            if (verdict == gem.HIDDEN_GEM) == truth:
                right += 1
            else:
                wrong += 1
    # The project's rank (ties share their average rank); spent does not enter mean_rank.
    ranked = _core.summarize(acc, winners, np.zeros(trials, dtype=np.uint64))
    return {
        "mean_rank": ranked["mean_rank"],
        "decided": decided / trials,
        "right_if_decided": right / decided if decided else float("nan"),
        "wrong": wrong / trials,
        "shared_with_popular": shared / trials,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=[p for p in PRESETS if p != "gsm8k"])
    parser.add_argument("--seed", type=int, default=3, help="generator seed (held out)")
    parser.add_argument("--budgets", nargs="+", type=float, default=[10, 50])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--shares", nargs="+", type=float, default=[0.0, 0.1])
    args = parser.parse_args()
    print(
        f"{'pool':<14}{'N':>4}{'share':>7}{'mean rank':>11}{'decided':>9}"
        f"{'right|dec':>11}{'wrong':>7}{'shared':>8}"
    )
    start = time.time()
    for preset in args.presets:
        matrix = generate(preset, args.seed).matrix
        for n_avg in args.budgets:
            for share in args.shares:
                r = run_case(matrix, n_avg, share, args.trials)
                print(
                    f"{preset:<14}{n_avg:>4g}{share:>7g}{r['mean_rank']:>11.2f}"
                    f"{r['decided']:>9.2f}{r['right_if_decided']:>11.2f}{r['wrong']:>7.2f}"
                    f"{r['shared_with_popular']:>8.0f}",
                    flush=True,
                )
    print(f"{time.time() - start:.0f} s; truth per pool: winner not in the top 1% by downloads "
          f"and better than each of them on all items")  # fmt: skip


if __name__ == "__main__":
    main()
