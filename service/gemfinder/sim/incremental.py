"""Simulated incremental searches against a full re-search (docs/search.md, Incremental search).

A tree grows by a share of new models, drawn at random per trial from the matrix (so newcomers
come from the same generator as the rest). The core (`_core.simulate_incremental`) runs, per
trial and with common random numbers: the parent search on the old models, the incremental
search (the parent's top `incumbents` challenged by the newcomers, the parent's answers free)
and a full re-search of the whole tree. This module turns its per-trial arrays into one row.
"""

from __future__ import annotations

import math

import numpy as np

from gemfinder import _core
from gemfinder.errors import UserError
from gemfinder.loss import EPS, HALF_POINT, trial_losses
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.sim.simulation import algorithm_name, check_seed, check_trials

# The service's default number of incumbents (search/incremental.py); chosen by
# bench/studies/incremental.py (docs/results.md, Incremental search).
DEFAULT_INCUMBENTS = 8


def newcomer_count(n_models: int, new_share: float) -> int:
    """How many of `n_models` are new at `new_share` (at least 1, leaving the parent 2)."""
    if not 0.0 < new_share < 1.0:
        raise UserError("new_share", f"must be between 0 and 1 (exclusive), got {new_share}")
    n_new = max(1, round(n_models * new_share))
    if n_new > n_models - 2:
        raise UserError("new_share", f"{n_new} of {n_models} models new leaves the parent < 2")
    return n_new


def simulate_incremental(
    matrix: CorrectnessMatrix,
    new_share: float,
    budget_per_model: float,
    trials: int,
    seed: int,
    incumbents: int = DEFAULT_INCUMBENTS,
    per_newcomer: float | None = None,
    algorithm: str = "default",
    warm: bool = False,
) -> dict:
    """One row: the incremental search and the full re-search on the same trials.

    Budgets: the parent spends `budget_per_model` per old model, the full re-search the same
    per model of the grown tree, the incremental search `per_newcomer` (default
    `budget_per_model`) per newcomer plus the incumbents' answers, which are free.
    Costs: `*_spent` counts every pull, `*_paid` the pulls the parent had not answered (a search
    run against the parent's evaluation cache with the parent's seed).
    """
    check_trials(trials)
    check_seed(seed)
    if incumbents < 1:
        raise UserError("incumbents", f"must be at least 1, got {incumbents}")
    name = algorithm_name(algorithm)
    k = matrix.n_models
    n_new = newcomer_count(k, new_share)
    per_new = budget_per_model if per_newcomer is None else per_newcomer
    if per_new < 1:
        raise UserError("per_newcomer", f"must be at least 1 query, got {per_new}")
    arrays = _core.simulate_incremental(
        np.ascontiguousarray(matrix.correct, dtype=np.uint8),
        name,
        seed,
        0,
        trials,
        n_new,
        incumbents,
        math.ceil(budget_per_model * (k - n_new)),
        math.ceil(per_new),
        math.ceil(budget_per_model * k),
        None,
        warm,
    )
    acc = matrix.accuracies()
    loss = {who: trial_losses(acc, arrays[f"{who}pick"]) for who in ("parent_", "", "full_")}

    def p(hits: np.ndarray) -> float:
        return float(np.mean(hits))

    return {
        "algorithm": name,
        "models": k,
        "new": n_new,
        "incumbents": incumbents,
        "budget_per_model": budget_per_model,
        "per_newcomer": per_new,
        "trials": trials,
        "stale_loss_mean": float(loss["parent_"].mean()),
        "spent_mean": float(arrays["spent"].mean()),
        "paid_mean": float(arrays["paid"].mean()),
        "loss_mean": float(loss[""].mean()),
        "loss_p90": float(np.quantile(loss[""], 0.9)),
        "p_best": p(loss[""] <= EPS),
        "p_within_half_point": p(loss[""] <= HALF_POINT + EPS),
        "winner_changed": p(arrays["pick"] != arrays["parent_pick"]),
        "same_as_full": p(arrays["pick"] == arrays["full_pick"]),
        "full_spent_mean": float(arrays["full_spent"].mean()),
        "full_paid_mean": float(arrays["full_paid"].mean()),
        "full_loss_mean": float(loss["full_"].mean()),
        "full_loss_p90": float(np.quantile(loss["full_"], 0.9)),
        "full_p_best": p(loss["full_"] <= EPS),
        "full_p_within_half_point": p(loss["full_"] <= HALF_POINT + EPS),
    }
