"""Scale: the default search over 1,000,000 models at 10 queries per model.

    python -m bench.speed.scale [--models 1000000] [--items 400] [--per-model 10] [--trials 3]

Simulates a few trials on a random pool and reports time per trial, peak memory of the process
(the matrix itself is models x items bytes) and the scheduler's state per model, measured as
the size of its snapshot (the state is a few integer columns per model, stored as they are).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from gemfinder import _core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--per-model", type=int, default=10)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    k, n = args.models, args.items
    budget = k * args.per_model

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    ability = rng.uniform(0.2, 0.8, size=k).astype(np.float32)
    correct = np.empty((k, n), dtype=np.uint8)
    for lo in range(0, k, 50_000):  # in slices, to keep the float temporaries small
        hi = min(k, lo + 50_000)
        correct[lo:hi] = rng.random((hi - lo, n), dtype=np.float32) < ability[lo:hi, None]
    made = time.perf_counter() - start

    scheduler = _core.Scheduler(_core.DEFAULT_ALGORITHM, k, n, budget, 0)
    fresh = len(scheduler.snapshot())
    first_round = scheduler.ask()
    for model, item in first_round:
        scheduler.tell(model, item, bool(correct[model, item]))
    after_round = len(scheduler.snapshot())

    start = time.perf_counter()
    picks, spent = _core.simulate_trials(
        correct, _core.DEFAULT_ALGORITHM, budget, 0, 0, args.trials
    )
    elapsed = time.perf_counter() - start
    acc = correct.mean(axis=1)
    summary = _core.summarize(acc, picks, spent)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(
        f"{_core.DEFAULT_ALGORITHM} search: {k:,} models x {n} items, {args.per_model} "
        f"queries/model (B={budget:,}); pool generated in {made:.1f} s"
    )
    print(
        f"simulated {args.trials} trials in {elapsed:.2f} s ({elapsed / args.trials:.2f} s/trial), "
        f"queries spent {summary['queries_spent']:,.0f}, mean rank {summary['mean_rank']:.1f}"
    )
    print(
        f"scheduler state: {fresh / k:.1f} bytes/model fresh, {after_round / k:.1f} bytes/model "
        f"after round 1 ({len(first_round):,} pulls answered through the Python binding)"
    )
    print(f"peak RSS {peak_mib:,.0f} MiB, of which the matrix is {correct.nbytes / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
