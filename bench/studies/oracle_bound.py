"""How far could any search go? Hand the algorithms the true top-k models for free.

    python -m bench.studies.oracle_bound [--presets ...] [--seeds 3 4] [--budgets 10 50]
        [--trials 300]
    python -m bench.studies.oracle_bound --metric p_within_half_point --budgets 50

For each held-out synthetic pool and budget N (queries per model), prints the reference
method's mean rank (gem, f = 0.2, m = 100, on the whole pool), half of it (issue 6's target
for the default), and the best mean rank that uniform allocation, correlated SH or successive
rejects reach when an oracle removes every model outside the true top k at no cost and the
whole budget (K x N queries) goes to those k. A real search must find the top k itself with
the same budget, so where even the oracle rows miss the target, no first cut, round shape or
elimination rule can reach it: what is left is telling near-identical top models apart.
With `--metric p_within_half_point` the same rows give the share of trials within 0.5
accuracy points of the best (higher is better; issue 6 asks for 0.9 at N = 50); with
`--metric loss_mean` the mean accuracy points lost against the best model (lower is better).
"""

from __future__ import annotations

import argparse

import numpy as np
from gemfinder import _core
from gemfinder.loss import trial_losses

from bench.common.held_out import add_pool_arguments, held_out_pools

ORACLE_TOPS = (100, 40, 20, 5)
ORACLE_ALGORITHMS = ("uniform", "sh_correlated", "sr")
REFERENCE = ("gem", {"first_cut": 100})


TARGETS = {
    "mean_rank": lambda reference: reference / 2,
    "p_within_half_point": lambda _: 0.9,
    "loss_mean": lambda reference: reference / 2,  # no target in the issues; half, as for rank
}
LOWER_IS_BETTER = {"mean_rank", "loss_mean"}


def measure(correct, acc, algorithm, budget: int, trials: int, metric: str) -> float:
    name, params = algorithm
    picks, spent = _core.simulate_trials(correct, name, budget, 0, 0, trials, params)
    if metric == "loss_mean":  # `acc` is the sub-pool's, whose best is the whole pool's best
        return float(trial_losses(acc, picks).mean())
    return _core.summarize(acc, picks, spent)[metric]


def oracle_ranks(correct: np.ndarray, n_avg: float, trials: int, metric="mean_rank") -> dict:
    """{"reference": value, top_k: (best value, algorithm) for k in ORACLE_TOPS}."""
    acc = correct.mean(axis=1)
    order = np.argsort(-acc, kind="stable")
    budget = int(len(acc) * n_avg)
    result: dict = {"reference": measure(correct, acc, REFERENCE, budget, trials, metric)}
    for top in ORACLE_TOPS:
        sub = np.ascontiguousarray(correct[order[:top]])
        ranks = {
            name: measure(sub, acc[order[:top]], (name, None), budget, trials, metric)
            for name in ORACLE_ALGORITHMS
        }
        best = (min if metric in LOWER_IS_BETTER else max)(ranks, key=ranks.__getitem__)
        result[top] = (ranks[best], best)
    return result


def format_row(ranks: dict, metric: str = "mean_rank") -> str:
    target = TARGETS[metric](ranks["reference"])
    cells = [f"reference {ranks['reference']:5.2f}", f"target {target:5.2f}"]
    cells += [f"top{top} {ranks[top][0]:5.2f} ({ranks[top][1]})" for top in ORACLE_TOPS]
    return "  ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_pool_arguments(parser)
    parser.set_defaults(budgets=[10.0, 50.0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--metric", choices=sorted(TARGETS), default="mean_rank")
    args = parser.parse_args()
    print(f"{args.metric}; topK = best of {' / '.join(ORACLE_ALGORITHMS)} on the true top K, free")
    for label, _, matrix in held_out_pools(args, real=False):
        for n_avg in args.budgets:
            ranks = oracle_ranks(matrix.correct, n_avg, args.trials, args.metric)
            print(f"{label:<15} N={n_avg:<4g} {format_row(ranks, args.metric)}", flush=True)


if __name__ == "__main__":
    main()
