"""How much could public scores help? Priors from the other tasks of a synthetic tree.

    python bench/prior_gain.py [--presets ...] [--seed 3] [--trials 400]

design/search.md lists priors from other benchmarks or public scores as a direction; the
published protocol has none, so issue 6's acceptance cannot use them. This measures their
potential: each preset's pool is cut into one target task (its items are the query set) and
the other tasks, whose accuracy plays a public leaderboard score known before the search.
`corr` is the score's correlation with target accuracy over the pool, `top30` its Spearman
correlation among the 30 best models on the target (what decides whether it helps).
The search (`--algorithm`: gem search, the default before issue 16, or `bayes_elim`) then runs
with a Beta prior per model of strength n0 pseudo-items centred on that score, ranking by
posterior mean, against no prior (n0 = 0). The prior mean is the raw other-task accuracy: with
correlated sampling every survivor has seen the same items, so a common shift of the prior
means changes no ranking, and no target-task data is used to calibrate it.
"""

from __future__ import annotations

import argparse

import numpy as np
from gemfinder import _core
from gemfinder.sim.trees import PRESETS, generate


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks_a, ranks_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=[p for p in PRESETS if p != "gsm8k"])
    parser.add_argument("--seed", type=int, default=3, help="generator seed (held out)")
    parser.add_argument("--targets", nargs="+", default=["mmlu", "gsm8k"])
    parser.add_argument("--strengths", nargs="+", type=float, default=[0, 5, 20])
    parser.add_argument("--budgets", nargs="+", type=float, default=[10, 50])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--algorithm", default="gem", help="gem (default) or bayes_elim")
    args = parser.parse_args()
    print(f"mean rank of {args.algorithm}, {args.trials} trials; n0 = prior strength (0: none)")
    print(
        f"{'pool':<13}{'target':<8}{'corr':>6}{'top30':>7}{'n0':>5}"
        + "".join(f"{f'N={n:g}':>9}" for n in args.budgets)
    )
    for preset in args.presets:
        tree = generate(preset, args.seed)
        tasks = np.array([item.split("/")[0] for item in tree.matrix.items])
        for target in args.targets:
            if target not in tasks:
                continue
            pool = np.ascontiguousarray(tree.matrix.correct[:, tasks == target])
            score = tree.matrix.correct[:, tasks != target].mean(1)  # the "public" score
            acc = pool.mean(1)
            corr = np.corrcoef(score, acc)[0, 1]
            top = np.argsort(-acc)[:30]  # what decides: how the score ranks the best models
            top_corr = spearman(score[top], acc[top])
            for n0 in args.strengths:
                priors = [(mu * n0 + 1.0, (1.0 - mu) * n0 + 1.0) for mu in score] if n0 else None
                cells = []
                for n_avg in args.budgets:
                    budget = int(round(n_avg * len(acc)))
                    picks, spent = _core.simulate_trials(
                        pool, args.algorithm, budget, 0, 0, args.trials, None, priors
                    )
                    cells.append(_core.summarize(acc, picks, spent)["mean_rank"])
                print(
                    f"{preset:<13}{target:<8}{corr:>6.2f}{top_corr:>7.2f}{n0:>5g}"
                    + "".join(f"{c:>9.1f}" for c in cells),
                    flush=True,
                )


if __name__ == "__main__":
    main()
