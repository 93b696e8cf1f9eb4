"""Write-behind for a store over the network: writes leave the event loop, in order.

The store is synchronous and called from the event loop (gemfinder.store). SQLite writes in
tens of microseconds; a round trip to PostgreSQL takes hundreds, so gemfinder.pg_store hands
its writes to one thread, which runs them one after another in the order they were given.
That order keeps the rule crash-resume rests on: the answers of a search are written before the
snapshot that counts them, so a database at any instant (a kill -9 stops the queue anywhere)
holds a prefix of the writes, as the SQLite store would.

A read that must see the writes before it waits for the queue to drain (`flush`). A write that
fails is raised by the next call of the same search (`check`), and the writes of that search
queued behind it are dropped, not run: a snapshot never lands without the answers it counts.
Other searches' writes go on.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
MAX_QUEUED = 64


@dataclass(frozen=True)
class _Job:
    search_id: str
    seq: int
    work: Callable[[], Any]


class WriteBehind:
    def __init__(self, name: str = "gemfinder-store-writer") -> None:
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._seq = itertools.count()
        self._failed: dict[str, BaseException] = {}  # search -> its first failed write
        self._dropped_before: dict[str, int] = {}  # search -> writes below this seq are dropped
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, search_id: str, work: Callable[[], Any], wait: bool = False) -> None:
        """Queue `work` (to run on the writer thread); with `wait`, return once it ran, raising
        what it raised. Raises first a failed earlier write of the same search."""
        self.check(search_id)
        self._queue.put(_Job(search_id, next(self._seq), work))
        # Backpressure: a writer behind by MAX_QUEUED writes makes the search's next write wait
        # for it, so the writes a kill -9 loses (answers paid for and not stored: queries paid
        # twice) stay bounded whatever the load, without RPC reads having to drain the queue.
        if wait or self._queue.qsize() > MAX_QUEUED:
            self.flush()
            self.check(search_id)

    def check(self, search_id: str) -> None:
        """Raise the failed write of `search_id`, if any, once; its later queued writes are
        dropped (they may count what the failed one did not write)."""
        if search_id in self._failed:
            # The mark first: the writer thread must never see neither.
            self._dropped_before[search_id] = next(self._seq)
            raise self._failed.pop(search_id)

    def flush(self) -> None:
        """Wait until every write queued so far has run (or failed)."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        for search_id, err in self._failed.items():
            log.error("search %s: a store write failed and was never reported: %s", search_id, err)

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if job.search_id in self._failed:
                    continue  # behind a failed write of its search: dropped
                if job.seq < self._dropped_before.get(job.search_id, -1):
                    continue
                try:
                    job.work()
                except BaseException as err:  # kept for the search's next call (check)
                    self._failed.setdefault(job.search_id, err)
            finally:
                self._queue.task_done()
