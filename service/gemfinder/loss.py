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
