"""bench/gem_check.py: the searches it runs keep the budget and the check adds shared items."""

from __future__ import annotations

import sys
from pathlib import Path

from gemfinder.search import gem
from gemfinder.sim.trees import generate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import gem_check as bench  # noqa: E402


def test_the_check_shares_more_items_with_the_popular_model_within_the_budget():
    matrix = generate("mistral-7b", 0, models=120, items=400).matrix
    spent = {}
    for share in (0.0, 0.2):
        spec = bench.pool_spec(matrix, 20 * matrix.n_models, share, seed=1)
        winner, outcomes = bench.one_search(matrix, spec)
        spent[share] = sum(len(v) for v in outcomes.values())
        assert spent[share] <= spec.budget
        top = gem.most_downloaded(spec)
        shared = len(outcomes[winner].keys() & outcomes.get(top[0], {}).keys())
        if share == 0.0:
            without = shared
    assert winner in top or shared > without
    row = bench.run_case(matrix, 20, 0.2, trials=3)
    assert 0 <= row["wrong"] <= row["decided"] <= 1 and row["mean_rank"] >= 1
