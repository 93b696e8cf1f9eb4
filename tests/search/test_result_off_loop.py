"""The per-task results of a big mixed search are ranked off the event loop.

As a search ends its runner builds the result; for a mixed query set that includes ranking
every model on every task (search.per_task): 0.8 s of CPU at 5,000 models, which on the event
loop held every RPC of the server. The store still counts (SQL, on the loop's thread: its
connection is the loop's); the ranking runs on a worker thread. Here a ticker on the loop
counts its turns while the runner builds such a result.
"""

from __future__ import annotations

import asyncio
import random
import time

from gemfinder.candidates import Candidate
from gemfinder.search import result as result_mod
from gemfinder.search.runner import SearchRunner
from gemfinder.search.spec import SearchSpec
from gemfinder.store import Store

from tests.fleet_support import make_items

MODELS, PER_MODEL = 5000, 20


async def test_per_task_ranking_of_5000_models_leaves_the_loop_free(tmp_path, monkeypatch):
    tasks = ("arc_challenge", "gsm8k", "mmlu")
    items = make_items(10, tasks=tasks)
    cands = [Candidate(f"org/m-{k}", f"http://h:{1 + k % 8}") for k in range(MODELS)]
    spec = SearchSpec(cands, items, budget=MODELS * PER_MODEL)
    store = Store(str(tmp_path / "r.db"))
    try:
        store.create_search("s", None, spec.to_dict())
        rng = random.Random(0)
        answers = [
            (f"k{m}-{i}", m, i, rng.randint(0, 1))
            for m in range(MODELS)
            for i in rng.sample(range(len(items)), PER_MODEL)
        ]
        store.put_answers("s", answers)
        runner = SearchRunner("s", spec, object(), store)  # the oracle is never asked here

        spans = []  # (start, end) of the per-task ranking, wherever it ran
        real = result_mod.per_task

        def timed(*args):
            t0 = time.perf_counter()
            out = real(*args)
            spans.append((t0, time.perf_counter()))
            return out

        monkeypatch.setattr(result_mod, "per_task", timed)
        ticks: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.01)

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        found = await runner.result()
        done.set()
        await tick
        assert {t.task for t in found.per_task} == set(tasks)
        assert len(found.overall) == MODELS
        assert sum(e.items_seen for e in found.overall) == MODELS * PER_MODEL
        ((t0, t1),) = spans
        assert t1 - t0 > 0.05, spans  # real work: 0.1-1 s here, with the machine's load
        # While it ran the loop kept its turns (on the loop it would have had none): ticks all
        # through, the longest gap a fraction of the ranking (the GIL switches every 5 ms; the
        # rest is this shared machine's scheduling).
        inside = [t0, *(t for t in ticks if t0 < t < t1), t1]
        gap = max(b - a for a, b in zip(inside, inside[1:], strict=False))
        assert len(inside) - 2 >= 3 and gap < 0.75 * (t1 - t0), (gap, t1 - t0, len(inside))
        print(f"per-task ranking {t1 - t0:.2f} s on a thread: {len(inside) - 2} loop turns, "
              f"longest gap {gap * 1000:.0f} ms")  # fmt: skip
    finally:
        store.close()
