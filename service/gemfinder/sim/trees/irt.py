"""Item response model: items with difficulty and discrimination, models answering them.

Model k answers item i (task t) correctly when

    a_i * (g_k + ease_t + u_kt - b_i) + e_ki > 0

b_i difficulty, a_i discrimination, ease_t a task offset, g_k the model's general ability,
u_kt its task-specific drift and e_ki a standard normal residual (a probit 2PL model with the
residual made explicit). Residuals and task drifts are inherited along the tree, so a
fine-tune agrees with its parent and its family beyond what ability explains. g_k is not drawn:
it is solved so that model k's realized accuracy equals its target (see `answer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gemfinder.sim.trees.presets import TreeConfig
from gemfinder.sim.trees.structure import Tree

COLLAPSE_DRIFT = -8.0  # task ability of a collapsed task: about nothing right there


@dataclass(frozen=True)
class ItemBank:
    tasks: tuple[str, ...]
    task_of: np.ndarray  # int64 task index per item
    index_in_task: np.ndarray  # int64 position of the item within its task
    difficulty: np.ndarray  # float64 b_i
    discrimination: np.ndarray  # float64 a_i > 0

    @property
    def n_items(self) -> int:
        return int(self.task_of.shape[0])

    def ids(self) -> list[str]:
        """Item ids `task/index`: the task name travels with every item."""
        return [
            f"{self.tasks[t]}/{i}" for t, i in zip(self.task_of, self.index_in_task, strict=True)
        ]


def make_items(cfg: TreeConfig, rng: np.random.Generator) -> ItemBank:
    tasks = tuple(cfg.tasks)
    counts = np.array([cfg.tasks[t] for t in tasks], dtype=np.int64)
    task_of = np.repeat(np.arange(len(tasks)), counts)
    index_in_task = np.concatenate([np.arange(c) for c in counts])
    n = int(counts.sum())
    difficulty = rng.normal(0.0, cfg.difficulty_sd, n)
    discrimination = cfg.discrimination_median * np.exp(
        rng.normal(0.0, cfg.discrimination_log_sd, n)
    )
    return ItemBank(tasks, task_of, index_in_task, difficulty, discrimination)


def parent_agreement(cfg: TreeConfig, tree: Tree) -> np.ndarray:
    """Per model: correlation of its item residuals with its parent's (0 for the root)."""
    if cfg.agreement_scale is not None:
        rho = np.exp(-((np.abs(tree.step) / cfg.agreement_scale) ** cfg.agreement_power))
    else:
        rho = np.where(tree.light, cfg.rho_light, cfg.rho_parent)
    rho = np.where(tree.dup, cfg.rho_dup, rho)
    rho[tree.parent < 0] = 0.0
    return rho


def inherited_residuals(
    cfg: TreeConfig, tree: Tree, n_items: int, rng: np.random.Generator
) -> np.ndarray:
    """K x N residuals, unit variance each, correlated along parent links and within families."""
    k_models = tree.n_models
    rho_f = cfg.rho_family
    rho_k = parent_agreement(cfg, tree)
    n_families = int(tree.family.max()) + 1 if (tree.family >= 0).any() else 0
    family_noise = rng.standard_normal((n_families, n_items))
    e = np.empty((k_models, n_items))
    e[0] = rng.standard_normal(n_items)
    for k in range(1, k_models):
        p, fam = int(tree.parent[k]), int(tree.family[k])
        fresh = rng.standard_normal(n_items)
        if fam >= 0 and tree.family[p] != fam:
            # Entering a family: its shared item quirks (recipe, data) come in once, here;
            # later members inherit them through their parents.
            if cfg.agreement_scale is None:
                # (Historically a light-touch model entering a family used rho_parent; kept.)
                rho_in = cfg.rho_parent if tree.light[k] else rho_k[k]
                rho_p = min(float(rho_in), np.sqrt(1.0 - rho_f**2))
                rho_fk = rho_f
            else:
                # The family's quirks are part of the change: they take the share of the new
                # residual that rho_family takes at rho_parent, so small steps stay close.
                rho_p = float(rho_k[k])
                rho_fk = rho_f * np.sqrt((1.0 - rho_p**2) / (1.0 - cfg.rho_parent**2))
                rho_fk = min(rho_fk, np.sqrt(1.0 - rho_p**2))
            own = max(0.0, 1.0 - rho_p**2 - rho_fk**2)
            e[k] = rho_p * e[p] + rho_fk * family_noise[fam] + np.sqrt(own) * fresh
        else:
            rho = float(rho_k[k])
            e[k] = rho * e[p] + np.sqrt(1.0 - rho**2) * fresh
    return e


def task_drifts(cfg: TreeConfig, tree: Tree, n_tasks: int, rng: np.random.Generator) -> np.ndarray:
    """K x T task-specific ability drift, a random walk along the tree; collapses not inherited."""
    u = np.zeros((tree.n_models, n_tasks))
    steps = rng.normal(0.0, cfg.task_step_sd, (tree.n_models, n_tasks))
    # Drift shrinks with the answer change: by sqrt(1 - rho^2) relative to a regular fine-tune
    # (near-duplicates: none; every model when `agreement_scale` is set).
    rho_k = parent_agreement(cfg, tree)
    ref = np.sqrt(1.0 - cfg.rho_parent**2)
    shrink = np.minimum(1.0, np.sqrt(1.0 - rho_k**2) / ref)
    if cfg.agreement_scale is None:
        shrink = np.where(tree.dup, 0.0, 1.0)
    steps *= shrink[:, None]
    for k in range(1, tree.n_models):
        u[k] = u[tree.parent[k]] + steps[k]
    u -= u.mean(axis=1, keepdims=True)  # drift moves skill between tasks, g sets the level
    out = u.copy()
    hit = tree.collapsed_task >= 0
    out[hit, tree.collapsed_task[hit]] = COLLAPSE_DRIFT
    return out


def answer(
    cfg: TreeConfig, tree: Tree, items: ItemBank, residuals: np.ndarray, drifts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The 0/1 matrix and the abilities g that make each row's accuracy equal its target.

    Item i is right for model k exactly when g_k > tau_ki = b_i - ease_t - u_kt - e_ki / a_i,
    so the accuracy is the share of tau_ki below g_k and the g_k that hits a target is a
    quantile of row k of tau (to within 1/N). This keeps the item noise out of the marginals.
    """
    ease = np.array([cfg.task_ease.get(t, 0.0) for t in items.tasks])
    tau = (
        items.difficulty[None, :]
        - ease[items.task_of][None, :]
        - drifts[:, items.task_of]
        - residuals / items.discrimination[None, :]
    )
    n = items.n_items
    ordered = np.sort(tau, axis=1)
    count = np.clip(np.rint(tree.target_acc * n).astype(np.int64), 0, n)
    rows = np.arange(tree.n_models)
    lo = np.where(count > 0, ordered[rows, np.maximum(count - 1, 0)], ordered[:, 0] - 1.0)
    hi = np.where(count < n, ordered[rows, np.minimum(count, n - 1)], ordered[:, -1] + 1.0)
    ability = (lo + hi) / 2.0
    correct = (tau < ability[:, None]).astype(np.uint8)
    return correct, ability
