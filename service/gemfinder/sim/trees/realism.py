"""Realism of item agreement: real small pools next to accuracy-matched synthetic subsets.

Agreement statistics depend on how many models there are and how good they are, so each real
pool is compared with synthetic subsets of the same size whose models are picked to match the
real accuracies one by one (nearest unused synthetic model). Real pools (read in place):

- routerdc-mistral7: 5 Mistral-7B fine-tunes (a small real model tree) on ARC-C, GSM8K, MMLU,
  MBPP. ARC/MMLU scores > 0 count as correct; GSM8K/MBPP hold the share of 10 samples that
  were correct, >= 0.5 counts as correct (majority, the closest to one greedy answer).
- opencompass-12: 12 unrelated models on 11 benchmarks: a pool with no tree, so it bounds
  agreement from below.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gemfinder.sim.trees.stats import agreement

ROUTERDC_TASKS = {  # file stem -> (our task name, threshold, strict)
    "arc_challenge_test": ("arc_challenge", 0.0, True),
    "gsm8k-test": ("gsm8k", 0.5, False),
    "mmlu_test": ("mmlu", 0.0, True),
    "mbpp": ("mbpp", 0.5, False),
}
MISTRAL_PREFIXES = ("mistralai/", "meta-math/", "itpossible/", "HuggingFaceH4/")


def load_routerdc(
    folder: Path, mistral_only: bool = True
) -> tuple[np.ndarray, list[str], list[str]]:
    """(correct K x N uint8, model names, task name per item) from routerdc-mistral7 JSON."""
    blocks, tasks, models = [], [], None
    for stem, (task, threshold, strict) in ROUTERDC_TASKS.items():
        records = json.loads((folder / f"{stem}.json").read_text())
        models = models or list(records[0]["scores"])
        scores = np.array([[r["scores"][m] for m in models] for r in records], dtype=np.float64).T
        blocks.append(scores > threshold if strict else scores >= threshold)
        tasks += [task] * scores.shape[1]
    correct = np.concatenate(blocks, axis=1).astype(np.uint8)
    assert models is not None
    keep = [i for i, m in enumerate(models) if not mistral_only or _is_mistral(m)]
    return correct[keep], [models[i] for i in keep], tasks


def _is_mistral(name: str) -> bool:
    return name.startswith(MISTRAL_PREFIXES) or "mistral" in name.lower()


def load_opencompass(path: Path) -> np.ndarray:
    """The 12 x 41,871 0/1 matrix (no header row, no model names)."""
    return np.loadtxt(path, delimiter=",", dtype=np.float64).astype(np.uint8)


def matched_subset(pool: np.ndarray, real_acc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows of `pool` matching `real_acc` one by one (nearest unused accuracy, random order)."""
    acc = pool.mean(axis=1)
    used = np.zeros(pool.shape[0], dtype=bool)
    rows = []
    for target in rng.permutation(real_acc):
        gap = np.where(used, np.inf, np.abs(acc - target))
        # Among near-equal candidates pick at random, so repeats sample different subsets.
        near = np.flatnonzero(gap <= gap.min() + 0.01)
        pick = int(rng.choice(near))
        used[pick] = True
        rows.append(pick)
    return pool[rows]


def within_task_kappa(correct: np.ndarray, tasks: list[str]) -> float:
    """Mean kappa computed inside each task (mixing tasks inflates agreement), item-weighted."""
    labels = np.asarray(tasks)
    total, weight = 0.0, 0
    for task in dict.fromkeys(tasks):
        cols = labels == task
        total += agreement(correct[:, cols])["kappa_mean"] * int(cols.sum())
        weight += int(cols.sum())
    return total / weight


def compare(
    real: np.ndarray,
    real_tasks: list[str] | None,
    pool: np.ndarray,
    pool_tasks: list[str],
    repeats: int = 20,
    seed: int = 0,
) -> dict[str, tuple[float, float, float]]:
    """Per statistic: (real, synthetic mean, synthetic sd over repeated matched subsets)."""
    if real_tasks is not None:
        # Compare on the tasks both have, weighting them as the real pool does.
        shared = sorted(set(real_tasks) & set(pool_tasks))
        pool = pool[:, np.isin(pool_tasks, shared)]
        pool_tasks = [t for t in pool_tasks if t in shared]
    real_stats = agreement(real)
    if real_tasks is not None:
        real_stats["kappa_within_task"] = within_task_kappa(real, real_tasks)
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(repeats):
        sub = matched_subset(pool, real.mean(axis=1), rng)
        s = agreement(sub)
        if real_tasks is not None:
            s["kappa_within_task"] = within_task_kappa(sub, pool_tasks)
        runs.append(s)
    return {
        key: (
            value,
            float(np.mean([r[key] for r in runs])),
            float(np.std([r[key] for r in runs])),
        )
        for key, value in real_stats.items()
    }
