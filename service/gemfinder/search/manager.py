"""Long-running searches: start (idempotent by request id), get, watch, cancel, list, resume.

A request id names one search: the same id with the same spec (equal digests, see
SearchSpec.digest) returns that search, with another spec it is a UserError naming
`request_id` (as Google AIP-155 describes request ids), never another search.

One manager per server process. It persists every search before it runs, keeps one runner task
per running search, and on startup resumes unfinished searches from their last snapshot (pulls
whose answers were lost go back to the queue and mostly hit the evaluation cache).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gemfinder import _core, metrics
from gemfinder.errors import UserError
from gemfinder.oracles import Oracle
from gemfinder.oracles.allowlist import ANY_ENDPOINT, EndpointAllowlist, EndpointNotAllowed
from gemfinder.oracles.preflight import CandidateProblems, allow_unreachable
from gemfinder.search import events as ev
from gemfinder.search.runner import SearchCancelled, SearchFailed, SearchRunner
from gemfinder.search.spec import SearchSpec, spec_digest
from gemfinder.search.values import Progress
from gemfinder.store import SearchRow, Store

log = logging.getLogger(__name__)
FINISHED = ("succeeded", "failed", "cancelled")


class SearchNotFound(LookupError):
    kind = "not_found"

    def __init__(self, search_id: str) -> None:
        super().__init__(f"no search with id {search_id!r}")


class TooManySearches(RuntimeError):
    kind = "resource_exhausted"


@dataclass
class _Live:
    runner: SearchRunner
    task: asyncio.Task[None]


class SearchManager:
    def __init__(
        self,
        store: Store,
        oracle: Oracle,
        *,
        max_active: int = 8,
        allowlist: EndpointAllowlist = ANY_ENDPOINT,
    ) -> None:
        self.store = store
        self.oracle = oracle
        self.max_active = max_active
        # The server passes the operator's (oracles.allowlist); the local CLI's user is the
        # operator and may name any endpoint.
        self.allowlist = allowlist
        self._live: dict[str, _Live] = {}
        self._buses: dict[str, ev.EventBus] = {}
        self._starting: dict[str, asyncio.Future[None]] = {}  # request id -> start in progress
        self._admitted = 0  # starts past the max_active check whose endpoints are being checked

    # lifecycle ------------------------------------------------------------------------------
    async def resume_all(self) -> list[str]:
        return [row.id for row in self.store.unfinished() if await self.resume(row)]

    async def resume(self, row: SearchRow) -> bool:
        """Restart an unfinished search from its last snapshot; False when it failed instead."""
        spec = SearchSpec.from_dict(row.spec)
        data = self.store.load_snapshot(row.id)
        try:
            sched = _core.Scheduler.restore(data) if data else spec.scheduler()
        except _core.SearchError as err:
            # Stored by an older version that accepted a value this one refuses (such as
            # max_resample 1e300, which made one scheduler call loop for hours): failed with
            # the reason, never resumed, never clamped into another search than was asked.
            field = f"spec.{err.field}" if err.field else "spec"
            reason = str(err).split(": ", 1)[-1]
            error = (
                f"on resume: {field}: {reason} (stored by an older version; start the search "
                "again with values in range, see docs/search.md)"
            )
            log.warning("search %s not resumed: %s", row.id, error)
            self.store.update_search(row.id, state="failed", error=error)
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
            self.store.update_search(row.id, state="failed", error=f"on resume: {err}")
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
        return True

    async def close(self) -> None:
        """Stop runners without marking them cancelled, so they resume on the next start."""
        tasks = [live.task for live in self._live.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # rpc-level operations --------------------------------------------------------------------
    async def start(self, spec: SearchSpec, request_id: str | None = None) -> SearchRow:
        # Before anything else: no connection to an endpoint the operator did not allow.
        self._check_allowed(spec)
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
                return self.get(existing.id)
        if len(self._live) + self._admitted >= self.max_active:
            raise TooManySearches(f"{self.max_active} searches are running; retry later")
        self._admitted += 1  # holds its place while its endpoints are checked
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if request_id:
            self._starting[request_id] = done
        try:
            await self._prepare(spec)
            try:
                search_id = uuid.uuid4().hex
                self.store.create_search(search_id, request_id or None, spec.to_dict())
                self._launch(search_id, spec, spec.scheduler())
            except BaseException:
                await self.oracle.release(spec.candidates)
                raise
        finally:
            self._admitted -= 1
            if request_id:
                del self._starting[request_id]
            done.set_result(None)
        metrics.SEARCHES_STARTED.inc()
        metrics.BUDGET_ALLOCATED.inc(spec.budget)
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
        return self.get(search_id)

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
        row = self.store.get_search(search_id) if search_id else None
        if row is None:
            raise SearchNotFound(search_id)
        live = self._live.get(search_id)
        if live is not None and row.state not in FINISHED:
            row.progress = live.runner.progress()
        return row

    async def wait(self, search_id: str) -> SearchRow:
        live = self._live.get(search_id)
        if live is not None:
            await asyncio.shield(live.task)
        return self.get(search_id)

    async def cancel(self, search_id: str) -> SearchRow:
        self.get(search_id)
        live = self._live.get(search_id)
        if live is not None:
            live.runner.cancel()
            await asyncio.shield(live.task)
        return self.get(search_id)

    def list(self, limit: int, after: tuple[float, str] | None, **filters: Any) -> list[SearchRow]:
        return self.store.list_searches(limit, after, **filters)

    async def watch(self, search_id: str) -> AsyncIterator[ev.Event]:
        row = self.get(search_id)
        bus = self._buses.get(search_id)
        if bus is None or row.state in FINISHED:
            yield ev.Event(ev.SNAPSHOT, row.progress, row.state)
            if row.state in FINISHED:
                yield ev.Event(ev.FINISHED, row.progress, row.state)
                return
        queue = bus.subscribe() if bus is not None else None
        try:
            if bus is not None:
                yield ev.Event(ev.SNAPSHOT, self.get(search_id).progress, row.state)
            while queue is not None:
                event = await queue.get()
                yield event
                if event.type == ev.FINISHED:
                    return
        finally:
            if bus is not None and queue is not None:
                bus.unsubscribe(queue)

    # running --------------------------------------------------------------------------------
    def _launch(self, search_id: str, spec: SearchSpec, sched: _core.Scheduler, **kw: Any) -> None:
        bus = ev.EventBus()
        runner = SearchRunner(
            search_id, spec, self.oracle, self.store, scheduler=sched, bus=bus, **kw
        )
        self._buses[search_id] = bus
        self.store.update_search(search_id, state="running")
        task = asyncio.create_task(self._run(runner), name=f"search-{search_id}")
        self._live[search_id] = _Live(runner, task)

    async def _run(self, runner: SearchRunner) -> None:
        sid = runner.search_id
        metrics.ACTIVE_SEARCHES.inc()
        started = time.monotonic()
        outcome = "failed"
        try:
            result = await runner.run()
            outcome = "succeeded"
            self.store.update_search(sid, state=outcome, result=result, progress=runner.progress())
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
        except SearchCancelled as stop:
            outcome = "cancelled"
            self.store.update_search(sid, state=outcome, result=stop.result)
            log.info("search %s cancelled after %.1f s", sid, time.monotonic() - started)
        except SearchFailed as failure:  # no meaningful recommendation: said why, no traceback
            log.warning("search %s failed: %s", sid, failure)
            self.store.update_search(
                sid, state="failed", error=str(failure), progress=runner.progress()
            )
        except asyncio.CancelledError:
            outcome = "interrupted"  # server shutdown: stays running in the store, resumes
            log.info("search %s interrupted by shutdown; it resumes on the next start", sid)
            raise
        except Exception as err:  # noqa: BLE001 - a failed search is recorded, not raised
            log.exception("search %s failed", sid)
            self.store.update_search(sid, state="failed", error=f"{type(err).__name__}: {err}")
        finally:
            metrics.ACTIVE_SEARCHES.dec()
            if outcome != "interrupted":
                metrics.SEARCHES_FINISHED.labels(outcome).inc()
                metrics.SEARCH_DURATION.labels(outcome).observe(time.monotonic() - started)
                metrics.SEARCH_QUERIES.labels(outcome).observe(runner.spent)
                runner.bus.publish(ev.Event(ev.FINISHED, runner.progress(), outcome))
                # The stored result holds the verdict; a rerun re-records pulls from the cache.
                self.store.drop_pulls(sid)
            self._live.pop(sid, None)
            self._buses.pop(sid, None)
            if outcome != "interrupted":  # on shutdown the oracle closes everything anyway
                await self.oracle.release(runner.spec.candidates)
