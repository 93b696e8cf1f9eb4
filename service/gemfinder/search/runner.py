"""Drive one search: ask the Rust scheduler for pulls, answer them through an oracle, tell back.

Every pull the scheduler hands out (a whole round for round-based algorithms) is answered at
once by its own task; the oracle's per-endpoint semaphores bound what reaches each endpoint, so
a slow endpoint never holds back the others, and results are told as they arrive. A pull whose
answer is in the evaluation cache is told without touching an endpoint. Failures are told as
failures (the scheduler gives the query back), never as a 0.

When a search cannot give a meaningful recommendation it fails (SearchFailed, the reason naming
models and endpoints) instead of naming a winner:
- more queries failed than the search's budget (each pull is tried up to 3 times by the
  scheduler, each try up to 4 times by the oracle): the fleet is too broken to go on;
- the recommended model has no graded answer (every query to it failed);
- pulls of the recommended model were skipped after failing on every try, and counting them as
  wrong answers it would fall behind the next-ranked model with a graded answer (means under the
  candidates' priors when they have scores): it leads only because failures hid part of its
  evidence.
None of these can trigger when no query fails, so a search without failures picks as before.

The scheduler's asks and tells run on a worker thread (the core releases the GIL for them), one
at a time per search and awaited in order, so picks are the same as on the event loop: a TTTS
batch at the largest `max_resample` on a large pool takes milliseconds, which the loop must
spend on health checks and other RPCs instead (bench/speed/health_latency.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Any

from gemfinder import metrics
from gemfinder.oracles import Oracle, OracleResult
from gemfinder.oracles.base import answer_scope
from gemfinder.samples import Sample, sample
from gemfinder.search import events as ev
from gemfinder.search import gem_check
from gemfinder.search.gem import most_downloaded
from gemfinder.search.per_task import item_tasks
from gemfinder.search.pressure import LAG
from gemfinder.search.result import progress, result, with_per_task
from gemfinder.search.serving_cost import SearchCost, load_groups, pool_slots
from gemfinder.search.spec import AnyScheduler, CacheKeys, SearchSpec
from gemfinder.search.values import Progress, Result
from gemfinder.store import Store

log = logging.getLogger(__name__)


class SearchCancelled(Exception):
    """Raised by `run` when the search was cancelled; `.result` holds the partial result."""

    def __init__(self, partial: Result) -> None:
        super().__init__("search cancelled")
        self.result = partial


class SearchFailed(Exception):
    """Raised by `run` when the search cannot give a meaningful recommendation (see above)."""


SHOWN_ENDPOINTS = 5
# Pulls dispatched between two turns of the event loop (see _dispatch).
DISPATCH_SLICE = 64
# Smallest in-flight window while the event loop runs late (search.pressure).
MIN_WINDOW = 4
# A pull handed out by the scheduler: model, item, cache key, cached reward (None: not cached).
Pull = tuple[int, int, str, int | None]
# A graded pull, as the store records it: cache key, model, item, reward.
Answer = tuple[str, int, int, int]

# Scheduler calls of every search in this process. Two threads: the machine's cores; calls of
# one search never overlap (each is awaited before the next), so more would only contend.
_CORE_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gemfinder-core")


class SearchRunner:
    def __init__(
        self,
        search_id: str,
        spec: SearchSpec,
        oracle: Oracle,
        store: Store,
        *,
        scheduler: AnyScheduler | None = None,
        labels: metrics.EndpointLabels = metrics.ENDPOINT_LABELS,
        elapsed_s: float = 0.0,
        cached: int = 0,
        progress_interval_s: float = 0.2,
        snapshot_interval_s: float = 1.0,
        max_pending: int = 2048,
        sequential_batch: int = 32,
        owner: str | None = None,
        load_aware: bool = True,
        keys: CacheKeys | None = None,
    ) -> None:
        self.search_id = search_id
        # The replica holding this search's lease: its snapshot and progress writes are fenced
        # by it (gemfinder.store), so after a takeover they fail (LeaseLost) instead of landing.
        self.owner = owner
        self.spec = spec
        self.oracle = oracle
        self.store = store
        self.sched = scheduler or spec.scheduler()
        # Rounds grouped by endpoint, each model brought up once (issue #17); a fixed-confidence
        # search runs the certified elimination, which has no rounds to group.
        if load_aware and spec.epsilon is None:
            self.sched.set_load_groups(load_groups(spec.candidates, getattr(oracle, "configs", {})))
        # Each model's GPU pool: at most its slots of the pool's models in flight (`_take`).
        self._pools = pool_slots(spec.candidates, getattr(oracle, "configs", {}))
        self._pooled = any(name for name, _ in self._pools)
        # Who answers, per endpoint; `keys`: built already (SearchManager.start builds them off
        # the event loop: hashing every item's prompt takes ~15 ms at 400 items).
        self.keys = keys or cache_keys(spec, oracle)
        # GPU time and loads of the queries sent (cost.py), continued from what a run before a
        # restart stored; with a GPU-second cap, checked before each query (search.gpu_budget).
        self.cost = SearchCost.of(oracle, spec.candidates, spec.gpu_seconds)
        self.cost.restore(store.serving_ledger(search_id))
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
        if spec.gpu_seconds is not None or store.writes_behind:
            self._cap_window(oracle)
        # Queries in flight at most, shrunk while the event loop runs late (search.pressure).
        self._window = min(self._max_pending, self._sequential_batch)
        self._last_progress = self._last_snapshot = 0.0
        self._round = self.sched.round
        self._round_based = self.sched.round_based
        self._survivors = 0
        self._checked = 0  # gem-check answers, counted in progress and `spent`
        # Failures of this run by endpoint (for the reason of a failed search).
        self._failed_at: Counter[str] = Counter()
        self._failure_kinds: dict[str, Counter[str]] = {}
        self._skips: list[tuple[int, int]] = []  # skipped pulls not yet stored
        # The samples log (gemfinder.samples): graded queries not yet stored, and whether the
        # gem check is asking them.
        self._samples: list[Sample] = []
        self._checking = False
        # The scheduler call running on a worker thread, if any: while it runs, nothing else
        # touches the scheduler (PyO3 would refuse the borrow) and progress() is the last one.
        self._core_call: asyncio.Future[Any] | None = None
        self._progress: Progress | None = None
        # Adapters on demand (oracles.lora_runtime): the survivors' are claimed while the search
        # runs, let go of as their models are eliminated and when it ends, whatever the end.
        self._claim = getattr(oracle, "claim_adapters", None)
        self._release = getattr(oracle, "release_adapters", None)
        self._alive = set(self.sched.survivors())
        self._releases: list[asyncio.Task[None]] = []

    def _cap_window(self, oracle: Oracle) -> None:
        """Hand the oracle no more queries than the endpoints serve at once (the oracle's
        per-endpoint slots would queue the rest anyway). Under a GPU-second cap: a query in
        flight is reserved at an estimate, and how far the spend may pass the cap grows with
        their number (docs/service.md, "A budget in GPU-seconds"). On a store that writes
        behind: the endpoints go on answering what they were handed while the search waits for
        the writer (keep_up), and those answers, unstored, are what a kill -9 loses; a window
        of a whole round lost 123 answers past the bound (docs/service.md, Crash resume)."""
        limit = getattr(oracle, "concurrency", None)
        if limit is None:
            return
        try:
            total = sum(limit(url) for url in {c.endpoint for c in self.spec.candidates})
        except KeyError:  # an endpoint the oracle was not prepared for: no known limit
            return
        self._max_pending = max(1, min(self._max_pending, total))
        self._sequential_batch = max(1, min(self._sequential_batch, total))

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def spent(self) -> int:
        """Queries spent in all, the gem check's included (graded answers plus cache hits)."""
        return self.sched.spent + self._checked

    def progress(self) -> Progress:
        if self._progress is not None and self._core_call is not None:
            if not self._core_call.done():  # the scheduler is busy: the last figures
                return replace(self._progress, elapsed_s=self.elapsed, **self._gpu_progress())
        found = progress(self.spec, self.sched, self.cached, self.elapsed, self._checked)
        self._progress = replace(found, **self._gpu_progress())
        return self._progress

    def _gpu_progress(self) -> dict[str, float | None]:
        """The GPU-seconds spent so far beside the cap, for Progress (None: not accounted)."""
        if not self.cost.accounted:
            return {}
        return {"gpu_seconds": self.cost.accounted_s, "gpu_seconds_cap": self.spec.gpu_seconds}

    async def _core(self, call, *args):
        """Run one scheduler call on a worker thread, off the event loop. Shielded: when the
        search is cancelled (server shutdown) the call still ends, within its work bound
        (docs/search.md), and `progress` keeps answering from the last figures meanwhile."""
        loop = asyncio.get_running_loop()
        self._core_call = loop.run_in_executor(_CORE_THREADS, call, *args)
        return await asyncio.shield(self._core_call)

    async def result(self) -> Result:
        """The search's result, built on a worker thread (`_final`, through Store.off_loop so
        that its reads use the thread's read connection): ranking 1,000 models, the gem
        verdict's and the certificate's reads of the stored answers and the per-task ranking
        held the event loop for 16-39 ms of CPU as each search ended (docs/service.md, "Health
        under load"). While it runs, progress() answers from the last figures, as during a
        scheduler call."""
        self._core_call = asyncio.ensure_future(
            self.store.off_loop(
                _final, self.store, self.search_id, self.spec, self.sched, self.cached, self.elapsed
            )
        )
        found = await asyncio.shield(self._core_call)
        return replace(found, cost=self.cost.cost())

    @property
    def capped(self) -> bool:
        """The GPU-second cap stopped the search: nothing more is sent."""
        return self.cost.stopped_by_cap

    async def run(self) -> Result:
        """Run to the end; returns the result, raises SearchCancelled when cancelled. Its
        adapters registered on demand are let go of however it ends (cancelled, failed,
        stopped by a shutdown): unregistered unless another search uses them."""
        if self._claim is not None:
            self._claim([self.spec.candidates[m] for m in sorted(self._alive)])
        try:
            return await self._run()
        finally:
            await self._release_all()

    async def _run(self) -> Result:
        pending = _InFlight(self._cancel)
        LAG.start()
        self._set_survivors()
        self._publish(ev.ROUND_STARTED, "running")
        try:
            # Pulls handed out but not sent yet: asked for in whole batches (cache hits are told
            # without a query, so they need no room), sent as the window allows.
            held: deque[Pull] = deque()
            largest = self._max_pending if self._round_based else self._sequential_batch
            while not self._cancel.is_set():
                if self.capped:  # handed out, never sent: the cap stopped the search
                    held.clear()
                elif not held and not self.sched.finished and len(pending) < largest:
                    asked = await self._core(self.sched.ask, largest - len(pending))
                    held.extend(self._looked_up(asked))
                room = self._next_window() - len(pending)
                pulls = self._take(held, max(room, 0), pending)
                hits = await self._dispatch(pulls, pending)
                if self.capped:
                    held.clear()
                if hits:
                    # Stored before the (awaited) tell: a stop during the tell loses no answer.
                    self.store.put_answers(self.search_id, hits)
                    await self.store.keep_up(self.search_id)
                    self._log_samples()
                    await self._core(self.sched.tell_many, [(m, i, bool(r)) for _, m, i, r in hits])
                    self._after_tells()
                    continue  # told from the cache: the scheduler may have more to hand out
                if not pending:
                    if (self.sched.finished or self.capped) and not held:
                        break
                    if not pulls:
                        raise RuntimeError("the scheduler handed out no pull and is not finished")
                    continue
                entries, told = [], []
                for model, item, res in await pending.answered():
                    graded = self._graded(model, item, res)
                    entries += graded
                    # A failure is told as such (None), never as a wrong answer.
                    told.append((model, item, bool(graded[0][3]) if graded else None))
                # Before the tell, so before a snapshot counts them, and a stop (shutdown, lost
                # lease) while the tell runs loses none of these paid answers.
                self.store.put_answers(self.search_id, entries)
                await self.store.keep_up(self.search_id)
                self._save_ledger()
                self._log_samples()
                # Pulls that failed on every try: the model loses the item.
                self._skips += await self._core(self.sched.tell_many, told)
                self.store.put_skipped(self.search_id, self._skips)
                self._skips.clear()
                self._check_failures()
                self._after_tells()
        finally:
            await pending.abandon()
            metrics.SURVIVORS.dec(self._survivors)
            self._survivors = 0
        if self._cancel.is_set() and not self.sched.finished:
            raise SearchCancelled(await self.result())
        self._check_recommendation()
        if not self.capped:  # the cap is spent: no gem check
            await self._gem_check()
        self._snapshot()
        if self._cancel.is_set():  # cancelled during the gem check: the verdict is unfinished
            raise SearchCancelled(await self.result())
        return await self.result()

    def _next_window(self, largest: int | None = None) -> int:
        """Queries this search may have in flight now: its batch size (or `largest`), less
        while the event loop runs late, so that RPCs keep getting turns (search.pressure)."""
        if largest is None:
            largest = self._max_pending if self._round_based else self._sequential_batch
        self._window = LAG.window(self._window, largest, min(MIN_WINDOW, largest))
        return self._window

    async def _gem_check(self) -> None:
        """Ask the popular models the winner's items (search.gem_check) with the kept-back
        budget; stored as they arrive, so a crash loses only what is in flight."""
        winner = self.sched.recommendation
        if winner is None:
            return
        popular = most_downloaded(self.spec)
        # Off the loop (Store.off_loop): every answer of this search was stored before.
        outcomes = await self.store.off_loop(
            self.store.outcomes, self.search_id, [winner, *popular]
        )
        wanted = gem_check.plan(self.spec, winner, outcomes)
        # What a run before a crash already paid for, measured as the result measures it.
        seen = {r.model: r.seen for r in self.sched.ranking() if r.model in popular}
        self._checked = gem_check.spent(seen, outcomes)
        planned = [(model, item) for model, items in wanted.items() for item in items]
        queue = deque(self._looked_up(planned))
        pending = _InFlight(self._cancel)
        self._checking = True
        try:
            while (queue or pending) and not self._cancel.is_set():
                if self.capped:
                    queue.clear()
                # As the search sends (`_take`): at most a GPU pool's slots of its models in
                # flight, so that the check's queries never make the pool swap models.
                room = self._next_window(self._max_pending) - len(pending)
                entries = await self._dispatch(self._take(queue, max(room, 0), pending), pending)
                if self.capped:
                    queue.clear()
                if pending:
                    for model, item, res in await pending.answered():
                        entries += self._graded(model, item, res)
                self._checked += len(entries)
                self.store.put_answers(self.search_id, entries)
                await self.store.keep_up(self.search_id)
                self._save_ledger()
                self._log_samples()
                if time.monotonic() - self._last_progress >= self._progress_every:
                    self._publish(ev.PROGRESS, "running")
        finally:
            await pending.abandon()

    def _looked_up(self, pulls: list[tuple[int, int]]) -> list[Pull]:
        """The pulls (model, item) of one batch with their cache keys and cached rewards, found
        in one store call: on PostgreSQL a round trip that holds the event loop, so one per
        batch rather than one per pull."""
        keys = [self.keys(model, item) for model, item in pulls]
        found = self.store.cached_many(keys)
        return [
            (model, item, key, found.get(key))
            for (model, item), key in zip(pulls, keys, strict=True)
        ]

    def _take(self, held: deque[Pull], room: int, pending: _InFlight) -> list[Pull]:
        """Up to `room` held pulls, in order. A query to a model of a GPU pool waits while
        `slots` other models of that pool have queries in flight: the pool would take one of
        them down for it and bring it back after, thrashing, where the accounting (which serves
        queries in the order sent) and the load-aware order have the models one after another.
        The pulls behind it wait too; with nothing in flight the first always goes."""
        if not self._pooled:
            return [held.popleft() for _ in range(min(room, len(held)))]
        active: dict[str, set[int]] = {}
        for model in pending.models:
            name, _ = self._pools[model]
            if name:
                active.setdefault(name, set()).add(model)
        out: list[Pull] = []
        while held and len(out) < room:
            model, reward = held[0][0], held[0][3]
            name, slots = self._pools[model]
            if name and reward is None:  # a cache hit sends nothing
                models = active.setdefault(name, set())
                if model not in models and len(models) >= slots:
                    break
                models.add(model)
            out.append(held.popleft())
        return out

    async def _dispatch(self, pulls: list[Pull], pending: _InFlight) -> list[Answer]:
        """The cache hits (to tell, in pull order, and record); the rest go to the oracle.
        A round hands out up to 2,048 pulls: the loop gets a turn every DISPATCH_SLICE of them,
        so that a health check never waits for a whole round."""
        hits = []
        for n, pull in enumerate(pulls, 1):
            hit = self._send(*pull, pending)
            if hit:
                hits.append(hit)
            if n % DISPATCH_SLICE == 0:
                await asyncio.sleep(0)
        return hits

    def _send(
        self, model: int, item: int, key: str, reward: int | None, pending: _InFlight
    ) -> Answer | None:
        """The cached answer (`reward` found by `_looked_up`: nothing is sent), or None after
        starting the query in `pending`."""
        if reward is not None:
            self.cached += 1
            metrics.observe_cached(self._labels[model], reward)
            metrics.BUDGET_SPENT.inc()
            self._samples.append(
                sample(model, item, key, self.keys.prompt_hashes[item], reward, cached=True,
                       gem_check=self._checking)
            )  # fmt: skip
            return (key, model, item, reward)
        if self.capped or self.cost.would_pass(self.spec.candidates[model]):
            if not self.capped:
                log.info(
                    "search %s: stopped by its GPU-second cap (%.1f of %.1f spent)",
                    self.search_id, self.cost.spent, self.spec.gpu_seconds,
                )  # fmt: skip
                metrics.SEARCHES_GPU_CAPPED.inc()
            self.cost.stopped_by_cap = True
            return None  # not sent: the loops see `capped` and stop
        metrics.QUERIES_SENT.labels(self._labels[model]).inc()
        self.cost.sent(self.spec.candidates[model])
        task = asyncio.ensure_future(
            self.oracle.answer(
                self.spec.candidates[model],
                self.spec.items[item],
                system_prompt=self.spec.system_prompt,
            )
        )
        pending.add(task, model, item)
        return None

    def _graded(self, model: int, item: int, res: OracleResult) -> list[Answer]:
        """The answer entry of a graded query; none for a failure, which is never a 0."""
        metrics.observe_result(self._labels[model], res)
        self.cost.answered(self.spec.candidates[model], res.service_s if res.ok else None)
        if res.reward is None:
            url = self.spec.candidates[model].endpoint
            self._failed_at[url] += 1
            kind = res.failure.value if res.failure is not None else "unknown"
            self._failure_kinds.setdefault(url, Counter())[kind] += 1
            return []
        metrics.BUDGET_SPENT.inc()
        key = self.keys(model, item)
        self._samples.append(
            sample(model, item, key, self.keys.prompt_hashes[item], res.reward,
                   gem_check=self._checking, response=res.response, extracted=res.extracted)
        )  # fmt: skip
        return [(key, model, item, res.reward)]

    def _log_samples(self) -> None:
        """Store the graded queries told since the last call (after their answers)."""
        if self._samples:
            self.store.put_samples(self.search_id, self._samples)
            self._samples = []

    # when a search cannot recommend ----------------------------------------------------------
    def _failing(self, models: list[int] | None = None) -> str:
        """The endpoints that failed, worst first: '<url> (<n> failed: <kinds>)'; with `models`,
        only theirs. Endpoints of models with skipped pulls stand in after a restart."""
        urls = {self.spec.candidates[m].endpoint for m in models} if models is not None else None
        counts = Counter({u: n for u, n in self._failed_at.items() if urls is None or u in urls})
        for model in self.store.skipped(self.search_id):
            url = self.spec.candidates[model].endpoint
            if (urls is None or url in urls) and url not in counts:
                counts[url] = 0
        parts = []
        for url, n in counts.most_common(SHOWN_ENDPOINTS):
            kinds = ", ".join(k for k, _ in self._failure_kinds.get(url, Counter()).most_common())
            parts.append(f"{url} ({n} failed: {kinds})" if n else f"{url} (pulls skipped)")
        more = len(counts) - SHOWN_ENDPOINTS
        return "; ".join(parts) + (f" and {more} more" if more > 0 else "") or "none recorded"

    def _check_failures(self) -> None:
        """Stop once more queries failed than the search may spend: retries and skips give
        failed queries back, so without this cap a dead fleet is asked again and again."""
        failed, budget = self.sched.failed, self.sched.budget
        if failed > budget:
            raise SearchFailed(
                f"stopped after {failed:,} failed queries, more than the search's budget of "
                f"{budget:,} ({self.sched.spent:,} answered); failing endpoints: {self._failing()}"
            )

    def _check_recommendation(self) -> None:
        """Raise SearchFailed when failures leave the recommendation meaningless (see the
        module docstring); never when no pull of the recommended model was lost."""
        ranking = self.sched.ranking()
        if not ranking:
            return
        winner = self.sched.recommendation
        best = next(r for r in ranking if r.model == winner) if winner is not None else ranking[0]
        cand = self.spec.candidates[best.model]
        if best.seen == 0:
            raise SearchFailed(
                f"no meaningful recommendation: the top-ranked model {cand.model_id} has no "
                f"graded answer ({self.sched.failed:,} queries failed, {self.sched.spent:,} "
                f"answered); failing endpoints: {self._failing()}"
            )
        lost = self.store.skipped(self.search_id).get(best.model, 0)
        rival = next((r for r in ranking if r.model != best.model and r.seen > 0), None)
        if not lost or rival is None:
            return
        # Means as the search ranks them: under each model's prior when candidates have scores.
        priors = self.spec.priors() or [(0.0, 0.0)] * len(self.spec.candidates)

        def mean(model: int, successes: int, n: int) -> float:
            a, b = priors[model]
            return (a + successes) / (a + b + n)

        worst = mean(best.model, best.successes, best.seen + lost)
        if worst < mean(rival.model, rival.successes, rival.seen):
            other = self.spec.candidates[rival.model].model_id
            raise SearchFailed(
                f"no meaningful recommendation: {cand.model_id} ranks first at "
                f"{best.successes}/{best.seen} graded answers, but {lost} of its queries failed "
                f"on every try at {self._failing([best.model])}; counted as wrong it would "
                f"fall behind {other} ({rival.successes}/{rival.seen}). Fix the endpoint or "
                "leave the model out and run again (graded answers are cached)"
            )

    def _after_tells(self) -> None:
        now = time.monotonic()
        rnd = self.sched.round
        if rnd != self._round:
            self._round = rnd
            self._set_survivors()
            self._release_eliminated()
            self._snapshot()
            self._publish(ev.ROUND_FINISHED, "running")
            if rnd is not None:
                self._publish(ev.ROUND_STARTED, "running")
        elif now - self._last_progress >= self._progress_every:
            self._publish(ev.PROGRESS, "running")
        if now - self._last_snapshot >= self._snapshot_every:
            self._snapshot()

    def _publish(self, kind: str, state: str) -> None:
        """Append an event to the search's log (search.events), fenced by the lease."""
        self._last_progress = time.monotonic()
        self.store.put_event(self.search_id, kind, self.progress(), state, owner=self.owner)

    def _release_eliminated(self) -> None:
        if self._release is None:
            return
        alive = set(self.sched.survivors())
        gone = [self.spec.candidates[m] for m in sorted(self._alive - alive)]
        self._alive = alive
        if gone:
            self._releases.append(asyncio.ensure_future(self._release(gone)))

    async def _release_all(self) -> None:
        """The search is over: the adapters it still claims are let go of (see `run`)."""
        if self._release is None:
            return
        await asyncio.gather(*self._releases, return_exceptions=True)
        alive, self._alive = self._alive, set()
        await self._release([self.spec.candidates[m] for m in sorted(alive)])

    def _set_survivors(self) -> None:
        count = len(self.sched.survivors())
        metrics.SURVIVORS.inc(count - self._survivors)
        self._survivors = count

    def _save_ledger(self) -> None:
        """Store the serving-cost ledger of the endpoints that changed (fenced by the lease):
        after the answers it paid for, so that a resumed search, to which they are cache hits,
        still counts what they cost."""
        changed = self.cost.changed()
        if changed:
            self.store.save_serving_ledger(self.search_id, changed, owner=self.owner)

    def _snapshot(self) -> None:
        self._last_snapshot = time.monotonic()
        self._save_ledger()
        self.store.save_snapshot(self.search_id, self.sched.snapshot(), owner=self.owner)
        self.store.update_search(self.search_id, progress=self.progress(), owner=self.owner)


