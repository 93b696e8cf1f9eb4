"""Generator behaviour: determinism per seed, shapes, names, flags, tree structure."""

from __future__ import annotations

import numpy as np
import pytest
from gemfinder.sim.trees import PRESETS, generate
from gemfinder.sim.trees.presets import scale_tasks
from gemfinder.sim.trees.stats import best_base_index, kappa_matrix


def test_same_seed_same_pool_other_seed_other_pool():
    a = generate("mistral-7b", seed=7, models=60)
    b = generate("mistral-7b", seed=7, models=60)
    c = generate("mistral-7b", seed=8, models=60)
    assert np.array_equal(a.matrix.correct, b.matrix.correct)
    assert a.matrix.models == b.matrix.models
    assert np.array_equal(a.matrix.downloads, b.matrix.downloads)
    assert not np.array_equal(a.matrix.correct, c.matrix.correct)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_shapes_and_metadata(preset):
    tree = generate(preset, seed=0, models=40, items=200)
    m = tree.matrix
    assert m.correct.shape == (40, 200) and m.correct.dtype == np.uint8
    assert set(np.unique(m.correct)) <= {0, 1}
    assert len(set(m.models)) == 40, "model names must be unique"
    assert m.models[:2] == list(PRESETS[preset].official)
    assert all(name.count("/") == 1 for name in m.models)
    assert m.is_base.tolist() == [True, True] + [False] * 38
    # The best-base reference is an official checkpoint and the most downloaded model.
    assert best_base_index(m) == tree.tree.anchor == int(np.argmax(m.downloads))
    tasks = {item.split("/")[0] for item in m.items}
    assert tasks == set(PRESETS[preset].tasks)
    assert tree.item_tasks == [item.split("/")[0] for item in m.items]


def test_item_ids_carry_task_and_index_within_real_split():
    m = generate("qwen2.5-7b", seed=0, models=5).matrix
    counts = PRESETS["qwen2.5-7b"].tasks
    assert len(m.items) == sum(counts.values()) == 3000
    assert m.items[0] == "arc_challenge/0"
    for task, n in counts.items():
        idx = sorted(int(i.split("/")[1]) for i in m.items if i.startswith(task + "/"))
        assert idx == list(range(n))


def test_gsm8k_preset_is_single_task_over_the_whole_test_split():
    m = generate("gsm8k", seed=0, models=10).matrix
    assert m.n_items == 1319 and m.items[-1] == "gsm8k/1318"


def test_parents_precede_children_and_targets_are_realized():
    tree = generate("llama3.1-8b", seed=3, models=120)
    parent = tree.tree.parent
    assert parent[0] == -1 and (parent[1:] < np.arange(1, 120)).all()
    acc = tree.matrix.accuracies()
    # Abilities are solved so realized accuracy equals the target to one item.
    assert np.abs(acc - tree.tree.target_acc).max() <= 1.0 / tree.matrix.n_items + 1e-12


def test_fine_tunes_agree_with_their_family_beyond_ability():
    tree = generate("qwen2.5-7b", seed=1)
    kappa = kappa_matrix(tree.matrix.correct)
    acc = tree.matrix.accuracies()
    fam = tree.tree.family
    i, j = np.triu_indices(tree.matrix.n_models, 1)
    # Compare pairs of similar accuracy only, so ability explains the same share of agreement.
    keep = (i >= 2) & (np.abs(acc[i] - acc[j]) < 0.05) & (np.minimum(acc[i], acc[j]) > 0.4)
    same_family = fam[i] == fam[j]
    same = kappa[i[keep & same_family], j[keep & same_family]]
    other = kappa[i[keep & ~same_family], j[keep & ~same_family]]
    assert len(same) > 20 and len(other) > 200
    assert np.mean(same) > np.mean(other) + 0.03


def test_long_tail_of_much_worse_fine_tunes_and_heavy_tailed_downloads():
    m = generate("qwen2.5-7b", seed=0).matrix
    acc = m.accuracies()
    assert (acc < acc[1] - 0.2).mean() > 0.1
    fine = np.sort(m.downloads[2:])[::-1]
    assert fine[: len(fine) // 10].sum() > 0.5 * fine.sum()  # top 10% hold most downloads


def test_scale_tasks_keeps_total_and_every_task():
    counts = scale_tasks(PRESETS["qwen2.5-3b"].tasks, 17)
    assert sum(counts.values()) == 17 and min(counts.values()) >= 1
    with pytest.raises(ValueError):
        scale_tasks(PRESETS["qwen2.5-3b"].tasks, 3)
