"""The simulated incremental search (gemfinder.sim.incremental, core_rs/src/incremental.rs)."""

import numpy as np
import pytest
from gemfinder.errors import UserError
from gemfinder.sim.incremental import newcomer_count, simulate_incremental
from gemfinder.sim.matrix import CorrectnessMatrix


def _pool(k: int = 80, n: int = 600, seed: int = 5) -> CorrectnessMatrix:
    rng = np.random.default_rng(seed)
    acc = np.sort(rng.uniform(0.3, 0.8, size=k))
    correct = (rng.random((k, n)) < acc[:, None]).astype(np.uint8)
    return CorrectnessMatrix(correct, [f"m{i}" for i in range(k)], [f"i{j}" for j in range(n)])


def test_costs_a_fraction_of_a_full_re_search_and_loses_no_more():
    row = simulate_incremental(_pool(), 0.05, 20, 200, 1, incumbents=8)
    assert row["new"] == 4
    # Every pull of the incumbents within their cached items is free: paid < spent.
    assert row["paid_mean"] < row["spent_mean"]
    assert row["paid_mean"] < 0.5 * row["full_spent_mean"], row
    assert row["loss_mean"] <= row["full_loss_mean"] + 0.5, row
    assert 0.0 <= row["same_as_full"] <= 1.0


def test_a_clearly_best_model_is_found_whether_new_or_old():
    matrix = _pool()
    matrix.correct[-1, :] = 1  # model 79 answers everything
    row = simulate_incremental(matrix, 0.2, 20, 300, 2, incumbents=4)
    assert row["p_best"] == 1.0
    assert row["full_p_best"] == 1.0
    # When the best model is new (20% of trials), the stale winner loses points.
    assert row["stale_loss_mean"] > 0
    assert 0.1 < row["winner_changed"] < 0.4


@pytest.mark.parametrize(
    ("share", "incumbents", "field"),
    [(0.0, 4, "new_share"), (1.0, 4, "new_share"), (0.99, 4, "new_share"), (0.1, 0, "incumbents")],
)
def test_bad_plans_name_the_field(share, incumbents, field):
    with pytest.raises(UserError) as err:
        simulate_incremental(_pool(), share, 10, 10, 1, incumbents=incumbents)
    assert err.value.field == field


def test_newcomer_count_rounds_and_keeps_one():
    assert newcomer_count(467, 0.05) == 23
    assert newcomer_count(10, 0.01) == 1
