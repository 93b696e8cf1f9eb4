"""Progress events of one search: a log in the store, in order, followed by any replica.

The search's owner appends each event to the store (`put_event`, fenced by its lease), which
numbers them 1, 2, ... per search; recording how a search ended appends its FINISHED event in
the same transaction. Watchers on every replica, the owner's included, read the log through
one `EventFollower` per replica: one store query per tick for all its watchers, so a replica
that does not own a search follows it with a lag of at most one tick (plus the owner's write
queue), and a client that lost its stream resumes after the last sequence number it got
(WatchSearchRequest.after_sequence), on any replica: nothing lost, nothing repeated. The write
that ends a search prunes its PROGRESS events but the last (store.PRUNE_EVENTS): a watch resumed
after the end gets the round events, the last PROGRESS and FINISHED after its point, and so ends
as a live one did.

Why polling rather than PostgreSQL LISTEN/NOTIFY: events are already rate-limited (PROGRESS
at most every 0.2 s), so a 0.1 s tick adds little; a poll needs no connection held per replica,
survives a dropped connection or a failover like any other query, works on SQLite unchanged,
and costs one query per tick per replica whatever the number of watchers (docs/service.md,
Replicas, has the measured lag).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from gemfinder.search.values import Progress

log = logging.getLogger(__name__)

SNAPSHOT = "snapshot"  # per watch, never stored: the state when the watch began
ROUND_STARTED = "round_started"
PROGRESS = "progress"
ROUND_FINISHED = "round_finished"
FINISHED = "finished"
POLL_S = 0.1  # the follower's tick: the bound on a watcher's lag behind the stored log
BATCH = 500  # events read per watcher and tick at most (a resume far behind takes a few ticks)


@dataclass(frozen=True)
class Event:
    type: str
    progress: Progress | None  # None: a search not counted yet
    state: str
    seq: int = 0  # the event's number in its search's log (SNAPSHOT: the last one it includes)


class EventFollower:
    """Reads new events for every waiting watcher of this replica, one store query per tick."""

    def __init__(self, store: Any, poll_s: float = POLL_S) -> None:
        self.store = store
        self.poll_s = poll_s
        self._waiting: dict[tuple[str, int], list[asyncio.Future[list[Event]]]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None

    async def after(self, search_id: str, seq: int) -> list[Event]:
        """The events of `search_id` after `seq` (at least one), as soon as a tick finds them."""
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        self._waiting[search_id, seq].append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._follow(), name="event-follower")
        try:
            return await future
        finally:
            waiting = self._waiting.get((search_id, seq))
            if waiting is not None and future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self._waiting[search_id, seq]

    async def _follow(self) -> None:
        while self._waiting:
            await asyncio.sleep(self.poll_s)
            wanted = list(self._waiting)
            try:
                found = self.store.events_after(wanted, BATCH)
            except Exception as err:  # noqa: BLE001 - e.g. the database unreachable: next tick
                log.warning("events not read (watchers wait for the next tick): %s", err)
                continue
            for key, events in found.items():
                for future in self._waiting.pop(key, []):
                    if not future.done():
                        future.set_result(events)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
