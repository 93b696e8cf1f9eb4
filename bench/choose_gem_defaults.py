"""Choose gem search's first-round share f and first cut m by benchmark, on held-out pools.

    python bench/choose_gem_defaults.py [--seeds 5 6 7 8 9] [--trials 500] [--models K ...]

Every variant runs on the same trials of the same pools (4 presets x the given generator
seeds, none of them used to fit the presets) at N in {5, 10, 25, 50, 100} queries per model.
Prints, per variant, the geometric mean over pools and budgets of its mean rank and of
P(within 0.5 points) relative to the first variant, the worst single ratio, and in how many
(pool, budget) cases its mean rank is significantly worse / better (95% intervals disjoint).
The small real pools are not used: with 12 and 7 models every variant is the same correlated SH.
`--models` resizes every preset's pool to each given size (default: the preset's own size), to
see how the choice holds on pools larger than the published ones.
"""

from __future__ import annotations

import argparse

import numpy as np
from gemfinder import _core
from gemfinder.sim.trees import PRESETS, generate

VARIANTS = (
    ("gem", {"first_round_share": 0.5, "first_cut": 100}),
    ("gem", {"first_round_share": 0.35, "first_cut": 100}),
    ("gem", {"first_round_share": 0.2, "first_cut": 100}),
    ("gem", {"first_round_share": 0.1, "first_cut": 100}),
    ("gem", {"first_round_share": 0.2, "first_cut": 50}),
    ("gem", {"first_round_share": 0.2, "first_cut": 200}),
    ("gem", {"first_round_share": 0.2, "first_cut": 400}),
    ("gem", {"first_round_share": 0.2, "first_cut": 800}),
    ("gem", None),  # f = 0.2, first cut a fifth of the pool and at least 200 (the old default)
    ("sh_correlated", None),
)
BUDGETS = (5, 10, 25, 50, 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[5, 6, 7, 8, 9])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--models", nargs="+", type=int, default=[None], metavar="K")
    args = parser.parse_args()
    results: dict[tuple[str, int, int], dict] = {}
    presets = [p for p in PRESETS if p != "gsm8k"]
    pools = [(p, s, k) for p in presets for s in args.seeds for k in args.models]
    for preset, seed, k in pools:
        matrix = generate(preset, seed, models=k).matrix
        acc = matrix.accuracies()
        for n_avg in BUDGETS:
            budget = matrix.n_models * n_avg
            for i, (name, params) in enumerate(VARIANTS):
                picks, spent = _core.simulate_trials(
                    matrix.correct, name, budget, seed, 0, args.trials, params
                )
                results[(f"{preset}/{seed}/{k}", n_avg, i)] = _core.summarize(acc, picks, spent)
    cases = [(f"{p}/{s}/{k}", n) for p, s, k in pools for n in BUDGETS]
    print(f"{len(cases)} (pool, budget) cases, {args.trials} paired trials each; ratios to row 1")
    print(f"{'variant':<50}{'rank':>7}{'worst':>7}{'P<=.5':>7}{'worse':>7}{'better':>7}")
    for i, (name, params) in enumerate(VARIANTS):
        rank = np.array(
            [results[(c, n, i)]["mean_rank"] / results[(c, n, 0)]["mean_rank"] for c, n in cases]
        )
        near = np.array(
            [
                results[(c, n, i)]["p_within_half_point"]
                / max(results[(c, n, 0)]["p_within_half_point"], 1e-3)
                for c, n in cases
            ]
        )
        worse = sum(
            results[(c, n, i)]["mean_rank_ci"][0] > results[(c, n, 0)]["mean_rank_ci"][1]
            for c, n in cases
        )
        better = sum(
            results[(c, n, i)]["mean_rank_ci"][1] < results[(c, n, 0)]["mean_rank_ci"][0]
            for c, n in cases
        )
        label = name + (
            "" if params is None else " " + ", ".join(f"{k}={v:g}" for k, v in params.items())
        )
        print(
            f"{label:<50}{np.exp(np.log(rank).mean()):7.3f}{rank.max():7.2f}"
            f"{np.exp(np.log(np.maximum(near, 1e-3)).mean()):7.3f}{worse:7d}{better:7d}"
        )


if __name__ == "__main__":
    main()
