"""Progress of a long command on stderr: a live bar on a terminal, occasional lines elsewhere.

A bar redraws itself with carriage returns, which in a log file or a CI transcript becomes one
long line of overwritten states. When the stream is not a terminal we print a plain line when
progress passes the next tenth, or when `heartbeat_s` went by without one, and the last state
at the end if no line said it yet.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO


class Progress(Protocol):
    def update(self, done: int, total: int, text: str) -> None: ...
    def close(self) -> None: ...


def progress(desc: str, total: int, unit: str, stream: TextIO | None = None) -> Progress:
    """A bar when `stream` (default stderr) is a terminal, else plain lines."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return _Bar(desc, total, unit, stream)
    return LineProgress(desc, total, unit, stream)


class _Bar:
    def __init__(self, desc: str, total: int, unit: str, stream: TextIO) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=max(total, 1), unit=unit, desc=desc, file=stream, dynamic_ncols=True,
            mininterval=0.5,
        )  # fmt: skip
        self._bar.set_postfix_str("starting")

    def update(self, done: int, total: int, text: str) -> None:
        self._bar.total = max(total, 1)
        self._bar.n = done
        self._bar.set_postfix_str(text)

    def close(self) -> None:
        self._bar.close()


class LineProgress:
    """One line per tenth of `total` passed, or per `heartbeat_s` without news; the last state."""

    def __init__(
        self,
        desc: str,
        total: int,
        unit: str,
        stream: TextIO,
        heartbeat_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._desc, self._unit, self._stream = desc, unit, stream
        self._heartbeat_s, self._clock = heartbeat_s, clock
        self._done, self._total, self._text = 0, max(total, 1), ""
        self._tenth = 0  # tenths of the total already reported
        self._last = clock()
        self._printed = ""

    def update(self, done: int, total: int, text: str) -> None:
        self._done, self._total, self._text = done, max(total, 1), text
        tenth = min(10, done * 10 // self._total)
        now = self._clock()
        if tenth > self._tenth or now - self._last >= self._heartbeat_s:
            self._tenth = max(self._tenth, tenth)
            self._emit(now)

    def close(self) -> None:
        """The last state, unless the last line already said it."""
        if self._line() != self._printed:
            self._emit(self._clock())

    def _line(self) -> str:
        percent = self._done * 100 // self._total  # rounded down: 100% only when all is done
        head = f"{self._desc}: {self._done:,}/{self._total:,} {self._unit} ({percent}%)"
        return f"{head}, {self._text}" if self._text else head

    def _emit(self, now: float) -> None:
        self._last, self._printed = now, self._line()
        print(self._printed, file=self._stream, flush=True)
