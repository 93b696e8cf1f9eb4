"""bench/choose_default.py: its statistics (Holm, the paired test), its cells (paired trials,
the oracle inside the true top k) and its decision rule."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from gemfinder.sim.simulation import simulate
from gemfinder.sim.trees import generate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import choose_default  # noqa: E402


def test_holm_matches_the_step_down_by_hand():
    # Sorted 0.01, 0.02, 0.04, 0.3 -> x4, x3, x2, x1 = 0.04, 0.06, 0.08 (running max), 0.3.
    adjusted = choose_default.holm([0.04, 0.01, 0.3, 0.02])
    assert adjusted == pytest.approx([0.08, 0.04, 0.3, 0.06])
    assert choose_default.holm([0.5, 0.5]) == [1.0, 1.0]


def test_paired_test_is_one_sided_and_handles_identical_algorithms():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, 400)
    assert choose_default.p_worse(noise + 0.5) < 1e-6  # clearly worse
    assert choose_default.p_worse(noise - 0.5) > 0.999  # clearly better: not "worse"
    assert choose_default.p_worse(np.zeros(50)) == 1.0  # same picks in every trial
    assert choose_default.p_worse(np.full(50, 0.2)) == 0.0  # worse in every trial by the same


def test_cell_runs_the_simulator_on_paired_trials_and_an_oracle_inside_the_top_k():
    pool = generate("mistral-7b", 0, models=120, items=600).matrix
    acc = pool.accuracies()
    picks = choose_default.cell(pool, seed=2, n_avg=10, trials=150)
    assert set(picks) == {*choose_default.CANDIDATES, choose_default.ORACLE}
    # The same trials as gemfinder simulate with that seed: the same mean rank.
    gem = choose_default.figures(acc, picks["gem"])
    assert gem["mean_rank"] == simulate(pool, "gem", 10, 150, 2)["mean_rank"]
    # 120 models are below gem's first cut (200): gem is plain correlated SH, pick for pick.
    assert np.array_equal(picks["gem"], picks["sh_correlated"])
    top = np.argsort(-acc, kind="stable")[: min(20, 120 // 4)]
    assert set(picks[choose_default.ORACLE].tolist()) <= set(top.tolist())
    assert gem["p_best"] <= gem["p_half"] and gem["loss_p90"] >= 0


def test_the_choice_prefers_no_worse_cell_then_the_lowest_excess():
    def v(worse, excess):
        return {"worse": [("p", 5.0)] * worse, "excess": excess}

    verdict = {
        ("select", "gem"): v(1, 0.0),
        ("select", "gem m=100"): v(0, 0.3),
        ("select", "sh_correlated"): v(0, 0.1),
        ("select", "sr"): v(2, 0.0),
    }
    assert choose_default.choose(verdict) == "sh_correlated"
