"""Fixed-confidence searches against the fixed budget (issue 16, item 3).

    python -m bench.studies.fixed_confidence [--presets ...] [--seeds 3] [--trials 2000]

For every pool (the presets at native size at held-out generator seeds, then opencompass-12 and
routerdc-mistral7 read in place from ../shared/data/matrices), epsilon in {0.5, 1, 2} points and
delta in {0.05, 0.1}: the default algorithm with at most half a full evaluation stops at the
first round whose leader is certified within epsilon of every model (core_rs/src/certificate.rs),
over `--trials` trials. Columns: share of trials certified, queries spent as a share of the
maximum, P(loss > epsilon) with its upper 95% Clopper-Pearson bound (must not exceed delta),
the same for the certificate itself (loss > epsilon reached), the median epsilon reached, and
the budget saved against the fixed budget at equal P(loss <= epsilon): 1 - mean spent / mean
spent by the smallest fixed budget on a grid (2% to 50% of a full evaluation) whose
P(loss <= epsilon) is at least the fixed-confidence one (negative: the fixed budget is cheaper).
"""

from __future__ import annotations

import argparse

import numpy as np
from gemfinder import _core
from gemfinder.loss import clopper_pearson_upper, trial_losses
from gemfinder.sim.trees import PRESETS, generate

from bench.common.real_pools import REAL_MATRICES, load_real_pools

EPSILONS = [0.5, 1.0, 2.0]  # accuracy points
DELTAS = [0.05, 0.1]
MAX_SHARE = 0.5  # maximum budget: this share of a full evaluation
GRID = [0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5]  # fixed budgets, shares of a full evaluation
TOL = 1e-9  # points: accuracies are ratios of counts


def fixed_budget_curve(correct, acc, algorithm, trials, seed) -> list[tuple[float, np.ndarray]]:
    """(mean queries spent, per-trial loss in points) for each fixed budget of the grid."""
    curve = []
    for share in GRID:
        budget = max(int(correct.size * share), _core.min_budget(algorithm, *correct.shape))
        picks, spent = _core.simulate_trials(correct, algorithm, budget, seed, 0, trials)
        curve.append((float(spent.mean()), trial_losses(acc, picks)))
    return curve


def row(label, correct, acc, algorithm, trials, seed, curve, eps, delta) -> str:
    budget = int(correct.size * MAX_SHARE)
    picks, spent, reached = _core.simulate_certified(
        correct, algorithm, budget, seed, 0, trials, eps / 100, delta
    )
    loss = trial_losses(acc, picks)
    reached = 100 * reached
    wrong = int(np.sum(loss > eps + TOL))
    beyond = int(np.sum(loss > reached + TOL))
    p_within = 1 - wrong / trials
    # Smallest fixed budget as good as the fixed-confidence search at epsilon.
    equal = next((s for s, lf in curve if np.mean(lf <= eps + TOL) >= p_within), None)
    saved = f"{1 - spent.mean() / equal:+.3f}" if equal else "n/a"
    return (
        f"| {label} | {eps:g} | {delta:g} | {np.mean(reached <= eps):.3f} "
        f"| {spent.mean() / budget:.3f} | {wrong / trials:.4f} "
        f"| {clopper_pearson_upper(wrong, trials):.4f} "
        f"| {clopper_pearson_upper(beyond, trials):.4f} | {np.median(reached):.1f} "
        f"| {saved} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=[p for p in PRESETS if p != "gsm8k"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[3])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--algorithm", default=_core.DEFAULT_ALGORITHM)
    parser.add_argument("--no-real", action="store_true", help="skip the two real pools")
    args = parser.parse_args()
    real = {} if args.no_real else load_real_pools(REAL_MATRICES)
    pools = [(f"{p}/s{s}", generate(p, s).matrix) for p in args.presets for s in args.seeds]
    pools += list(real.items())
    print(f"{args.algorithm}, at most {MAX_SHARE:g} of a full evaluation, {args.trials} trials\n")
    print(
        "| pool | eps (pt) | delta | certified | spent / max | P(loss > eps) "
        "| upper 95% | P(loss > eps reached) upper 95% | median eps reached (pt) "
        "| budget saved |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, matrix in pools:
        correct = np.ascontiguousarray(matrix.correct, dtype=np.uint8)
        acc = correct.mean(axis=1)
        curve = fixed_budget_curve(correct, acc, args.algorithm, args.trials, 1)
        for eps in EPSILONS:
            for delta in DELTAS:
                print(row(label, correct, acc, args.algorithm, args.trials, 1, curve, eps, delta))


if __name__ == "__main__":
    main()
