"""Long-running searches: start (idempotent by request id), get, watch, cancel, list, resume.

A request id names one search: the same id with the same spec (equal digests, see
SearchSpec.digest) returns that search, with another spec it is a UserError naming
`request_id` (as Google AIP-155 describes request ids), never another search.

One manager per server process (a replica). It persists every search before it runs, keeps one
runner task per running search, and resumes unfinished searches from their last snapshot (pulls
whose answers were lost go back to the queue and mostly hit the evaluation cache).

Replicas sharing a database (docs/service.md, Replicas): each running search is leased to one
replica (gemfinder.store). Every third of the lease, a replica renews all its leases in one
statement and claims, up to its free places, the searches whose lease is free or expired: at
start its own and those of a replica gone, later those of a replica that died (after its lease
expired) or shut down (it released them, so at once). A runner whose lease was taken over stops
quietly: its fenced writes fail (LeaseLost), and no failure is recorded. The request id is
unique in the database, so two replicas starting the same request id at once make one search:
the second insert fails (RequestTaken) and attaches to the first. A cancel through any replica
is stored with the search (cancel_requested): its owner reads it at its next renewal and
cancels; a search with no live owner is cancelled by whichever replica claims it (`cancel`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gemfinder import _core, metrics, provenance
from gemfinder.errors import UserError
from gemfinder.lora_leases import LoraLeases
from gemfinder.oracles import Oracle
from gemfinder.oracles.allowlist import ANY_ENDPOINT, EndpointAllowlist, EndpointNotAllowed
from gemfinder.oracles.preflight import CandidateProblems, allow_unreachable
from gemfinder.search import events as ev
from gemfinder.search import gpu_budget, incremental
from gemfinder.search.runner import SearchCancelled, SearchFailed, SearchRunner, cache_keys
from gemfinder.search.spec import AnyScheduler, CacheKeys, SearchSpec, spec_digest
from gemfinder.search.values import Progress, Result
from gemfinder.store import LeaseLost, RequestTaken, SearchRow, Store
from gemfinder.tasks.lmeval import TASK_KIND, patterns

log = logging.getLogger(__name__)
FINISHED = ("succeeded", "failed", "cancelled")
LEASE_S = 15.0


def default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class SearchNotFound(LookupError):
    kind = "not_found"

    def __init__(self, search_id: str) -> None:
        super().__init__(f"no search with id {search_id!r}")


class TooManySearches(RuntimeError):
    kind = "resource_exhausted"


class ReplicaStopping(RuntimeError):
    """This replica is shutting down: a Watch or a SelectBestModel waiting here ends at once,
    so that the client goes on at another replica (its retry policy, or a watch resumed with
    after_sequence) instead of waiting out the grace period."""

    kind = "unavailable"


@dataclass
class _Live:
    runner: SearchRunner
    task: asyncio.Task[None]


def restore(data: bytes) -> AnyScheduler:
    """A stored search's scheduler: fixed-confidence snapshots carry their own header."""
    if data.startswith(b"GEMFNC"):
        return _core.CertifiedScheduler.restore(data)
    return _core.Scheduler.restore(data)


def _encoded(
    spec: SearchSpec, run_spec: SearchSpec, oracle: Oracle
) -> tuple[dict[str, Any], CacheKeys]:
    """What starting a search computes from its spec alone: the JSON stored (the spec as asked)
    and the cache keys (of the spec run: the same candidates and items, its budget planned)."""
    return spec.to_dict(), cache_keys(run_spec, oracle)


async def _json(result: Result) -> str:
    """A result's stored JSON, encoded on a worker thread: at 1,000 models it holds up to 7
    estimates per model (1 MB), ~20 ms of CPU the loop spends on RPCs instead. Safe: a Result
    is frozen, and this one is the ended runner's own."""
    return await asyncio.to_thread(lambda: json.dumps(result.to_json()))


