"""Drive one search: ask the Rust scheduler for pulls, answer them through an oracle, tell back.

Every pull the scheduler hands out (a whole round for round-based algorithms) is answered at
once by its own task; the oracle's per-endpoint semaphores bound what reaches each endpoint, so
a slow endpoint never holds back the others, and results are told as they arrive. A pull whose
answer is in the evaluation cache is told without touching an endpoint. Failures are told as
failures (the scheduler gives the query back), never as a 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

from gemfinder import _core, metrics
from gemfinder.oracles import Oracle, OracleResult
from gemfinder.search import events as ev
from gemfinder.search import gem_check
from gemfinder.search.gem import most_downloaded
from gemfinder.search.result import progress, result
from gemfinder.search.spec import CacheKeys, SearchSpec
from gemfinder.store import Store

log = logging.getLogger(__name__)


class SearchCancelled(Exception):
    """Raised by `run` when the search was cancelled; `.result` holds the partial result."""

    def __init__(self, partial: dict[str, Any]) -> None:
        super().__init__("search cancelled")
        self.result = partial


class SearchRunner:
    def __init__(
        self,
        search_id: str,
        spec: SearchSpec,
        oracle: Oracle,
        store: Store,
        *,
        scheduler: _core.Scheduler | None = None,
        bus: ev.EventBus | None = None,
        labels: metrics.EndpointLabels = metrics.ENDPOINT_LABELS,
        elapsed_s: float = 0.0,
        cached: int = 0,
        progress_interval_s: float = 0.2,
        snapshot_interval_s: float = 1.0,
        max_pending: int = 2048,
        sequential_batch: int = 32,
    ) -> None:
        self.search_id = search_id
        self.spec = spec
        self.oracle = oracle
        self.store = store
        self.sched = scheduler or spec.scheduler()
        self.bus = bus or ev.EventBus()
        self.keys = CacheKeys(spec)
        self.cached = cached
        self._labels = [labels(c.endpoint) for c in spec.candidates]
        self._start = time.monotonic() - elapsed_s
        self._cancel = asyncio.Event()
        self._progress_every = progress_interval_s
        self._snapshot_every = snapshot_interval_s
        # Pulls handed to the oracle at once: far more than any fleet's slots, so endpoints stay
        # busy, but bounded, so a round of a million pulls is not a million tasks in memory.
        self._max_pending = max_pending
        # Sequential algorithms (UCB, TTTS) choose each pull from the grades so far: asking for
        # more at once than the fleet runs in parallel would only blind them.
        self._sequential_batch = sequential_batch
        self._last_progress = self._last_snapshot = 0.0
        self._round = self.sched.round
        self._round_based = self.sched.round_based
        self._survivors = 0
        self._checked = 0  # gem-check answers graded in this run (progress only)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def cancel(self) -> None:
        self._cancel.set()

    def progress(self) -> dict[str, Any]:
        return progress(self.spec, self.sched, self.cached, self.elapsed, self._checked)

    def result(self) -> dict[str, Any]:
        outcomes = partial(self.store.outcomes, self.search_id)
        return result(self.spec, self.sched, self.cached, self.elapsed, outcomes)

    async def run(self) -> dict[str, Any]:
        """Run to the end; returns the result dict, raises SearchCancelled when cancelled."""
        pending: dict[asyncio.Task[OracleResult], tuple[int, int]] = {}
        cancel_wait = asyncio.ensure_future(self._cancel.wait())
        self._set_survivors()
        self._publish(ev.ROUND_STARTED, "running")
        try:
            while not self._cancel.is_set():
                window = self._max_pending if self._round_based else self._sequential_batch
                room = window - len(pending)
                pulls = [] if self.sched.finished or room <= 0 else self.sched.ask(room)
                hits = self._dispatch(pulls, pending)
                if hits:
                    self.store.put_answers(self.search_id, hits)
                    self._after_tells()
                    continue  # told from the cache: the scheduler may have more to hand out
                if not pending:
                    if self.sched.finished:
                        break
                    if not pulls:
                        raise RuntimeError("the scheduler handed out no pull and is not finished")
                    continue
                done, _ = await asyncio.wait(
                    [*pending, cancel_wait], return_when=asyncio.FIRST_COMPLETED
                )
                entries = []
                for task in done:
                    if task is cancel_wait:
                        continue
                    model, item = pending.pop(task)
                    entries += self._told(model, item, task.result())
                self.store.put_answers(self.search_id, entries)  # before a snapshot counts them
                self._after_tells()
        finally:
            await _abandon(pending, cancel_wait)
            metrics.SURVIVORS.dec(self._survivors)
            self._survivors = 0
        if self._cancel.is_set() and not self.sched.finished:
            raise SearchCancelled(self.result())
        await self._gem_check()
        self._snapshot()
        return self.result()

    async def _gem_check(self) -> None:
        """Ask the popular models the winner's items (search.gem_check) with the kept-back
        budget; stored as they arrive, so a crash loses only what is in flight."""
        winner = self.sched.recommendation
        if winner is None:
            return
        models = [winner, *most_downloaded(self.spec)]
        wanted = gem_check.plan(self.spec, winner, self.store.outcomes(self.search_id, models))
        queue = [(model, item) for model, items in wanted.items() for item in items]
        queue.reverse()  # popped from the end, in plan order
        pending: dict[asyncio.Task[OracleResult], tuple[int, int]] = {}
        cancel_wait = asyncio.ensure_future(self._cancel.wait())
        try:
            while (queue or pending) and not self._cancel.is_set():
                entries = []
                while queue and len(pending) < self._max_pending:
                    hit = self._send(*queue.pop(), pending)
                    entries += [hit] if hit else []
                if pending:
                    done, _ = await asyncio.wait(
                        [*pending, cancel_wait], return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in done:
                        if task is not cancel_wait:
                            model, item = pending.pop(task)
                            entries += self._graded(model, item, task.result())
                self._checked += len(entries)
                self.store.put_answers(self.search_id, entries)
                if time.monotonic() - self._last_progress >= self._progress_every:
                    self._publish(ev.PROGRESS, "running")
        finally:
            await _abandon(pending, cancel_wait)

    def _dispatch(self, pulls, pending) -> list[tuple[str, int, int, int]]:
        """Tell cache hits at once (returned, to record as pulls); send the rest to the oracle."""
        hits = []
        for model, item in pulls:
            hit = self._send(model, item, pending)
            if hit:
                self.sched.tell(model, item, bool(hit[3]))
                hits.append(hit)
        return hits

    def _send(self, model: int, item: int, pending) -> tuple[str, int, int, int] | None:
        """The cached answer (nothing is sent), or None after starting the query in `pending`."""
        key = self.keys(model, item)
        reward = self.store.cached(key)
        if reward is not None:
            self.cached += 1
            metrics.observe_cached(self._labels[model], reward)
            metrics.BUDGET_SPENT.inc()
            return (key, model, item, reward)
        metrics.QUERIES_SENT.labels(self._labels[model]).inc()
        task = asyncio.ensure_future(
            self.oracle.answer(
                self.spec.candidates[model],
                self.spec.items[item],
                system_prompt=self.spec.system_prompt,
            )
        )
        pending[task] = (model, item)
        return None

    def _graded(self, model: int, item: int, res: OracleResult) -> list[tuple[str, int, int, int]]:
        """The answer entry of a graded query; none for a failure, which is never a 0."""
        metrics.observe_result(self._labels[model], res)
        if res.reward is None:
            return []
        metrics.BUDGET_SPENT.inc()
        return [(self.keys(model, item), model, item, res.reward)]

    def _told(self, model: int, item: int, res: OracleResult) -> list[tuple[str, int, int, int]]:
        entries = self._graded(model, item, res)
        if entries:
            self.sched.tell(model, item, bool(res.reward))
        else:
            self.sched.tell_failed(model, item)
        return entries

    def _after_tells(self) -> None:
        now = time.monotonic()
        rnd = self.sched.round
        if rnd != self._round:
            self._round = rnd
            self._set_survivors()
            self._snapshot()
            self._publish(ev.ROUND_FINISHED, "running")
            if rnd is not None:
                self._publish(ev.ROUND_STARTED, "running")
        elif now - self._last_progress >= self._progress_every:
            self._publish(ev.PROGRESS, "running")
        if now - self._last_snapshot >= self._snapshot_every:
            self._snapshot()

    def _publish(self, kind: str, state: str) -> None:
        self._last_progress = time.monotonic()
        self.bus.publish(ev.Event(kind, self.progress(), state))

    def _set_survivors(self) -> None:
        count = len(self.sched.survivors())
        metrics.SURVIVORS.inc(count - self._survivors)
        self._survivors = count

    def _snapshot(self) -> None:
        self._last_snapshot = time.monotonic()
        self.store.save_snapshot(self.search_id, self.sched.snapshot())
        self.store.update_search(self.search_id, progress=self.progress())


async def _abandon(pending: dict[asyncio.Task[OracleResult], Any], cancel_wait) -> None:
    """Stop waiting: cancel the cancellation watcher and every query still in flight."""
    cancel_wait.cancel()
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
