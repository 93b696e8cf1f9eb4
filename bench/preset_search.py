"""The random search both preset-fitting scripts use: perturb a TreeConfig's knobs, keep the
candidate when its loss is lower, with a step that shrinks linearly over the trials.

Knobs move multiplicatively (log-normal steps) unless named in `additive` (a normal step of
that many step units) or `clipped` (a normal step, clipped to a range).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from gemfinder.sim.trees.presets import TreeConfig

Loss = Callable[[TreeConfig], tuple[float, np.ndarray]]


def perturb(
    cfg: TreeConfig,
    knobs: Sequence[str],
    scale: float,
    rng: np.random.Generator,
    additive: Mapping[str, float],
    clipped: Mapping[str, tuple[float, float, float]],
) -> TreeConfig:
    change = {}
    for k in knobs:
        v = getattr(cfg, k)
        if k in additive:
            change[k] = v + rng.normal(0, additive[k] * scale)
        elif k in clipped:
            sd, lo, hi = clipped[k]
            change[k] = float(np.clip(v + rng.normal(0, sd * scale), lo, hi))
        else:
            change[k] = v * np.exp(rng.normal(0, scale))
    return dataclasses.replace(cfg, **change)


def anneal(
    cfg: TreeConfig,
    loss: Loss,
    knobs: Sequence[str],
    trials: int,
    rng: np.random.Generator,
    *,
    start: float,
    floor: float,
    additive: Mapping[str, float],
    clipped: Mapping[str, tuple[float, float, float]] | None = None,
    on_better: Callable[[int, float, np.ndarray], None] | None = None,
    initial: tuple[float, np.ndarray] | None = None,
) -> tuple[TreeConfig, float, np.ndarray]:
    """Best config found, its loss and its measured figures; step = start (1 - i/trials) + floor.
    `initial` is `loss(cfg)` when the caller has it already (losses are whole simulations)."""
    best_cfg = cfg
    best_loss, best_m = initial if initial is not None else loss(cfg)
    for i in range(trials):
        scale = start * (1 - i / trials) + floor
        cand = perturb(best_cfg, knobs, scale, rng, additive, clipped or {})
        cl, cm = loss(cand)
        if cl < best_loss:
            best_cfg, best_loss, best_m = cand, cl, cm
            if on_better is not None:
                on_better(i, cl, cm)
    return best_cfg, best_loss, best_m
