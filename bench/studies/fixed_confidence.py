"""Fixed-confidence searches against the fixed budget (issue 16, item 3).

    python -m bench.studies.fixed_confidence [--presets ...] [--seeds 3] [--trials 2000]

For every pool (the presets at native size at held-out generator seeds, then opencompass-12 and
routerdc-mistral7 read in place from ../shared/data/matrices), epsilon in {0.5, 2} points at
delta 0.05 (`--epsilons`, `--deltas`): fixed-confidence search (successive elimination on the
certificate, core_rs/src/certified.rs) with at most a full evaluation, over `--trials` trials.
Columns: share of trials certified, queries spent as a share of a full evaluation,
P(loss > epsilon) with its upper 95% Clopper-Pearson bound (must not exceed delta), the same for
the certificate itself (loss > epsilon reached), the median epsilon reached, and the budget saved
against the fixed budget at equal P(loss <= epsilon): 1 - mean spent / mean spent by the
smallest fixed budget of the default algorithm on a grid (2% to 100% of a full evaluation,
`--fixed-trials` trials each) whose P(loss <= epsilon) is at least the fixed-confidence one.
"""

from __future__ import annotations

import argparse

import numpy as np
from gemfinder import _core
from gemfinder.loss import clopper_pearson_upper, trial_losses
from gemfinder.sim.trees import PRESETS, generate

from bench.common.real_pools import REAL_MATRICES, load_real_pools

MAX_SHARE = 1.0  # maximum budget: this share of a full evaluation
GRID = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]  # fixed budgets, shares of a full evaluation
TOL = 1e-9  # points: accuracies are ratios of counts


class FixedCurve:
    """P(loss <= eps) and mean spent of the default algorithm at fixed budgets, run lazily from
    the smallest budget up (the large ones cost the most and are rarely needed)."""

    def __init__(self, correct, acc, trials, seed) -> None:
        self.correct, self.acc, self.trials, self.seed = correct, acc, trials, seed
        self.points: list[tuple[float, np.ndarray]] = []

    def _point(self, i: int) -> tuple[float, np.ndarray]:
        while len(self.points) <= i:
            share = GRID[len(self.points)]
            algorithm = _core.DEFAULT_ALGORITHM
            floor = _core.min_budget(algorithm, *self.correct.shape)
            budget = max(int(self.correct.size * share), floor)
            picks, spent = _core.simulate_trials(
                self.correct, algorithm, budget, self.seed, 0, self.trials
            )
            self.points.append((float(spent.mean()), trial_losses(self.acc, picks)))
        return self.points[i]

    def spent_at(self, eps: float, p_within: float) -> float | None:
        """Mean spent by the smallest fixed budget with P(loss <= eps) >= p_within."""
        for i in range(len(GRID)):
            spent, losses = self._point(i)
            if np.mean(losses <= eps + TOL) >= p_within:
                return spent
        return None


def row(label, correct, acc, trials, curve, eps, delta) -> str:
    budget = int(correct.size * MAX_SHARE)
    picks, spent, reached = _core.simulate_certified(
        correct, budget, 1, 0, trials, eps / 100, delta
    )
    loss = trial_losses(acc, picks)
    reached = 100 * reached
    wrong = int(np.sum(loss > eps + TOL))
    beyond = int(np.sum(loss > reached + TOL))
    equal = curve.spent_at(eps, 1 - wrong / trials)
    saved = f"{1 - spent.mean() / equal:+.3f}" if equal else "n/a"
    return (
        f"| {label} | {eps:g} | {delta:g} | {np.mean(reached <= eps):.3f} "
        f"| {spent.mean() / correct.size:.3f} | {wrong / trials:.4f} "
        f"| {clopper_pearson_upper(wrong, trials):.4f} "
        f"| {clopper_pearson_upper(beyond, trials):.4f} | {np.median(reached):.2f} "
        f"| {saved} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=[p for p in PRESETS if p != "gsm8k"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[3])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--fixed-trials", type=int, default=500)
    parser.add_argument("--epsilons", nargs="+", type=float, default=[0.5, 2.0])
    parser.add_argument("--deltas", nargs="+", type=float, default=[0.05])
    parser.add_argument("--no-real", action="store_true", help="skip the two real pools")
    args = parser.parse_args()
    real = {} if args.no_real else load_real_pools(REAL_MATRICES)
    pools = [(f"{p}/s{s}", generate(p, s).matrix) for p in args.presets for s in args.seeds]
    pools += list(real.items())
    print(
        f"fixed confidence, at most {MAX_SHARE:g} of a full evaluation, {args.trials} trials; "
        f"fixed budget: {_core.DEFAULT_ALGORITHM}, {args.fixed_trials} trials per budget\n"
    )
    print(
        "| pool | eps (pt) | delta | certified | spent / full | P(loss > eps) "
        "| upper 95% | P(loss > eps reached) upper 95% | median eps reached (pt) "
        "| budget saved |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, matrix in pools:
        correct = np.ascontiguousarray(matrix.correct, dtype=np.uint8)
        acc = correct.mean(axis=1)
        curve = FixedCurve(correct, acc, args.fixed_trials, 1)
        for eps in args.epsilons:
            for delta in args.deltas:
                print(row(label, correct, acc, args.trials, curve, eps, delta), flush=True)


if __name__ == "__main__":
    main()
