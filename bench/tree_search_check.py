"""How hard is each preset to search? Mean rank of SH and gem search at N=10 vs the published.

    python bench/tree_search_check.py [--trials 200] [--seed 0] [--n-avg 10]

Uses the Rust simulator `gemfinder._core.simulate_trials` when the built core has it; else a
rough numpy stand-in (SH independent sampling; gem = correlated SH, half the budget on a first
round over all models that keeps 100), without the core's leftover re-planning, so its ranks
are indicative only. The published ranks are for the real (unpublished) pools.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from gemfinder.trees import PRESETS, generate
from gemfinder.trees.stats import rank_of


def _keep_best(means: np.ndarray, alive: np.ndarray, keep: int, rng) -> np.ndarray:
    noise = rng.random(alive.size)  # random tie-breaks, never by index
    order = np.lexsort((noise, -means[alive]))
    return alive[order[:keep]]


def rough_sh(correct, budget, rng):
    k, n = correct.shape
    rounds = math.ceil(math.log2(k))
    perm = np.argsort(rng.random((k, n)), axis=1)  # each model its own item order
    seen = np.zeros(k, dtype=np.int64)
    hits = np.zeros(k)
    alive = np.arange(k)
    while alive.size > 1:
        t = max(1, budget // (alive.size * rounds))
        for m in alive:
            items = perm[m, seen[m] : min(n, seen[m] + t)]
            hits[m] += correct[m, items].sum()
            seen[m] += items.size
        alive = _keep_best(hits / np.maximum(seen, 1), alive, math.ceil(alive.size / 2), rng)
    return int(alive[0])


def rough_gem(correct, budget, rng, share=0.5, cut=100):
    k, n = correct.shape
    order = rng.permutation(n)  # one shared item order: correlated sampling
    used, hits, seen = 0, np.zeros(k), np.zeros(k)
    alive = np.arange(k)
    sizes = [min(cut, k)]
    while sizes[-1] > 1:
        sizes.append(math.ceil(sizes[-1] / 2))
    t1 = int(share * budget) // k if k > cut else budget // (k * len(sizes))
    later = (budget - t1 * k) // max(1, len(sizes) - 1)
    t = t1
    for keep in sizes:
        batch = order[used : min(n, used + t)]
        used += batch.size
        hits[alive] += correct[np.ix_(alive, batch)].sum(axis=1)
        seen[alive] += batch.size
        alive = _keep_best(hits / np.maximum(seen, 1), alive, keep, rng)
        if alive.size == 1:
            break
        t = max(1, later // alive.size)
    return int(alive[0])


def mean_rank(correct, picks):
    acc = correct.mean(axis=1)
    return float(np.mean([rank_of(acc, int(p)) for p in picks]))


def run(correct, algorithm, budget, trials, seed):
    try:
        from gemfinder import _core

        picks, _ = _core.simulate_trials(correct, algorithm, budget, seed, 0, trials)
        return mean_rank(correct, picks), "core"
    except (ImportError, AttributeError):
        rng = np.random.default_rng([seed, 1 if algorithm == "sh" else 2])
        fn = rough_sh if algorithm == "sh" else rough_gem
        return mean_rank(correct, [fn(correct, budget, rng) for _ in range(trials)]), "numpy"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-avg", type=int, default=10)
    args = ap.parse_args()
    print(f"{'preset':<12} {'SH pub':>7} {'SH':>7} {'gem pub':>8} {'gem':>7}  engine")
    for name, cfg in PRESETS.items():
        if cfg.targets.sh_rank_n10 is None:
            continue
        correct = generate(name, args.seed).matrix.correct
        budget = args.n_avg * correct.shape[0]
        sh, engine = run(correct, "sh", budget, args.trials, args.seed)
        gem, _ = run(correct, "gem", budget, args.trials, args.seed)
        t = cfg.targets
        pub = f"{t.sh_rank_n10:>7.1f} {sh:>7.1f} {t.ref_rank_n10:>8.1f} {gem:>7.1f}"
        print(f"{name:<12} {pub}  {engine}")


if __name__ == "__main__":
    main()
