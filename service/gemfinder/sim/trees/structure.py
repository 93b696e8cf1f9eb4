"""Tree shape of a model pool: who fine-tuned whom, families, and each model's target accuracy.

Model 0 and 1 are the official checkpoints (pretrained, instruct). Every later model is a
fine-tune of an earlier one, so parents always precede children. A model's skill `x` (logit
scale, 0 = the anchor = the most downloaded official model) is its parent's skill plus a step;
light-touch fine-tunes barely move, broken ones take a large extra loss. Skill maps to a target
accuracy through a soft ceiling above the anchor, which piles many fine-tunes up just below the
best one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gemfinder.sim.trees.presets import GENERATIVE_TASKS, TreeConfig

PRETRAINED, INSTRUCT = 0, 1


@dataclass(frozen=True)
class Tree:
    parent: np.ndarray  # int64 per model, -1 for the pretrained root
    depth: np.ndarray  # int64, 0 for the officials
    family: np.ndarray  # int64, -1 for the officials; shared by a recipe's releases
    skill: np.ndarray  # float64, logit-scale skill, 0 = anchor
    broken: np.ndarray  # bool: took a broken/degenerate step
    light: np.ndarray  # bool: light-touch fine-tune (tiny step, residuals close to the parent)
    dup: np.ndarray  # bool: near-duplicate of its parent (re-upload, quantisation, merge)
    step: np.ndarray  # float64 skill step over the parent (0 for the officials)
    collapsed_task: np.ndarray  # int64 task index whose output format collapsed, -1 if none
    target_acc: np.ndarray  # float64 target overall accuracy
    anchor: int  # index of the most popular official model

    @property
    def n_models(self) -> int:
        return int(self.parent.shape[0])


def grow_tree(cfg: TreeConfig, n_models: int, rng: np.random.Generator) -> Tree:
    """Draw the parent links, families and skills of `n_models` models."""
    if n_models < 2:
        raise ValueError("a tree needs at least 2 models (the official checkpoints)")
    anchor = INSTRUCT if cfg.anchor_is_instruct else PRETRAINED
    other = PRETRAINED if cfg.anchor_is_instruct else INSTRUCT
    parent = np.full(n_models, -1, dtype=np.int64)
    depth = np.zeros(n_models, dtype=np.int64)
    family = np.full(n_models, -1, dtype=np.int64)
    skill = np.zeros(n_models)
    broken = np.zeros(n_models, dtype=bool)
    light = np.zeros(n_models, dtype=bool)
    dup = np.zeros(n_models, dtype=bool)
    n_children = np.zeros(n_models)
    parent[INSTRUCT] = PRETRAINED
    skill[other] = cfg.pretrained_skill
    n_families = 0
    for k in range(2, n_models):
        if rng.random() < cfg.p_official_parent or k == 2:
            # Fine-tuners start from the instruct model more often than from the raw base.
            p = INSTRUCT if rng.random() < 0.65 else PRETRAINED
            if n_families and rng.random() < cfg.p_join_family:
                fam = int(rng.integers(n_families))  # a new release of an existing recipe
            else:
                fam, n_families = n_families, n_families + 1
        else:
            weights = 1.0 + n_children[2:k]
            p = 2 + int(rng.choice(k - 2, p=weights / weights.sum()))
            fam = int(family[p])
        parent[k], family[k], depth[k] = p, fam, depth[p] + 1
        n_children[p] += 1
        if cfg.p_dup > 0 and rng.random() < cfg.p_dup:
            dup[k] = True
            step = rng.normal(0.0, cfg.dup_sd)
        elif rng.random() < cfg.p_light:
            light[k] = True
            step = rng.normal(0.0, cfg.light_sd)
        else:
            step = rng.normal(cfg.step_mean, cfg.step_sd)
        if not (light[k] or dup[k]) and rng.random() < cfg.p_broken:
            broken[k] = True
            step -= rng.exponential(cfg.broken_scale)
        skill[k] = skill[p] + step
    n_tasks = len(cfg.tasks)
    generative = [i for i, t in enumerate(cfg.tasks) if t in GENERATIVE_TASKS]
    collapsed = np.full(n_models, -1, dtype=np.int64)
    if generative:
        hit = rng.random(n_models) < cfg.p_collapse
        hit[:2] = False
        collapsed[hit] = rng.choice(generative, size=int(hit.sum()))
    # A collapsed task costs that task's share of the accuracy (roughly its whole score).
    shares = np.array(list(cfg.tasks.values()), dtype=np.float64)
    shares /= shares.sum()
    target = skill_to_accuracy(cfg, skill)
    has = collapsed >= 0
    if n_tasks > 1:
        target[has] *= 1.0 - shares[collapsed[has]]
    else:
        target[has] *= 0.1
    target = np.clip(target, cfg.floor_acc, 1.0 - 1e-6)
    step = np.where(parent >= 0, skill - skill[np.maximum(parent, 0)], 0.0)
    step[:2] = 0.0
    return Tree(parent, depth, family, skill, broken, light, dup, step, collapsed, target, anchor)


def skill_to_accuracy(cfg: TreeConfig, skill: np.ndarray) -> np.ndarray:
    """Map skill to target accuracy: logit-linear below the anchor, soft ceiling above it."""
    base = cfg.targets.base_acc
    below = 1.0 / (1.0 + np.exp(-(np.log(base / (1.0 - base)) + np.minimum(skill, 0.0))))
    headroom = cfg.ceiling - base
    above = base + headroom * (1.0 - np.exp(-np.maximum(skill, 0.0) / cfg.ceiling_scale))
    return np.where(skill > 0, above, below)
