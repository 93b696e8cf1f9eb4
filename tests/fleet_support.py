"""Helpers shared by the fleet and oracle tests: a small synthetic pool served by a fleet."""

from __future__ import annotations

import json

import numpy as np
from gemfinder.oracles import RetryPolicy
from gemfinder.sim.fleet.config import fleet_from_dict
from gemfinder.sim.fleet.synthetic_items import generate
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.tasks import Item, parse_item

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_base_s=0.001, backoff_max_s=0.005, timeout_s=5.0)


def make_items(
    per_task: int, tasks=("arc_challenge", "mmlu", "winogrande", "gsm8k", "mbpp"), seed=7
):
    records = generate(per_task, seed=seed, tasks=tasks)
    return [parse_item(json.dumps(r), f"item {r['id']}") for r in records]


def make_matrix(items: list[Item], models: list[str], seed: int = 0) -> CorrectnessMatrix:
    rng = np.random.default_rng(seed)
    correct = (rng.random((len(models), len(items))) < 0.55).astype(np.uint8)
    return CorrectnessMatrix(correct, models, [it.id for it in items])


def fleet_config(*endpoints: dict, seed: int = 0):
    return fleet_from_dict({"seed": seed, "endpoints": list(endpoints)})


def expected(matrix: CorrectnessMatrix, model: str, item_id: str) -> int:
    return int(matrix.correct[matrix.models.index(model), matrix.items.index(item_id)])
