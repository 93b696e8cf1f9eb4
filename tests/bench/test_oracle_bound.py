"""bench/oracle_bound.py: the oracle rows search only the true top k (their ranks cannot exceed
k) and the reference row is the reference method on the whole pool."""

from __future__ import annotations

import sys
from pathlib import Path

from gemfinder.sim.simulation import simulate
from gemfinder.sim.trees import generate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import oracle_bound  # noqa: E402


def test_oracle_rows_stay_inside_the_true_top_k():
    pool = generate("mistral-7b", 0, models=150, items=600).matrix
    ranks = oracle_bound.oracle_ranks(pool.correct, 10, 200)
    for top in oracle_bound.ORACLE_TOPS:
        rank, algorithm = ranks[top]
        assert 1.0 <= rank <= top
        assert algorithm in oracle_bound.ORACLE_ALGORITHMS
    # A smaller free shortlist of the best models can only help at this budget.
    assert ranks[5][0] < ranks[100][0]
    reference = simulate(pool, "gem", 10, 200, 0, {"first_cut": 100.0})["mean_rank"]
    assert ranks["reference"] == reference
