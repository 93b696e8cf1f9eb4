"""What building a search's result costs the event loop: on it (as before) or on a worker thread.

    python -m bench.speed.result_build               # 1,000 models x 400 items, best of 3
    python -m bench.speed.result_build --models 200

For each algorithm, one search of `--models` models on a SQLite file is driven to its end (the
scheduler alone, answers from a random matrix, each stored as the runner stores it); then its
result is built three times each way while a task on the loop sleeps 1 ms at a time: the ranking
with the gem verdict and the certificate read from the stored answers (search.result.result,
which ran on the loop until now), and the whole result on a worker thread as the runner builds
it now (runner._final through Store.off_loop, the per-task ranking included). Prints the loop
thread's CPU while the result is built, the longest the sleeping task waited for a turn (what
a health check would have waited), and the wall time, each the best of 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from functools import partial

import numpy as np
from gemfinder.candidates import Candidate
from gemfinder.search.result import result
from gemfinder.search.runner import _final
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.fleet.synthetic_items import generate
from gemfinder.store import Store
from gemfinder.tasks import parse_item

TASKS = ("arc_challenge", "mmlu", "winogrande", "gsm8k")


async def _ticker(stop: asyncio.Event, gaps: list[float]) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


async def _timed(build) -> tuple[float, float, float]:
    """(loop CPU, longest wait of a task for its turn, wall) in ms while `build()` runs."""
    stop, gaps = asyncio.Event(), []
    ticking = asyncio.create_task(_ticker(stop, gaps))
    await asyncio.sleep(0.05)
    wall, cpu = time.perf_counter(), time.thread_time()
    await build()
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    await asyncio.sleep(0.02)
    stop.set()
    await ticking
    return cpu * 1000, max(gaps) * 1000, wall * 1000


async def main_async(args: argparse.Namespace) -> None:
    records = generate(args.per_task, 0, tasks=TASKS)
    items = [parse_item(json.dumps(r), r["id"]) for r in records]
    rng = np.random.default_rng(0)
    correct = rng.random((args.models, len(items))) < rng.uniform(0.2, 0.9, args.models)[:, None]
    candidates = [
        Candidate(f"org/m{k}", "http://h:80", adapter_id=f"a{k}", downloads=float(k))
        for k in range(args.models)
    ]
    print(f"{args.models} models, {len(items)} items; ms, best of 3")
    print(f"{'algorithm':<14} {'where':<7} {'loop CPU':>9} {'longest wait':>13} {'wall':>7}")
    for algorithm in args.algorithms:
        spec = SearchSpec(candidates, items, budget=20 * args.models, seed=1, algorithm=algorithm)
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(f"{tmp}/result.db")
            try:
                await compare(spec, store, correct)
            finally:
                store.close()


async def compare(spec: SearchSpec, store: Store, correct: np.ndarray) -> None:
    """Drive `spec`'s search to its end, its answers stored; then build its result both ways."""
    store.create_search("s", None, {})
    sched = spec.scheduler()
    while not sched.finished:
        pulls = sched.ask(2048)
        graded = [(m, i, int(correct[m, i])) for m, i in pulls]
        store.put_answers("s", [(f"{m}:{i}", m, i, r) for m, i, r in graded])
        sched.tell_many([(m, i, bool(r)) for m, i, r in graded])

    async def on_loop() -> None:
        result(spec, sched, 0, 1.0, partial(store.outcomes, "s"))

    async def off_loop() -> None:
        await store.off_loop(_final, store, "s", spec, sched, 0, 1.0)

    for where, build in (("loop", on_loop), ("thread", off_loop)):
        runs = [await _timed(build) for _ in range(3)]
        cpu, wait, wall = (min(run[k] for run in runs) for k in range(3))
        print(f"{spec.algorithm:<14} {where:<7} {cpu:>9.1f} {wait:>13.1f} {wall:>7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--per-task", type=int, default=100, help="items per task (4 tasks)")
    parser.add_argument("--algorithms", nargs="+", default=["sh_correlated", "bayes_elim"])
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
