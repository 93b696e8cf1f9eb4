"""Synthetic agreement against the real small pools (read in place via `shared_data`)."""

from __future__ import annotations

import numpy as np
from gemfinder.sim.trees import generate
from gemfinder.sim.trees.realism import compare, load_opencompass, load_routerdc, matched_subset


def test_mistral_preset_agrees_like_real_mistral_fine_tunes(shared_data):
    real, names, tasks = load_routerdc(shared_data / "matrices" / "routerdc-mistral7")
    assert len(names) == 5 and real.shape[1] == len(tasks) == 352 + 1319 + 4213 + 500
    tree = generate("mistral-7b", seed=0)
    rows = compare(real, tasks, tree.matrix.correct, tree.item_tasks, repeats=5)
    # Stated closeness (docs/trees.md): kappa within 0.05, shares within 0.03.
    assert abs(rows["kappa_within_task"][0] - rows["kappa_within_task"][1]) < 0.05
    for key in ("disagree_close_pairs", "all_right", "all_wrong", "item_mean_sd"):
        assert abs(rows[key][0] - rows[key][1]) < 0.03, key


def test_a_tree_agrees_more_than_unrelated_real_models(shared_data):
    oc = load_opencompass(shared_data / "matrices" / "opencompass-12" / "combine.csv")
    assert oc.shape == (12, 41871)
    tree = generate("qwen2.5-7b", seed=0)
    rows = compare(oc, None, tree.matrix.correct, tree.item_tasks, repeats=3)
    assert rows["kappa_close_pairs"][1] > rows["kappa_close_pairs"][0]


def test_matched_subset_follows_real_accuracies():
    pool = generate("llama3.1-8b", seed=2).matrix.correct
    want = np.array([0.5, 0.6, 0.65, 0.7])
    sub = matched_subset(pool, want, np.random.default_rng(0))
    assert np.allclose(np.sort(sub.mean(axis=1)), want, atol=0.02)
