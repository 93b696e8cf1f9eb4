"""Grading under a time limit, in processes that can be killed.

Python's `re` holds the interpreter lock for a whole match and cannot be interrupted, so a
pattern whose cost grows faster than the reply (lm-eval ships two: `\\s+$`, `(?s).*#### `; an
operator's own task YAML may hold any) run on a long pathological answer from an endpoint -
which gemfinder does not trust - would stop every RPC of the server, in a worker thread as much
as on the event loop. Graders known to be linear run inline (Task.grading_bounded); the others
run here: in one of `size` grading processes (`python -m gemfinder.oracles.grading_worker`),
one answer at a time each, with `timeout_s` per answer. A process past its limit is killed
(SIGKILL: a match cannot be asked to stop) and replaced, and the answer's grade is a
GradingTimeout, which the oracle records as a `grading_timeout` failure: neither a wrong nor a
right answer (docs/grading.md, "Grading under a time limit").

The processes start at the first answer that needs them, so a server whose graders are all
linear never starts one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys

from gemfinder.oracles.frames import frame, read_frame
from gemfinder.tasks import Grade, Item, sandbox

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_S = 10.0  # lm-eval grades an answer in ~0.1 ms; its slowest filter in ~0.2 s
DEFAULT_SIZE = 2
START_TIMEOUT_S = 60.0  # a grading process imports the tasks and lm-eval's filters: ~1 s


class GradingTimeout(Exception):
    """Grading one answer took longer than its limit; the process doing it was killed."""


class GradingError(Exception):
    """The grader raised on this answer (or its process ended): a `grading` failure."""


class _Process:
    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None


class GradingPool:
    """`size` grading processes, each grading one answer at a time within `timeout_s`."""

    def __init__(self, size: int = DEFAULT_SIZE, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if size < 1:
            raise ValueError("a grading pool needs at least one process")
        if not timeout_s > 0:
            raise ValueError("the grading time limit must be above 0")
        self.size = size
        self.timeout_s = timeout_s
        self._idle: asyncio.Queue[_Process] | None = None
        self._live: set[_Process] = set()
        self._starting: set[asyncio.Task[None]] = set()
        self._closed = False
        self.killed = 0  # processes killed past their limit (tests, logs)

    @property
    def pids(self) -> list[int]:
        """The running grading processes (tests kill them; benches count their CPU)."""
        return [p.proc.pid for p in self._live if p.proc is not None]

    async def grade(self, item: Item, response: str, extra_s: float = 0.0) -> Grade:
        """`response` graded by its task in a grading process, within `timeout_s + extra_s`
        (`extra_s`: the item's own program run time, Task.code_seconds). Raises GradingTimeout
        past the limit, GradingError when the grader raised or its process ended."""
        if self._closed:
            raise GradingError("the grading pool is closed")
        if self._idle is None:
            self._idle = asyncio.Queue()
            for _ in range(self.size):
                self._start_one()
        try:
            worker = await asyncio.wait_for(self._idle.get(), START_TIMEOUT_S)
        except TimeoutError:
            raise GradingError(
                f"no grading process became free within {START_TIMEOUT_S:g} s"
            ) from None
        limit = self.timeout_s + extra_s
        healthy = False
        try:
            assert worker.writer is not None and worker.reader is not None
            worker.writer.write(frame((item, response)))
            reply = await asyncio.wait_for(read_frame(worker.reader), limit)
            healthy = True
        except TimeoutError:
            self.killed += 1
            log.warning(
                "grading %s took over %.3g s (a %d-character answer): grading process %s "
                "killed, the query fails as grading_timeout",
                item.id,
                limit,
                len(response),
                worker.proc.pid if worker.proc is not None else None,
            )
            raise GradingTimeout(
                f"grading took longer than {limit:g} s (a {len(response):,}-character answer); "
                "the grading process was killed"
            ) from None
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as err:
            raise GradingError(f"the grading process ended while grading ({err})") from None
        finally:
            # A process that did not answer (killed, timed out, cancelled mid-answer) would
            # send a stale reply to the next caller: it is replaced, never reused.
            if healthy:
                self._idle.put_nowait(worker)
            else:
                self._replace(worker)
        if reply[0] == "error":
            raise GradingError(reply[1])
        return Grade(correct=reply[1], extracted=reply[2])

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        for worker in list(self._live):
            await self._kill(worker)

    # processes --------------------------------------------------------------------------------
    def _start_one(self) -> None:
        task = asyncio.get_running_loop().create_task(self._spawn())
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _spawn(self) -> None:
        worker = _Process()
        ours, theirs = socket.socketpair()
        try:
            worker.proc = subprocess.Popen(
                [sys.executable, "-m", "gemfinder.oracles.grading_worker", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        except OSError:
            ours.close()
            log.exception("starting a grading process failed")
            return
        finally:
            theirs.close()
        self._live.add(worker)
        try:
            worker.reader, worker.writer = await asyncio.open_connection(sock=ours)
            # Where the rare code item graded here runs its program: as in this process.
            settings = {"executor": sandbox.configured_executor()}
            worker.writer.write(frame(("settings", settings)))
            ready = await asyncio.wait_for(read_frame(worker.reader), START_TIMEOUT_S)
            if ready != ("ready",):
                raise RuntimeError(f"unexpected first frame {ready!r}")
        except (Exception, asyncio.CancelledError) as err:
            if not isinstance(err, asyncio.CancelledError):
                log.error("grading process %s did not start: %s", worker.proc.pid, err)
            await self._kill(worker)
            if isinstance(err, asyncio.CancelledError):
                raise
            return
        if self._closed:
            await self._kill(worker)
        elif self._idle is not None:
            self._idle.put_nowait(worker)

    def _replace(self, worker: _Process) -> None:
        """Kill `worker` now (SIGKILL: it may be inside a match) and start another."""
        self._live.discard(worker)
        if worker.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()
        asyncio.get_running_loop().create_task(self._kill(worker))
        if not self._closed:
            self._start_one()

    async def _kill(self, worker: _Process) -> None:
        self._live.discard(worker)
        if worker.writer is not None:
            worker.writer.close()
        proc = worker.proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.to_thread(proc.wait)