def cache_keys(spec: SearchSpec, oracle: Oracle) -> CacheKeys:
    return CacheKeys(spec, partial(answer_scope, oracle))


def _final(
    store: Store, search_id: str, spec: SearchSpec, sched: AnyScheduler, cached: int, elapsed: float
) -> Result:
    """The result of an ended search, less its cost; on a worker thread (SearchRunner.result).
    Safe there because nothing it reads changes meanwhile: the run has ended, so no ask or tell
    is in flight or starts (each is awaited before the next, and none follows the result); the
    scheduler methods used here only read it, and progress() on the loop answers from its last
    figures meanwhile; the spec is set up before the search starts and not changed after;
    `cached` and `elapsed` were read on the loop; every answer of this search was stored before
    (put_answers commits before it returns) and no more are written, so the reads see them all."""
    found = result(spec, sched, cached, elapsed, partial(store.outcomes, search_id))
    if len(spec.task_items()) > 1:
        # Counted by the store and ranked per task: 0.4 s of SQL and 0.8 s of CPU at 5,000
        # models, which on the loop stalled every RPC of the server as a search ended.
        counts = store.task_counts(search_id, item_tasks(spec)[1])
        found = with_per_task(found, spec, counts)
    return found


class _InFlight:
    """Queries in flight, handed back in the order they finish: O(1) per answer, where
    asyncio.wait over every pending task costs O(in flight) per wake (four searches with 2,048
    pulls in flight each kept the loop busy and delayed health checks by half a second)."""

    def __init__(self, cancel: asyncio.Event) -> None:
        self.pulls: dict[asyncio.Task[OracleResult], tuple[int, int]] = {}
        self.models: Counter[int] = Counter()  # queries in flight per model
        self._done: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
        self._cancel_wait = asyncio.ensure_future(cancel.wait())
        self._cancel_wait.add_done_callback(self._done.put_nowait)

    def __len__(self) -> int:
        return len(self.pulls)

    def add(self, task: asyncio.Task[OracleResult], model: int, item: int) -> None:
        self.pulls[task] = (model, item)
        self.models[model] += 1
        task.add_done_callback(self._done.put_nowait)

    async def answered(self) -> list[tuple[int, int, OracleResult]]:
        """Wait for an answer (or the cancellation); every answer in by then, in order."""
        finished = [await self._done.get()]
        while not self._done.empty():
            finished.append(self._done.get_nowait())
        out = []
        for task in finished:
            pull = self.pulls.pop(task, None)  # type: ignore[arg-type]
            if pull is not None:
                out.append((*pull, task.result()))
                self.models[pull[0]] -= 1
                if not self.models[pull[0]]:
                    del self.models[pull[0]]
        return out

    async def abandon(self) -> None:
        """Stop waiting: cancel the cancellation watcher and every query still in flight."""
        self._cancel_wait.cancel()
        for task in self.pulls:
            task.cancel()
        if self.pulls:
            await asyncio.gather(*self.pulls, return_exceptions=True)
