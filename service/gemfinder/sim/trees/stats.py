"""Statistics of any correctness matrix: pool marginals and how models agree on items.

Marginals are the numbers the published table reports (random-model mean, best base, best);
agreement statistics (Cohen's kappa, items everyone gets right or wrong, spread of item
difficulty) are what the realism comparison against real pools uses.
"""

from __future__ import annotations

import numpy as np

from gemfinder.sim.matrix import CorrectnessMatrix


def rank_of(acc: np.ndarray, k: int) -> float:
    """Rank of model k by accuracy (1 = best), ties sharing the average rank."""
    higher = int((acc > acc[k]).sum())
    ties = int((acc == acc[k]).sum())
    return 1.0 + higher + (ties - 1) / 2.0


def best_base_index(matrix: CorrectnessMatrix) -> int | None:
    """The 'best base' reference model: the most downloaded official model, else most popular."""
    if matrix.downloads is None:
        return None
    dl = matrix.downloads.astype(np.float64)
    if matrix.is_base is not None and matrix.is_base.any():
        dl = np.where(matrix.is_base, dl, -1.0)
    return int(np.argmax(dl))


def marginals(matrix: CorrectnessMatrix) -> dict[str, float | int | None]:
    """Pool size, mean/best accuracy, best-base accuracy and rank, density of the top."""
    acc = matrix.accuracies()
    best = float(acc.max())
    out: dict[str, float | int | None] = {
        "models": matrix.n_models,
        "items": matrix.n_items,
        "random_mean": float(acc.mean()),
        "median": float(np.median(acc)),
        "best_acc": best,
        "within_1pt_of_best": int((acc >= best - 0.01).sum()),
        "within_2pt_of_best": int((acc >= best - 0.02).sum()),
        "base_acc": None,
        "base_rank": None,
    }
    k = best_base_index(matrix)
    if k is not None:
        out["base_acc"] = float(acc[k])
        out["base_rank"] = rank_of(acc, k)
    return out


def task_accuracies(matrix: CorrectnessMatrix) -> dict[str, np.ndarray]:
    """Per-task accuracy of every model, for item ids of the form `task/index`."""
    tasks = np.array([item.split("/", 1)[0] if "/" in item else "" for item in matrix.items])
    return {t: matrix.correct[:, tasks == t].mean(axis=1) for t in dict.fromkeys(tasks.tolist())}


def kappa_matrix(correct: np.ndarray) -> np.ndarray:
    """Cohen's kappa between every pair of models (K x K; NaN where undefined)."""
    x = correct.astype(np.float64)
    n = x.shape[1]
    p = x.mean(axis=1)
    both_right = x @ x.T / n
    both_wrong = (1 - x) @ (1 - x).T / n
    observed = both_right + both_wrong
    expected = np.outer(p, p) + np.outer(1 - p, 1 - p)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (observed - expected) / (1 - expected)


def agreement(correct: np.ndarray) -> dict[str, float]:
    """Agreement statistics of a pool (use pools of equal size when comparing: shares of
    items everyone gets right or wrong shrink as models are added)."""
    k = correct.shape[0]
    kap = kappa_matrix(correct)[np.triu_indices(k, 1)]
    acc = correct.mean(axis=1)
    gap = np.abs(acc[:, None] - acc[None, :])[np.triu_indices(k, 1)]
    item_mean = correct.mean(axis=0)
    close = gap < 0.05
    return {
        "models": float(k),
        "kappa_mean": float(np.nanmean(kap)),
        "kappa_close_pairs": float(np.nanmean(kap[close])) if close.any() else float("nan"),
        "disagree_close_pairs": _disagreement(correct, close),
        "all_right": float((item_mean == 1).mean()),
        "all_wrong": float((item_mean == 0).mean()),
        "item_mean_sd": float(item_mean.std()),
        "acc_spread": float(acc.max() - acc.min()),
    }


def _disagreement(correct: np.ndarray, mask: np.ndarray) -> float:
    """Mean share of items two models answer differently, over the pairs selected by mask."""
    x = correct.astype(np.float64)
    n = x.shape[1]
    differ = (x @ (1 - x).T + (1 - x) @ x.T) / n
    values = differ[np.triu_indices(x.shape[0], 1)][mask]
    return float(values.mean()) if values.size else float("nan")
