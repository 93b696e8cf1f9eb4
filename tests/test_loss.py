"""Loss figures and cost to confidence (gemfinder.loss) against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from gemfinder.loss import cost_to_confidence, loss_figures, trial_losses


def test_losses_are_points_below_the_best():
    acc = np.array([0.70, 0.75, 0.748, 0.60])
    losses = trial_losses(acc, np.array([1, 2, 0, 3, 1]))
    assert losses == pytest.approx([0.0, 0.2, 5.0, 15.0, 0.0])
    figures = loss_figures(losses)
    assert figures["loss_mean"] == pytest.approx(4.04)
    # 90th percentile of [0, 0, 0.2, 5, 15] by linear interpolation: 5 + 0.6 * 10
    assert figures["loss_p90"] == pytest.approx(11.0)
    lo, hi = figures["loss_mean_ci"]
    assert lo < 4.04 < hi


def test_cost_to_confidence_interpolates_between_grid_points():
    # 0.8 at N = 10, 0.95 at N = 25: 0.9 is two thirds of the way, N = 20.
    assert cost_to_confidence([5, 10, 25, 50], [0.5, 0.8, 0.95, 1.0]) == pytest.approx(20.0)
    # Unsorted input is sorted first; the first crossing counts even if P later dips.
    assert cost_to_confidence([25, 5, 10], [0.85, 0.7, 0.9]) == pytest.approx(10.0)


def test_cost_to_confidence_at_the_grid_edges():
    assert cost_to_confidence([10, 50], [0.92, 1.0]) == 10.0  # reached at once: an upper bound
    assert cost_to_confidence([10, 50], [0.2, 0.89]) is None  # never reached on this grid
    assert cost_to_confidence([10], [0.9]) == 10.0
