"""The event loop's CPU time for the store's two heavy reads, on the loop and through
Store.off_loop (docs/service.md, "Health under load"):

    python -m bench.speed.store_reads
    python -m bench.speed.store_reads --db postgresql://...   # a new, empty database

The per-task count at a search's end (task_counts: 5,000 models x 20 answers, 5 tasks) and
reading a finished search back (get_search: a result of 1,000 models, 7,000 estimates). For each,
the CPU time of the loop's thread while the call is awaited (its step: what every other RPC
waits for) and the call's wall time, best of --repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from gemfinder.search.values import Estimate, Result, TaskResult
from gemfinder.store import open_store

TASKS = 5


def _result(models: int) -> Result:
    """A result of `models` models in the shape a mixed query set gives: ranking, overall and
    one ranking per task (7 estimates per model)."""

    def ranked(seed: int) -> tuple[Estimate, ...]:
        return tuple(
            Estimate(f"org/ft-{m}", m + 1, 0.5 + seed / 100, 0.4, 0.6, 400, 200 + m % 50, m % 9)
            for m in range(models)
        )

    tasks = tuple(TaskResult(f"task{t}", 1 / TASKS, 80, ranked(t)) for t in range(TASKS))
    top = ranked(0)
    return Result(top[0].model_id, top, winner=top[0], per_task=tasks, overall=ranked(9))


async def _timed(call) -> tuple[float, float]:
    """(CPU ms of this thread, wall ms) while `call()` is awaited."""
    cpu, wall = time.thread_time(), time.perf_counter()
    await call()
    return (time.thread_time() - cpu) * 1e3, (time.perf_counter() - wall) * 1e3


async def measure(db: str, models: int, answers: int, result_models: int, repeat: int) -> None:
    store = open_store(db)
    try:
        store.create_search("s", None, {"t": 1})
        store.put_answers(
            "s", [(f"k{m}-{i}", m, i, (m + i) % 2) for m in range(models) for i in range(answers)]
        )
        tasks = [i % TASKS for i in range(answers)]
        store.create_search("done", None, {"t": 1})
        store.update_search("done", state="succeeded", result=_result(result_models))
        reads = {
            f"task_counts ({models:,} models x {answers} answers)": (
                store.task_counts,
                ("s", tasks),
            ),
            f"get_search (a result of {result_models:,} models)": (store.get_search, ("done",)),
        }
        print(f"{'read':<46} {'on the loop: CPU/wall ms':>26} {'off_loop: loop CPU/wall ms':>28}")
        for name, (read, args) in reads.items():

            async def on_loop(read=read, args=args) -> None:
                read(*args)  # as the loop ran it before Store.off_loop

            async def off_loop(read=read, args=args) -> None:
                await store.off_loop(read, *args)

            on = min([await _timed(on_loop) for _ in range(repeat)])
            off = min([await _timed(off_loop) for _ in range(repeat)])
            print(f"{name:<46} {on[0]:>14.1f} / {on[1]:>7.1f} {off[0]:>16.1f} / {off[1]:>7.1f}")
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="a store URL (default: a new SQLite file)")
    parser.add_argument("--models", type=int, default=5000)
    parser.add_argument("--answers", type=int, default=20, help="per model")
    parser.add_argument("--result-models", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "reads.db")
        asyncio.run(measure(db, args.models, args.answers, args.result_models, args.repeat))


if __name__ == "__main__":
    main()
