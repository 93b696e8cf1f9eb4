"""How late the event loop runs, so that searches can give way to RPCs (health checks above all).

A monitor task sleeps TICK_S at a time and records how much later than asked it woke up: the
time a ready callback waited for the loop. Searches read it to size how many queries they keep
in flight (SearchRunner): every answer costs the loop about 1.25 ms of HTTP, grading and
storage (2 ms before issue 15's client; bench/speed/health_latency.py prints it), and with four
searches saturating a small machine a health check otherwise waits behind hundreds of them.
The thresholds are lateness, not a count of answers, so a cheaper answer changed none of them:
it only lets a window of a given size drain sooner (docs/service.md, "Health under load").
"""

from __future__ import annotations

import asyncio

TICK_S = 0.01
# Lateness above which searches shrink their windows, and below which they grow them again.
HIGH_S = 0.02
LOW_S = 0.005


class LoopLag:
    """Exponentially weighted lateness of the loop's wake-ups, in seconds."""

    def __init__(self) -> None:
        self.lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start monitoring on the running loop (once; again after that loop closed)."""
        if self._task is None or self._task.done() or self._task.get_loop().is_closed():
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="loop-lag")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + TICK_S
            await asyncio.sleep(TICK_S)
            late = max(0.0, loop.time() - asked)
            # A late tick counts at once; recovery is gradual, so windows do not oscillate.
            self.lag = late if late > self.lag else 0.8 * self.lag + 0.2 * late

    def window(self, current: int, largest: int, smallest: int) -> int:
        """The next in-flight window: halved while the loop is late, doubled once it is not."""
        if self.lag > HIGH_S:
            return max(smallest, current // 2)
        if self.lag < LOW_S:
            return min(largest, current * 2)
        return current


LAG = LoopLag()
