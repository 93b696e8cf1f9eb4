"""bench/ablation.py: its NumPy reference agrees with the core's gem, and its variants keep
their promises (unbiased probe estimates, budget, paired elimination keeps the leader)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from gemfinder.sim.simulation import simulate
from gemfinder.sim.trees import generate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import ablation  # noqa: E402


@pytest.fixture(scope="module")
def pool():
    return generate("llama3.1-8b", 0, models=150, items=600).matrix


def test_numpy_reference_matches_the_core(pool):
    # Same algorithm, different random streams: the mean ranks agree within their intervals.
    trials = 400
    ours = ablation.run_case(pool.correct, 10, trials, seed=0)["reference"]
    core = simulate(pool, "gem", 10, trials, 0, {"first_cut": 100.0, "first_round_share": 0.2})
    half = 1.96 * ours.std(ddof=1) / np.sqrt(trials)
    core_half = (core["mean_rank_ci"][1] - core["mean_rank_ci"][0]) / 2
    assert abs(ours.mean() - core["mean_rank"]) < half + core_half


def test_probed_round_is_unbiased():
    # Expected score of every survivor equals its true number of correct answers.
    rng = np.random.default_rng(7)
    correct = (rng.random((6, 40)) < np.linspace(0.5, 0.9, 6)[:, None]).astype(np.uint8)
    alive, items = np.arange(6), np.arange(40)
    draws = 4000
    total = np.zeros(6)
    for _ in range(draws):
        score = np.zeros(6)
        spent, used = ablation.probed_round(0.4, correct, alive, items, 10_000, score, rng)
        assert used == 40 and spent <= 2 * 40 + 4 * 40
        total += score
    true = correct.sum(1)
    assert np.allclose(total / draws, true, atol=0.6)
    # ...while it asks fewer than every survivor on every item.
    assert spent < 6 * 40


def test_probed_round_stops_at_its_share():
    rng = np.random.default_rng(1)
    correct = (rng.random((5, 300)) < 0.7).astype(np.uint8)
    score = np.zeros(5)
    spent, used = ablation.probed_round(0.5, correct, np.arange(5), np.arange(300), 100, score, rng)
    assert spent <= 100 and used >= 1


def test_paired_elimination_keeps_the_leader_and_drops_the_clearly_worse():
    correct = np.zeros((3, 50), dtype=np.uint8)
    correct[0, :40] = 1  # leader
    correct[1, :39] = 1  # one item apart: not separable
    correct[2, :5] = 1  # 35 items apart
    kept = ablation.paired_survivors(correct, np.array([0, 1, 2]), np.arange(50), 2.0)
    assert kept.tolist() == [0, 1]


def test_every_variant_finds_the_best_with_a_full_budget():
    rng = np.random.default_rng(3)
    correct = (rng.random((20, 30)) < np.linspace(0.3, 0.8, 20)[:, None]).astype(np.uint8)
    best = int(np.argmax(correct.sum(1)))
    assert (correct.sum(1) == correct[best].sum()).sum() == 1
    for v in ablation.VARIANTS:
        if v.probe_q is not None:
            continue  # estimates, not counts, until the budget covers every item
        pick = ablation.search(v, correct, 20 * 30 * 4, rng.permutation(30), rng)
        assert pick == best, v.name


def test_true_ranks_average_ties():
    assert ablation.true_ranks(np.array([0.5, 0.9, 0.5, 0.1])).tolist() == [2.5, 1.0, 2.5, 4.0]
