"""Calibration check: does a preset's generated pool hit its published marginals?

Tolerances (stated once, here): pool size exact; random-model mean within 0.02; best-base
accuracy within 0.005; best-base rank within a factor 1.5 either way; best accuracy within
0.01; a dense top (at least 3 models within 2 points of the best).
"""

from __future__ import annotations

from dataclasses import dataclass

from gemfinder.sim.trees.generate import generate
from gemfinder.sim.trees.presets import get_preset
from gemfinder.sim.trees.stats import marginals

MEAN_TOL = 0.02
BASE_ACC_TOL = 0.005
RANK_FACTOR = 1.5
BEST_TOL = 0.01
MIN_DENSE_TOP = 3


@dataclass(frozen=True)
class Check:
    name: str
    target: float
    achieved: float
    tolerance: str
    ok: bool


def check_preset(name: str, seed: int = 0) -> list[Check]:
    """Generate preset `name` with `seed` and compare its marginals with the targets."""
    targets = get_preset(name).targets
    m = marginals(generate(name, seed).matrix)
    rank = float(m["base_rank"])  # type: ignore[arg-type]
    size = int(m["models"])  # type: ignore[arg-type]
    return [
        Check("pool size", targets.pool_size, size, "exact", size == targets.pool_size),
        _within("random-model mean", targets.random_mean, m["random_mean"], MEAN_TOL),
        _within("best-base accuracy", targets.base_acc, m["base_acc"], BASE_ACC_TOL),
        Check(
            "best-base rank",
            targets.base_rank,
            rank,
            f"x/{RANK_FACTOR}..x{RANK_FACTOR}",
            targets.base_rank / RANK_FACTOR <= rank <= targets.base_rank * RANK_FACTOR,
        ),
        _within("best accuracy", targets.best_acc, m["best_acc"], BEST_TOL),
        Check(
            "models within 2 pt of best",
            MIN_DENSE_TOP,
            m["within_2pt_of_best"],  # type: ignore[arg-type]
            f">= {MIN_DENSE_TOP}",
            m["within_2pt_of_best"] >= MIN_DENSE_TOP,  # type: ignore[operator]
        ),
    ]


def _within(name: str, target: float, achieved: object, tol: float) -> Check:
    value = float(achieved)  # type: ignore[arg-type]
    return Check(name, target, value, f"+-{tol}", abs(value - target) <= tol)