class SearchManager:
    def __init__(
        self,
        store: Store,
        oracle: Oracle,
        *,
        max_active: int = 8,
        allowlist: EndpointAllowlist = ANY_ENDPOINT,
        replica_id: str = "",
        lease_s: float = LEASE_S,
        lm_eval_include: tuple[str, ...] | None = None,
    ) -> None:
        self.store = store
        # The server's --lm-eval-include: inline lm_eval items resumed from the store are held
        # to the regex rule requests are (tasks.lmeval.patterns); None (the local CLI): any.
        self.lm_eval_include = lm_eval_include
        self.replica_id = replica_id or default_replica_id()
        self.lease_s = lease_s
        self.oracle = oracle
        self.max_active = max_active
        # The server passes the operator's (oracles.allowlist); the local CLI's user is the
        # operator and may name any endpoint.
        self.allowlist = allowlist
        self._live: dict[str, _Live] = {}
        self._events = ev.EventFollower(store)  # every watch here reads the stored log
        # Adapters on demand: the endpoints' caps shared with the other replicas of the store.
        share = getattr(oracle, "share_adapters", None)
        if share is not None:
            share(LoraLeases(store, self.replica_id, lease_s))
        self._stopping = asyncio.Event()  # set by stop_serving: waits and watches end
        self._starting: dict[str, asyncio.Future[None]] = {}  # request id -> start in progress
        self._admitted = 0  # starts past the max_active check whose endpoints are being checked
        self._resuming = 0  # claimed searches being resumed
        self._opening: set[str] = set()  # ids being resumed (a take_over and a cancel may race)
        self._lost: set[str] = set()  # live searches whose lease another replica took
        self._leases: asyncio.Task[None] | None = None  # the lease loop (_keep_leases)
        self._renewed: float | None = None  # monotonic time of the last renewal holding any
        metrics.LEASE_AGE.set_function(self._lease_age)
        provenance.environment()  # once per process (a git call), now rather than in a request

    # lifecycle ------------------------------------------------------------------------------
    async def resume_all(self) -> list[str]:
        """Claim and resume what this replica may take now, then keep doing so every tick."""
        resumed = await self.take_over()
        self._keep_ticking()
        return resumed

    @property
    def tick_s(self) -> float:
        return self.lease_s / 3

    def _keep_ticking(self) -> None:
        if self._leases is None or self._leases.done():
            self._leases = asyncio.create_task(self._keep_leases(), name="search-leases")

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                self.renew()
                await self.take_over()
            except Exception as err:  # noqa: BLE001 - e.g. the database unreachable: next tick
                log.warning("replica %s: leases not renewed: %s", self.replica_id, err)

    def renew(self) -> None:
        """Extend this replica's leases; stop the runners of searches another replica took, and
        cancel those a CancelSearch on another replica asked to cancel."""
        held = self.store.renew(self.replica_id, self.lease_s)
        self._renewed = time.monotonic() if held else None
        for sid, live in list(self._live.items()):
            if sid not in held and sid not in self._lost:
                log.warning("search %s: lease taken over by another replica; stopping here", sid)
                self._lost.add(sid)
                live.task.cancel()
            elif held.get(sid) and not live.runner.cancelled:
                log.info("search %s: cancel requested (through another replica)", sid)
                live.runner.cancel()

    def _lease_age(self) -> float:
        return 0.0 if self._renewed is None else time.monotonic() - self._renewed

    async def take_over(self) -> list[str]:
        """Claim and resume, up to the free places, searches whose lease is free or expired."""
        room = self.max_active - len(self._live) - self._admitted - self._resuming
        if room <= 0:
            return []
        resumed: list[str] = []
        # Our own running searches are claimable too (owner = me): asked for on top of the room,
        # and passed over.
        for sid, previous in self.store.claimable(self.replica_id, room + len(self._live)):
            if sid in self._live or len(resumed) >= room:
                continue
            row = self.store.claim(sid, self.replica_id, self.lease_s)
            if row is None:
                continue  # another replica was faster
            if previous is not None and previous != self.replica_id:
                metrics.LEASE_TAKEOVERS.labels("expired").inc()
                log.info("search %s: lease of replica %s expired; taken over", sid, previous)
            elif previous is None:
                metrics.LEASE_TAKEOVERS.labels("released").inc()
            self._resuming += 1
            try:
                if await self._resume(row):
                    resumed.append(sid)
            except LeaseLost:
                log.info("search %s: lease lost while resuming", sid)
            finally:
                self._resuming -= 1
            # Resuming probes endpoints: taking over many searches can outlast a lease, so the
            # leases held are renewed on the way, not only at the next tick.
            self.renew()
        return resumed

    async def _inline_pattern(self, spec: SearchSpec) -> str | None:
        """`field: reason` for the first regular expression of an inline lm_eval item that a
        request could not name today, or None."""
        if self.lm_eval_include is None or spec.query_set is not None:  # not inline
            return None
        if not any(it.task == TASK_KIND for it in spec.items):
            return None
        allowed = await asyncio.to_thread(patterns.allowed, self.lm_eval_include)
        for i, item in enumerate(spec.items):
            bad = item.task == TASK_KIND and patterns.check(item.fields, allowed)
            if bad:
                return f"spec.query_set.inline.items[{i}].fields_json.{bad[0]}: {bad[1]}"
        return None

    async def resume(self, row: SearchRow) -> bool:
        """Claim an unfinished search's lease and restart it from its last snapshot; False when
        another replica holds it, or it failed instead."""
        if row.id in self._live or row.id in self._opening:
            return False  # already running, or being resumed, here
        claimed = self.store.claim(row.id, self.replica_id, self.lease_s)
        return claimed is not None and await self._resume(claimed)

    async def _resume(self, row: SearchRow) -> bool:
        """Restart a search this replica has claimed; False when it failed instead, or is
        being resumed here already."""
        if row.id in self._live or row.id in self._opening:
            return False
        self._opening.add(row.id)
        try:
            return await self._restart(row)
        finally:
            self._opening.discard(row.id)

    async def _restart(self, row: SearchRow) -> bool:
        spec = SearchSpec.from_dict(row.spec)
        bad = await self._inline_pattern(spec)
        if bad is not None:
            # Stored by an older version, which took any regular expression: one that backtracks
            # for ever would freeze this process too, as it froze the last.
            error = f"on resume: {bad} (stored by an older version)"
            log.warning("search %s not resumed: %s", row.id, error)
            self.store.update_search(row.id, state="failed", error=error, owner=self.replica_id)
            return False
        data = self.store.load_snapshot(row.id)
        try:
            # The query budget its GPU-second cap bought at start (replays: off the loop).
            if spec.gpu_seconds is not None:
                spec = await asyncio.to_thread(self._planned, spec)
        except UserError as err:  # the operator's cost models changed since: say so
            error = f"on resume: {err.field}: {err.reason}"
            self.store.update_search(row.id, state="failed", error=error, owner=self.replica_id)
            return False
        try:
            sched = restore(data) if data else spec.scheduler()
        except _core.SearchError as err:
            # Stored by an older version that accepted a value this one refuses (such as
            # max_resample 1e300, which made one scheduler call loop for hours): failed with
            # the reason, never resumed, never clamped into another search than was asked.
            field = f"spec.{err.field}" if err.field else "spec"
            error = (
                f"on resume: {field}: {err.reason} (stored by an older version; start the search "
                "again with values in range, see docs/search.md)"
            )
            log.warning("search %s not resumed: %s", row.id, error)
            self.store.update_search(row.id, state="failed", error=error, owner=self.replica_id)
            return False
        sched.release_in_flight()
        progress = row.progress or Progress()
        try:
            # The operator may have withdrawn an endpoint since: never connect to it again.
            self._check_allowed(spec)
            # The search was accepted: an endpoint down across the restart is the runner's
            # business (failures, then the recommendation rule), not a reason to fail it here.
            with allow_unreachable():
                await self.oracle.prepare(spec.candidates)
        except Exception as err:  # noqa: BLE001 - an endpoint gone for good fails the search
            self.store.update_search(
                row.id, state="failed", error=f"on resume: {err}", owner=self.replica_id
            )
            return False
        self._launch(
            row.id,
            spec,
            sched,
            elapsed_s=progress.elapsed_s,
            cached=progress.cached,
        )
        metrics.SEARCHES_RESUMED.inc()
        log.info("search %s resumed: %d of %d queries spent", row.id, sched.spent, spec.budget)
        # Counters restart with the process: grant what is left here, so that spent <=
        # allocated holds in every process (the budget-overrun alert relies on it).
        metrics.BUDGET_ALLOCATED.inc(spec.budget - sched.spent)
        if spec.gpu_seconds is not None:
            spent = sum(
                e.get("gpu_seconds", 0.0) for e in self.store.serving_ledger(row.id).values()
            )
            metrics.GPU_BUDGET_ALLOCATED.inc(max(spec.gpu_seconds - spent, 0.0))
        return True

    def _planned(self, spec: SearchSpec) -> SearchSpec:
        """`spec` with the query budget its GPU-second cap buys (search.gpu_budget)."""
        if spec.gpu_seconds is None:
            return spec
        return gpu_budget.planned(spec, getattr(self.oracle, "configs", {}))

    def stop_serving(self) -> None:
        """The first step of a graceful shutdown: end every Watch and wait with UNAVAILABLE
        (ReplicaStopping) so their clients go to another replica; searches run on until
        `close`."""
        self._stopping.set()

    async def unless_stopping(self, awaitable: Any) -> Any:
        """`awaitable`'s result, or ReplicaStopping as soon as stop_serving is called (the
        work is cancelled: a start either made its search, which a retry of its request id
        finds, or nothing)."""
        work = asyncio.ensure_future(awaitable)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if work.done():
            return work.result()
        work.cancel()
        raise ReplicaStopping(f"replica {self.replica_id} is shutting down; call another")

    async def close(self, release: bool = True) -> None:
        """Stop runners without marking them cancelled, so they resume: on another replica at
        once (their leases are released), or here on the next start. `release=False` leaves
        the leases to expire, as a crash would (tests)."""
        tasks = [live.task for live in self._live.values()]
        if self._leases is not None:
            tasks.append(self._leases)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._events.close()
        if not release:
            return
        try:
            released = self.store.release(self.replica_id)
        except Exception as err:  # noqa: BLE001 - shutdown goes on; the leases expire instead
            log.warning("replica %s: leases not released (they expire): %s", self.replica_id, err)
            return
        if released:
            log.info("replica %s released %d leases", self.replica_id, released)

    # rpc-level operations --------------------------------------------------------------------
    async def start(
        self,
        spec: SearchSpec,
        request_id: str | None = None,
        planned: SearchSpec | None = None,
    ) -> SearchRow:
        """Start the search of `spec` (or attach to the one `request_id` names). `planned`:
        `spec` with its budget planned from its GPU-second cap by the caller already
        (search.gpu_budget.planned with this manager's oracle's configs), which is then not
        replayed again; ignored for an incremental spec (its narrowed pool is planned here)."""
        # Before anything else: no connection to an endpoint the operator did not allow.
        self._check_allowed(spec)
        if spec.ask is not None:
            planned = None  # the current tree -> the parent's top and the newcomers
            # On a worker thread: it reads the parent back (its result and spec parsed, tens of
            # ms at 1,000 models); this spec is the call's own (Store.off_loop).
            spec = await self.store.off_loop(incremental.narrow, self.store, spec)
        # Before anything is stored: a cap too small is refused. Replays of the search (up to
        # a second or so, search.gpu_budget): off the event loop, and before the wait below,
        # which must not be followed by an await until this start holds its request id.
        run_spec = spec
        if planned is not None and spec.gpu_seconds is not None:
            run_spec = planned
        elif spec.gpu_seconds is not None:
            run_spec = await asyncio.to_thread(self._planned, spec)
        # One request id, one search, even under concurrent retries: a start with the id of a
        # start in progress waits for it, then attaches to its search (or starts afresh if it
        # failed). No lock is held while endpoints are probed, so starts run concurrently.
        while request_id and request_id in self._starting:
            await asyncio.wait([self._starting[request_id]])
        if request_id:
            existing = self.store.find_request(request_id)
            if existing is not None:
                if spec_digest(existing.spec) != spec.digest():
                    raise UserError(
                        "request_id",
                        f"{request_id!r} already names search {existing.id} with another "
                        "spec; resend that spec to attach to it, or use a new request_id",
                    )
                return await self.fetch(existing.id)
        if len(self._live) + self._admitted >= self.max_active:
            raise TooManySearches(f"{self.max_active} searches are running; retry later")
        self._admitted += 1  # holds its place while its endpoints are checked
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if request_id:
            self._starting[request_id] = done
        try:
            await self._prepare(spec)
            # The spec's JSON and its cache keys (every prompt built and hashed) take ~20 ms
            # of CPU at 1,000 models x 400 items: on a worker thread, so the loop keeps serving
            # RPCs. Safe: this spec is this call's own (no runner holds it yet) and the oracle
            # is only read (each endpoint's cache scope).
            stored, keys = await asyncio.to_thread(_encoded, spec, run_spec, self.oracle)
            try:
                search_id = uuid.uuid4().hex
                self.store.create_search(
                    search_id,
                    request_id or None,
                    stored,
                    owner=self.replica_id,
                    lease_s=self.lease_s,
                    provenance=provenance.of_search(spec.items),
                )
                self._launch(search_id, run_spec, run_spec.scheduler(), keys=keys)
            except BaseException:
                await self.oracle.release(spec.candidates)
                raise
        except RequestTaken:
            # Started at the same moment through another replica: that search is this one.
            existing = self.store.find_request(request_id or "")
            if existing is None:
                raise
            if spec_digest(existing.spec) != spec.digest():
                raise UserError(
                    "request_id",
                    f"{request_id!r} already names search {existing.id} with another "
                    "spec; resend that spec to attach to it, or use a new request_id",
                ) from None
            return await self.fetch(existing.id)
        finally:
            self._admitted -= 1
            if request_id:
                del self._starting[request_id]
            done.set_result(None)
        metrics.SEARCHES_STARTED.inc()
        metrics.BUDGET_ALLOCATED.inc(run_spec.budget)
        if spec.gpu_seconds is not None:
            metrics.GPU_BUDGET_ALLOCATED.inc(spec.gpu_seconds)
        log.info(
            "search %s started: %d candidates, %d items, budget %d (%s, seed %d, query set "
            "%s, request id %s)",
            search_id,
            len(spec.candidates),
            len(spec.items),
            spec.budget,
            spec.algorithm,
            spec.seed,
            spec.query_set or "inline",
            request_id or "-",
        )
        # On the loop: a new search has no result to parse, and the caller (a watcher) finds
        # it as it was started, before its runner's first step.
        return self.get(search_id)

    def check_allowed(self, spec: SearchSpec) -> None:
        """The endpoint allowlist of a start, alone: PlanSearch validates as a start does but
        connects to nothing (gemfinder.search.plan)."""
        self._check_allowed(spec)

    def _check_allowed(self, spec: SearchSpec) -> None:
        try:
            self.allowlist.check(spec.candidates)
        except EndpointNotAllowed as err:
            raise EndpointNotAllowed([(f"spec.{f}", r) for f, r in err.violations]) from None

    async def _prepare(self, spec: SearchSpec) -> None:
        try:
            with allow_unreachable(spec.allow_unreachable):
                await self.oracle.prepare(spec.candidates)
        except CandidateProblems as err:  # the same class, so the same status
            raise type(err)([(f"spec.{f}", r) for f, r in err.violations]) from None
        except UserError as err:
            raise UserError(f"spec.{err.field}", err.reason) from None

    def get(self, search_id: str) -> SearchRow:
        """The search now, read on the calling thread (the loop's: see `fetch`)."""
        return self._live_progress(
            search_id, self.store.get_search(search_id) if search_id else None
        )

    async def fetch(self, search_id: str) -> SearchRow:
        """`get`, read and parsed on a worker thread (Store.off_loop): a stored result of 1,000
        models (~7,000 estimates) takes 20-40 ms of CPU to parse, which held the event loop for
        every RPC that reads a finished search back (GetSearch, CancelSearch, WatchSearch)."""
        row = await self.store.off_loop(self.store.get_search, search_id) if search_id else None
        return self._live_progress(search_id, row)

    def _live_progress(self, search_id: str, row: SearchRow | None) -> SearchRow:
        """The stored row, with a running search's progress from its runner here, if any."""
        if row is None:
            raise SearchNotFound(search_id)
        live = self._live.get(search_id)
        if live is not None and row.state not in FINISHED:
            row.progress = live.runner.progress()
        return row

    async def wait(self, search_id: str) -> SearchRow:
        """The search once it has ended, wherever it runs: here, its runner; owned by another
        replica (a retried request id, a takeover), its stored log up to FINISHED."""
        live = self._live.get(search_id)
        if live is not None:
            await self.unless_stopping(asyncio.shield(live.task))
        row = await self.fetch(search_id)
        if row.state not in FINISHED:
            last = self.store.last_event(search_id)
            async for event in self.watch(search_id, 0 if last is None else last[0]):
                if event.type == ev.FINISHED:
                    break
            row = await self.fetch(search_id)
        return row

    async def cancel(self, search_id: str) -> SearchRow:
        """Cancel the search wherever it runs and return it once it has ended (cancelled, or
        ended otherwise before the cancel took). The request is stored first, so it outlives
        this replica: a live owner cancels at its next lease renewal (within a tick, lease/3);
        a search with no live owner (lease released or expired) is claimed by this replica, or
        whichever claims it first, and cancelled at once from its last snapshot, with the
        ranking of that moment as its result. Tried again every tick until it has ended."""
        row = await self.fetch(search_id)
        if row.state in FINISHED:
            return row
        self.store.request_cancel(search_id)
        while True:
            live = self._live.get(search_id)
            if live is not None:
                live.runner.cancel()
                return await self.wait(search_id)
            try:
                if await self.unless_stopping(self.resume(row)):
                    self.renew()  # ours now: the renewal reads the request and cancels it
                    return await self.wait(search_id)
            except LeaseLost:
                pass  # another replica claimed it meanwhile: it cancels it
            try:  # owned elsewhere: its owner's next renewal, or its lease expires
                return await asyncio.wait_for(self.wait(search_id), self.tick_s)
            except TimeoutError:
                row = await self.fetch(search_id)

    def list(self, limit: int, after: tuple[float, str] | None, **filters: Any) -> list[SearchRow]:
        return self.store.list_searches(limit, after, **filters)

    async def watch(self, search_id: str, after: int | None = None) -> AsyncIterator[ev.Event]:
        """The search's events from its stored log, whoever owns it, until FINISHED: first a
        SNAPSHOT (its seq: the last event it includes), or with `after` (a seq this search's
        log has) no SNAPSHOT but the events after it. Lag: one follower tick (search.events)."""
        if not search_id:
            raise SearchNotFound(search_id)
        last = self.store.last_event(search_id)
        row = await self.fetch(search_id)
        top = 0 if last is None else last[0]
        if after is None:
            # A finished search's log ends with FINISHED: the snapshot comes before it.
            after = top - 1 if last is not None and last[1] == ev.FINISHED else top
            yield ev.Event(ev.SNAPSHOT, row.progress, row.state, after)
        elif not 0 <= after <= top:
            raise UserError(
                "after_sequence",
                f"{after} is not an event of search {search_id} (its events are 1 to {top}); "
                "send the sequence of the last event received",
            )
        found = self.store.events_after([(search_id, after)], ev.BATCH)
        events = found.get((search_id, after), [])
        while True:
            for event in events:
                yield event
                after = event.seq
                if event.type == ev.FINISHED:
                    return
            events = await self.unless_stopping(self._events.after(search_id, after))

    # running --------------------------------------------------------------------------------
    def _launch(self, search_id: str, spec: SearchSpec, sched: AnyScheduler, **kw: Any) -> None:
        runner = SearchRunner(
            search_id,
            spec,
            self.oracle,
            self.store,
            scheduler=sched,
            owner=self.replica_id,
            **kw,
        )
        self.store.update_search(search_id, state="running", owner=self.replica_id)
        if self._renewed is None:  # a lease granted now (created or claimed): the oldest held
            self._renewed = time.monotonic()
        self._keep_ticking()
        task = asyncio.create_task(self._run(runner), name=f"search-{search_id}")
        self._live[search_id] = _Live(runner, task)

    async def _run(self, runner: SearchRunner) -> None:
        sid = runner.search_id
        metrics.ACTIVE_SEARCHES.inc()
        started = time.monotonic()
        outcome = "failed"
        try:
            outcome = await self._finish(runner, started)
        except LeaseLost:
            outcome = "handed over"  # fenced out: the new owner carries on, nothing recorded
            log.info("search %s: lease lost to another replica; stopped here", sid)
        except asyncio.CancelledError:
            if sid in self._lost:  # renew() found the lease taken: as for LeaseLost
                outcome = "handed over"
            else:
                outcome = "interrupted"  # server shutdown: stays running in the store, resumes
                log.info("search %s interrupted by shutdown; it resumes (here or elsewhere)", sid)
                raise
        finally:
            metrics.ACTIVE_SEARCHES.dec()
            ended = outcome not in ("interrupted", "handed over")
            if ended:
                metrics.SEARCHES_FINISHED.labels(outcome).inc()
                metrics.SEARCH_DURATION.labels(outcome).observe(time.monotonic() - started)
                metrics.SEARCH_QUERIES.labels(outcome).observe(runner.spent)
                # The stored result holds the verdict; a rerun re-records pulls from the cache.
                self.store.drop_pulls(sid)
            try:
                if outcome != "interrupted":  # on shutdown the oracle closes everything anyway
                    await self.oracle.release(runner.spec.candidates)
            finally:
                # Last: a wait() that finds the search no longer live finds it wholly ended.
                self._live.pop(sid, None)
                self._lost.discard(sid)

    async def _finish(self, runner: SearchRunner, started: float) -> str:
        """Run the search to its end and record it (fenced by the lease); the outcome."""
        sid, me = runner.search_id, self.replica_id
        try:
            result = await runner.run()
        except SearchCancelled as stop:
            self.store.update_search(
                sid,
                state="cancelled",
                result=await _json(stop.result),
                progress=runner.progress(),
                owner=me,
            )
            log.info("search %s cancelled after %.1f s", sid, time.monotonic() - started)
            return "cancelled"
        except SearchFailed as failure:  # no meaningful recommendation: said why, no traceback
            log.warning("search %s failed: %s", sid, failure)
            self.store.update_search(
                sid, state="failed", error=str(failure), progress=runner.progress(), owner=me
            )
            return "failed"
        except (LeaseLost, asyncio.CancelledError):
            raise
        except Exception as err:  # noqa: BLE001 - a failed search is recorded, not raised
            log.exception("search %s failed", sid)
            error = f"{type(err).__name__}: {err}"
            self.store.update_search(sid, state="failed", error=error, owner=me)
            return "failed"
        self.store.update_search(
            sid, state="succeeded", result=await _json(result), progress=runner.progress(), owner=me
        )
        log.info(
            "search %s succeeded in %.1f s: %s (accuracy %.3f on %d items), %d of %d queries "
            "spent, %d cached, %d failed; verdict %s",
            sid,
            time.monotonic() - started,
            result.recommended_model_id,
            result.winner.accuracy,
            result.winner.items_seen,
            result.queries_spent,
            runner.spec.budget,
            result.queries_cached,
            result.queries_failed,
            result.gem_verdict,
        )
        return "succeeded"
