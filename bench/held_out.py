"""The pools the search benchmarks judge on (bench/acceptance.py, bench/ablation.py).

Synthetic presets at generator seeds held out from every fit and choice (the preset fits use
seeds 100+, bench/choose_gem_defaults.py seeds 5-9), N in {5, 10, 25, 50, 100} as
design/search.md asks, and optionally the small real pools.
"""

from __future__ import annotations

import argparse

from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.sim.trees import PRESETS, generate
from real_pools import REAL_MATRICES, load_real_pools

HELD_OUT_SEEDS = [3, 4]
BUDGETS = [5.0, 10.0, 25.0, 50.0, 100.0]


def add_pool_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--presets", nargs="+", default=[p for p in PRESETS if p != "gsm8k"])
    parser.add_argument("--seeds", nargs="+", type=int, default=HELD_OUT_SEEDS)
    parser.add_argument("--budgets", nargs="+", type=float, default=BUDGETS)


def held_out_pools(
    args: argparse.Namespace, real: bool
) -> list[tuple[str, int, CorrectnessMatrix]]:
    """(label, generator seed, pool) for every preset and seed, then the real pools (seed 0)."""
    real_pools = load_real_pools(REAL_MATRICES) if real else {}  # missing data: fail first
    pools = [(f"{p}/s{s}", s, generate(p, s).matrix) for p in args.presets for s in args.seeds]
    return pools + [(name, 0, matrix) for name, matrix in real_pools.items()]
