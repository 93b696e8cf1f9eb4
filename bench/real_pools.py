"""The small real pools of ../shared/data/matrices as CorrectnessMatrix objects (bench only).

- opencompass-12: 12 unnamed models x 41,871 items, a bare 0/1 CSV.
- routerdc-mistral7: 7 models (5 Mistral-7B fine-tunes) on six tasks, concatenated into one
  models x items 0/1 matrix, thresholded as the data README says: GSM8K, MBPP and HumanEval
  hold the share of 10 samples that were correct (>= 0.5 counts as correct, the closest to one
  greedy answer); MMLU and ARC hold 0 or the probability of the chosen right option (> 0 is
  correct); MATH prealgebra is already 0/1.

Neither pool has downloads, so `best_base` cannot run on them. gemfinder.sim.trees.realism has a
Mistral-only, four-task loader for agreement statistics; this one keeps every model and task
because the bench wants the whole pool.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from gemfinder.sim.matrix import CorrectnessMatrix, load_matrix
from shared_data import SHARED_DATA, require

REAL_MATRICES = SHARED_DATA / "matrices"

# file stem -> (task name, threshold, strict: score > threshold, else score >= threshold)
ROUTERDC_TASKS = {
    "arc_challenge_test": ("arc_challenge", 0.0, True),
    "mmlu_test": ("mmlu", 0.0, True),
    "gsm8k-test": ("gsm8k", 0.5, False),
    "mbpp": ("mbpp", 0.5, False),
    "humaneval_test": ("humaneval", 0.5, False),
    "MATH_prealgebra": ("math_prealgebra", 0.5, False),
}


def load_routerdc(folder: Path) -> CorrectnessMatrix:
    """All 7 routerdc-mistral7 models on all six tasks (item ids `task/index`)."""
    blocks, items, models = [], [], None
    for stem, (task, threshold, strict) in ROUTERDC_TASKS.items():
        records = json.loads((folder / f"{stem}.json").read_text())
        models = models or list(records[0]["scores"])
        scores = np.array([[r["scores"][m] for m in models] for r in records], dtype=np.float64)
        blocks.append((scores > threshold if strict else scores >= threshold).T)
        items += [f"{task}/{i}" for i in range(len(records))]
    assert models is not None
    correct = np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.uint8)
    return CorrectnessMatrix(correct=correct, models=models, items=items)


def load_real_pools(matrices: Path, option: str | None = None) -> dict[str, CorrectnessMatrix]:
    """{pool name: matrix} for the two real pools under `matrices` (`option`: the caller's flag
    naming that folder, for the error when it is missing)."""
    opencompass = matrices / "opencompass-12" / "combine.csv"
    routerdc = matrices / "routerdc-mistral7"
    require(opencompass, routerdc, option=option)
    return {
        "opencompass-12": load_matrix(opencompass),
        "routerdc-mistral7": load_routerdc(routerdc),
    }
