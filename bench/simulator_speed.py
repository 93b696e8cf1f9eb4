"""Speed of the Rust simulator against a straightforward NumPy implementation of the same
algorithm (correlated Sequential Halving), on the same matrix and number of trials.

    python bench/simulator_speed.py [--preset qwen2.5-3b] [--models 500] [--per-model 50]

The pool is a synthetic model tree (gemfinder.sim.trees) resized to --models. Prints the time per
trial of each, their ratio, and the mean rank each reached (a check that both run the same
algorithm). Rust runs trials in parallel on every core (rayon) and is also timed on one thread,
in a subprocess with RAYON_NUM_THREADS=1. The NumPy version is vectorised per round (one gather
and one sum per round), which is how one would write it; a version looping over models in
Python is also timed to show what the per-round vectorisation buys.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
from gemfinder import _core
from gemfinder.sim.trees import generate


def make_pool(preset: str, k: int, seed: int) -> np.ndarray:
    return generate(preset, seed, models=k).matrix.correct


def sh_numpy(correct: np.ndarray, budget: int, rng: np.random.Generator) -> int:
    """Correlated SH as search.md states it: one fresh batch of items per round for all
    survivors, t_r = floor(remaining / rounds_left / |S_r|) (at least 1), keep the better half
    by mean over all items seen, random tie-break."""
    k, n = correct.shape
    perm = rng.permutation(n)
    alive = np.arange(k)
    successes = np.zeros(k, dtype=np.int64)
    rounds = math.ceil(math.log2(k))
    pos, remaining = 0, budget
    for r in range(rounds):
        t = max(1, remaining // (rounds - r) // len(alive))
        t = min(t, n - pos)
        items = perm[pos : pos + t]
        successes[alive] += correct[np.ix_(alive, items)].sum(axis=1, dtype=np.int64)
        pos += t
        remaining -= t * len(alive)
        keep = math.ceil(len(alive) / 2)
        order = np.lexsort((rng.random(len(alive)), -successes[alive]))
        alive = alive[order[:keep]]
    return int(alive[0])


def sh_python_loops(correct: np.ndarray, budget: int, rng: np.random.Generator) -> int:
    """The same algorithm with a Python loop over survivors (no per-round vectorisation)."""
    k, n = correct.shape
    perm = rng.permutation(n)
    alive = list(range(k))
    successes = [0] * k
    rounds = math.ceil(math.log2(k))
    pos, remaining = 0, budget
    for r in range(rounds):
        t = min(max(1, remaining // (rounds - r) // len(alive)), n - pos)
        items = perm[pos : pos + t]
        for m in alive:
            successes[m] += int(correct[m, items].sum())
        pos += t
        remaining -= t * len(alive)
        keys = rng.random(len(alive))
        ranked = sorted(range(len(alive)), key=lambda i: (-successes[alive[i]], keys[i]))
        alive = [alive[i] for i in ranked[: math.ceil(len(alive) / 2)]]
    return alive[0]


def true_mean_rank(acc: np.ndarray, picks: np.ndarray) -> float:
    ranks = np.array([1 + (acc > a).sum() + ((acc == a).sum() - 1) / 2 for a in acc])
    return float(ranks[picks].mean())


def time_rust(correct: np.ndarray, budget: int, trials: int) -> tuple[float, np.ndarray]:
    _core.simulate_trials(correct, "sh_correlated", budget, 0, 0, 10)  # warm up the pool
    start = time.perf_counter()
    picks, _ = _core.simulate_trials(correct, "sh_correlated", budget, 0, 0, trials)
    return time.perf_counter() - start, picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="qwen2.5-3b")
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--per-model", type=int, default=50)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--numpy-trials", type=int, default=100)
    parser.add_argument("--single-thread-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    correct = make_pool(args.preset, args.models, seed=1)
    budget = args.models * args.per_model
    if args.single_thread_child:
        seconds, _ = time_rust(correct, budget, args.trials)
        print(json.dumps({"seconds": seconds}))
        return

    rust_s, rust_picks = time_rust(correct, budget, args.trials)
    child = subprocess.run(
        [sys.executable, __file__, "--single-thread-child", *sys.argv[1:]],
        env=os.environ | {"RAYON_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    rust_1t_s = json.loads(child.stdout)["seconds"]
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    numpy_picks = np.array([sh_numpy(correct, budget, rng) for _ in range(args.numpy_trials)])
    numpy_s = time.perf_counter() - start
    start = time.perf_counter()
    loops = max(1, args.numpy_trials // 10)
    loop_picks = np.array([sh_python_loops(correct, budget, rng) for _ in range(loops)])
    loop_s = time.perf_counter() - start

    acc = correct.mean(axis=1)
    per_rust = rust_s / args.trials
    per_rust_1t = rust_1t_s / args.trials
    per_numpy = numpy_s / args.numpy_trials
    print(
        f"correlated SH on {args.preset}: K={correct.shape[0]} models, N={correct.shape[1]} items, "
        f"{args.per_model} queries/model (B={budget}), {os.cpu_count()} cores"
    )
    print(f"{'implementation':<22}{'trials':>8}{'per trial':>14}{'mean rank':>11}{'ratio':>9}")
    rows = [
        ("python loops", loops, loop_s / loops, true_mean_rank(acc, loop_picks)),
        ("numpy (1 thread)", args.numpy_trials, per_numpy, true_mean_rank(acc, numpy_picks)),
        ("rust (1 thread)", args.trials, per_rust_1t, true_mean_rank(acc, rust_picks)),
        ("rust (all cores)", args.trials, per_rust, true_mean_rank(acc, rust_picks)),
    ]
    for name, n, per, rank in rows:
        print(f"{name:<22}{n:>8}{per * 1e3:>11.3f} ms{rank:>11.2f}{per_numpy / per:>8.1f}x")
    print(
        f"{args.trials} trials in {rust_s:.3f} s (target < 1 s). Speed-up over vectorised NumPy: "
        f"{per_numpy / per_rust:.1f}x on all cores, {per_numpy / per_rust_1t:.1f}x on one thread "
        f"(target 100x, not met); over Python loops: {loop_s / loops / per_rust:.0f}x"
    )


if __name__ == "__main__":
    main()
