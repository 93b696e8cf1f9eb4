"""Progress events of one search, fanned out to any number of watchers (WatchSearch, CLI bars).

A slow watcher never slows the search: each has a bounded queue and, when it is full, the
oldest PROGRESS event is dropped (round and finish events are always kept).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gemfinder.search.values import Progress

SNAPSHOT = "snapshot"
ROUND_STARTED = "round_started"
PROGRESS = "progress"
ROUND_FINISHED = "round_finished"
FINISHED = "finished"
# Never sent to clients: the search went to another replica, so watchers here stop (their
# stream ends without FINISHED; a new Watch reads the stored progress).
HANDED_OVER = "handed_over"


@dataclass(frozen=True)
class Event:
    type: str
    progress: Progress | None  # None: a search not counted yet
    state: str


class EventBus:
    def __init__(self, maxsize: int = 256) -> None:
        self._watchers: set[asyncio.Queue[Event]] = set()
        self._maxsize = maxsize
        self.last: Event | None = None
        self.closed = False

    def publish(self, event: Event) -> None:
        self.last = event
        for queue in self._watchers:
            if queue.full():
                self._drop_progress(queue)
            if not queue.full():
                queue.put_nowait(event)
        if event.type == FINISHED:
            self.closed = True

    @staticmethod
    def _drop_progress(queue: asyncio.Queue[Event]) -> None:
        kept = [e for e in _drain(queue) if e.type != PROGRESS]
        for e in kept[-(queue.maxsize - 1) :]:
            queue.put_nowait(e)

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self._maxsize)
        self._watchers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._watchers.discard(queue)


def _drain(queue: asyncio.Queue[Event]) -> list[Event]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out
