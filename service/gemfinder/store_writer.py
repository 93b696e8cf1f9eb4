"""Write-behind for a store over the network: writes leave the event loop, in order.

The store is synchronous and called from the event loop (gemfinder.store). SQLite writes in
tens of microseconds; a round trip to PostgreSQL takes hundreds, so gemfinder.pg_store hands
its writes to one thread, which runs them one after another in the order they were given.
That order keeps the rule crash-resume rests on: the answers of a search are written before the
snapshot that counts them, so a database at any instant (a kill -9 stops the queue anywhere)
holds what the SQLite store would, less the writes still queued.

Graded answers are the writes a kill -9 must not lose (each is a query paid for; lost, it is
paid again after the resume), so they drain fast and their queue is short:
- the thread takes every write queued when it wakes and writes all the answers among them
  first, of every search, in one statement (`write_answers`): one round trip however many
  batches piled up while the previous one ran. Writing answers earlier than the writes queued
  before them is safe: each is an idempotent fact (ON CONFLICT), and a snapshot only ever
  counts answers given before it;
- a search hands over its answers without waiting; when more than MAX_QUEUED_ANSWERS answers
  are unwritten, or the oldest queued write waited more than MAX_LAG_S, `submit_answers` says
  which write to wait for and the search waits for it (`wait_done`, on a worker thread: the
  runner awaits it, so the event loop keeps serving) before it sends more queries. So a kill -9
  loses, beyond the queries in flight, at most MAX_QUEUED_ANSWERS answers and the batch just
  handed over, by count, however loaded the machine (docs/service.md, The store: SQLite or
  PostgreSQL, Crash resume). Other writes wait on the caller's thread only when MAX_QUEUED
  writes are queued (a bound on memory, reached only when the database stalls).

A read that must see the writes before it waits for the queue to drain (`flush`). A write that
fails is raised by the next call of the same search (`check`), and the writes of that search
queued behind it are dropped, not run: a snapshot never lands without the answers it counts.
Other searches' writes go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
MAX_QUEUED = 64  # writes of any kind queued before a submit waits
MAX_QUEUED_ANSWERS = 16  # graded answers queued (not yet committed) before a submit waits
MAX_LAG_S = 0.05  # age of the oldest queued write before a submit waits

Answers = list[tuple[str, int, int, int]]  # (cache key, model, item, reward)


@dataclass(frozen=True)
class _Job:
    search_id: str
    seq: int
    queued: float  # time.monotonic() when submitted
    work: Callable[[], Any] | None = None
    answers: Answers | None = None  # a put_answers batch, merged with the others queued


class WriteBehind:
    def __init__(
        self,
        write_answers: Callable[[list[tuple[str, Answers]]], Any],
        name: str = "gemfinder-store-writer",
    ) -> None:
        """`write_answers([(search id, answers), ...])` writes graded answers of several
        searches at once (on the writer thread)."""
        self._write_answers = write_answers
        self._lock = threading.Condition()
        self._jobs: deque[_Job] = deque()  # queued, not taken by the thread yet
        self._next = 0  # seq of the next job
        self._done = 0  # every job of seq < _done has run (or was dropped)
        self._answers = 0  # answers submitted and not yet written
        self._running_since: float | None = None  # queued time of the batch being written
        self._closing = False
        self._failed: dict[str, BaseException] = {}  # search -> its first failed write
        self._dropped_before: dict[str, int] = {}  # search -> writes below this seq are dropped
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, search_id: str, work: Callable[[], Any], wait: bool = False) -> None:
        """Queue `work` (to run on the writer thread); with `wait`, return once it ran, raising
        what it raised. Raises first a failed earlier write of the same search."""
        self.check(search_id)
        with self._lock:
            seq = self._queue(_Job(search_id, self._next, time.monotonic(), work=work))
            if len(self._jobs) > MAX_QUEUED and not wait:  # a bound on memory only
                self._lock.wait_for(lambda: self._done >= seq)
        if wait:
            self.flush()
        self.check(search_id)

    def submit_answers(self, search_id: str, answers: Answers) -> int | None:
        """Queue graded answers of a search (merged with the others queued, written first),
        without waiting. Returns the write the search should wait for (`wait_done`) before it
        pays for more queries, when too many answers are unwritten or the queue runs late
        (the bound on what a kill -9 loses), else None."""
        self.check(search_id)
        with self._lock:
            now = time.monotonic()
            # What is counted, and waited for, is the writes before this one: a batch just
            # received does not wait for its own round trip.
            oldest = self._jobs[0].queued if self._jobs else now
            if self._running_since is not None:  # the batch being written is older still
                oldest = self._running_since
            behind = self._answers > MAX_QUEUED_ANSWERS or now - oldest > MAX_LAG_S
            seq = self._queue(_Job(search_id, self._next, now, answers=list(answers)))
        return seq if behind else None

    def wait_done(self, seq: int) -> None:
        """Block until every write before `seq` has run (or failed); for a worker thread."""
        with self._lock:
            self._lock.wait_for(lambda: self._done >= seq)

    def _queue(self, job: _Job) -> int:
        """Append `job` (the lock held); its seq."""
        self._jobs.append(job)
        self._next += 1
        self._answers += len(job.answers or ())
        self._lock.notify_all()
        return job.seq

    def check(self, search_id: str) -> None:
        """Raise the failed write of `search_id`, if any, once; its later queued writes are
        dropped (they may count what the failed one did not write). Safe from any thread: a
        failure is raised to one caller only."""
        with self._lock:
            err = self._failed.pop(search_id, None)
            if err is None:
                return
            # Under the lock, with the failure: the thread never sees neither mark.
            self._dropped_before[search_id] = self._next
        raise err

    def flush(self) -> None:
        """Wait until every write queued so far has run (or failed)."""
        with self._lock:
            upto = self._next
            self._lock.wait_for(lambda: self._done >= upto)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._thread.join()
        for search_id, err in self._failed.items():
            log.error("search %s: a store write failed and was never reported: %s", search_id, err)

    def _dropped(self, job: _Job) -> bool:
        """Behind a failed write of its search (the lock held)."""
        return job.search_id in self._failed or job.seq < self._dropped_before.get(
            job.search_id, -1
        )

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._jobs or self._closing)
                if not self._jobs:
                    return  # closing, and everything written
                batch = list(self._jobs)
                self._jobs.clear()
                self._running_since = batch[0].queued
                answers = [j for j in batch if j.answers is not None and not self._dropped(j)]
            try:
                self._run(batch, answers)
            finally:
                with self._lock:
                    self._answers -= sum(len(j.answers or ()) for j in batch)
                    self._done = batch[-1].seq + 1
                    self._running_since = None
                    self._lock.notify_all()

    def _run(self, batch: list[_Job], answers: list[_Job]) -> None:
        if answers:
            merged: dict[str, Answers] = {}
            for job in answers:  # per search, in the order given: a repeated pull keeps its first
                merged.setdefault(job.search_id, []).extend(job.answers or ())
            try:
                self._write_answers(list(merged.items()))
            except BaseException as err:  # noqa: BLE001 - whose? each search's alone says
                if len(merged) == 1:
                    with self._lock:
                        self._failed.setdefault(next(iter(merged)), err)
                    return self._run_others(batch)
                for search_id, rows in merged.items():
                    self._attempt(
                        search_id, lambda s=search_id, r=rows: self._write_answers([(s, r)])
                    )
        self._run_others(batch)

    def _run_others(self, batch: list[_Job]) -> None:
        for job in batch:
            if job.work is None:
                continue
            with self._lock:
                if self._dropped(job):
                    continue
            self._attempt(job.search_id, job.work)

    def _attempt(self, search_id: str, work: Callable[[], Any]) -> None:
        try:
            work()
        except BaseException as err:  # kept for the search's next call (check)
            with self._lock:
                self._failed.setdefault(search_id, err)
