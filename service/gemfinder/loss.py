"""Loss figures of simulated picks: how many accuracy points the returned model gives up.

Mean rank hides what a user pays: on real pools the top models are often within a point of each
other, so rank 5 can cost 0.3 points. These figures are computed from the per-trial picks the
core returns (gemfinder._core.simulate_trials), so every bench and `gemfinder simulate` can show
them next to the core's summary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

HALF_POINT = 0.5  # accuracy points; the same threshold as the core's p_within_half_point
CONFIDENCE = 0.9  # cost to confidence: queries per model for P(loss <= 0.5 pt) >= 0.9
EPS = 1e-9  # points; accuracies are ratios of counts, so equal losses may differ by rounding


def trial_losses(accuracies: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Per trial: accuracy points between the best model and the returned one (>= 0)."""
    accuracies = np.asarray(accuracies, dtype=np.float64)
    return 100.0 * (accuracies.max() - accuracies[np.asarray(picks, dtype=np.int64)])


def loss_figures(losses: np.ndarray) -> dict:
    """`loss_mean` with a 95% interval (mean +- 1.96 s.e.) and `loss_p90` (points; the 90th
    percentile by linear interpolation between order statistics, NumPy's default)."""
    losses = np.asarray(losses, dtype=np.float64)
    mean, n = float(losses.mean()), len(losses)
    half = 1.959963984540054 * float(losses.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    return {
        "loss_mean": mean,
        "loss_mean_ci": (mean - half, mean + half),
        "loss_p90": float(np.quantile(losses, 0.9)),
    }


def cost_to_confidence(
    budgets: Sequence[float], p_within: Sequence[float], target: float = CONFIDENCE
) -> float | None:
    """Queries per model at which P(loss <= 0.5 pt) first reaches `target` on a budget grid.

    The grid is sorted; at the first grid point that reaches the target, the value is
    interpolated linearly in the budget between it and the grid point before (an estimate, since
    P is measured only at grid points); when the smallest budget already reaches it, that budget
    (an upper bound). None when no grid point reaches the target.
    """
    points = sorted(zip(budgets, p_within, strict=True))
    for i, (n, p) in enumerate(points):
        if p >= target:
            if i == 0:
                return float(n)
            n0, p0 = points[i - 1]
            return float(n0 + (target - p0) / (p - p0) * (n - n0))
    return None


def _binomial_cdf(hits: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= hits), summed in log space (n up to a few hundred thousand)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if hits >= n else 0.0
    k = np.arange(hits + 1, dtype=np.float64)
    log_terms = (
        math.lgamma(n + 1)
        - np.array([math.lgamma(i + 1) + math.lgamma(n - i + 1) for i in range(hits + 1)])
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    top = float(log_terms.max())
    return float(min(1.0, math.exp(top) * np.exp(log_terms - top).sum()))


def clopper_pearson_upper(hits: int, n: int, confidence: float = 0.95) -> float:
    """One-sided exact (Clopper-Pearson) upper confidence bound of a proportion: the p at which
    seeing at most `hits` of `n` has probability 1 - confidence (1.0 when every trial hit).
    Used for the error rate P(loss > epsilon) of fixed-confidence searches, which must stay at
    most delta."""
    if not 0 <= hits <= n or n == 0:
        raise ValueError(f"hits: need 0 <= hits <= n and n > 0, got {hits} of {n}")
    if hits == n:
        return 1.0
    lo, hi = hits / n, 1.0
    for _ in range(60):  # bisection: P(Bin(n, p) <= hits) falls as p grows
        mid = (lo + hi) / 2
        if _binomial_cdf(hits, n, mid) > 1.0 - confidence:
            lo = mid
        else:
            hi = mid
    return hi
