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
linear never starts one. A process that fails to start is started again after a back-off
(BACKOFF_MIN_S doubling up to BACKOFF_MAX_S, so a start that always fails does not spin); while
no process runs and the last start failed, an answer fails at once as a GradingError naming the
start's error, instead of waiting START_TIMEOUT_S for a process that will not come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
from asyncio import FIRST_COMPLETED

from gemfinder.oracles.frames import frame, read_frame
from gemfinder.tasks import Grade, Item, sandbox

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_S = 10.0  # lm-eval grades an answer in ~0.1 ms; its slowest filter in ~0.2 s
DEFAULT_SIZE = 2
START_TIMEOUT_S = 60.0  # a grading process imports the tasks and lm-eval's filters: ~1 s
BACKOFF_MIN_S = 0.5  # the wait before starting again after a failed start, doubled per failure
BACKOFF_MAX_S = 30.0
# The grading process's command; the socket's descriptor is appended. Tests replace it to make
# the start fail.
DEFAULT_WORKER_COMMAND = [sys.executable, "-m", "gemfinder.oracles.grading_worker"]
WORKER_COMMAND = DEFAULT_WORKER_COMMAND


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
        self._ready = 0  # started processes, idle or grading
        self._spawning = 0  # starts under way (a process launched, not yet ready)
        self._start_error: str | None = None  # the last failed start's, while none is ready
        self._no_process = asyncio.Event()  # set: no process is ready and the last start failed
        self.start_failures = 0  # failed starts (tests, logs)
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
        worker = await self._acquire()
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

    async def _acquire(self) -> _Process:
        """An idle process; GradingError at once while none can start, or after
        START_TIMEOUT_S when none becomes free."""
        assert self._idle is not None
        if self._idle.empty() and self._no_process.is_set():
            raise self._cannot_start()
        get = asyncio.ensure_future(self._idle.get())
        broken = asyncio.ensure_future(self._no_process.wait())
        try:
            await asyncio.wait({get, broken}, timeout=START_TIMEOUT_S, return_when=FIRST_COMPLETED)
        except BaseException:  # cancelled: a process already taken goes back
            if get.done() and not get.cancelled():
                self._idle.put_nowait(get.result())
            raise
        finally:
            broken.cancel()
            if not get.done():
                get.cancel()  # asyncio.Queue leaves the item for the next getter
        if get.done() and not get.cancelled():
            return get.result()
        if broken.done() and not broken.cancelled():
            raise self._cannot_start()
        raise GradingError(f"no grading process became free within {START_TIMEOUT_S:g} s")

    def _cannot_start(self) -> GradingError:
        return GradingError(
            f"no grading process could start ({self._start_error}); "
            f"starting one again within {BACKOFF_MAX_S:g} s"
        )

    # processes --------------------------------------------------------------------------------
    def _start_one(self) -> None:
        task = asyncio.get_running_loop().create_task(self._keep_starting())
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _keep_starting(self) -> None:
        """Start one process; after a failed start, wait (doubling) and start again."""
        delay = BACKOFF_MIN_S
        while not self._closed:
            self._spawning += 1
            try:
                error = await self._spawn()
            finally:
                self._spawning -= 1
            if error is None:
                return
            self.start_failures += 1
            if self._ready == 0 and self._spawning == 0:
                self._start_error = error
                self._no_process.set()  # the answers waiting fail now, not after a minute
            log.error("a grading process did not start (%s); trying again in %g s", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _spawn(self) -> str | None:
        """Start one process and queue it as idle; returns None, or why it did not start."""
        worker = _Process()
        ours, theirs = socket.socketpair()
        try:
            worker.proc = subprocess.Popen(
                [*WORKER_COMMAND, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        except OSError as err:
            ours.close()
            return f"cannot run {WORKER_COMMAND[0]}: {err.strerror or err}"
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
            await self._kill(worker)
            if isinstance(err, asyncio.CancelledError):
                raise
            if isinstance(err, asyncio.IncompleteReadError | ConnectionError):  # it ended
                return f"the process exited with status {worker.proc.returncode} before ready"
            if isinstance(err, TimeoutError):
                return f"the process was not ready within {START_TIMEOUT_S:g} s"
            return f"grading process {worker.proc.pid}: {type(err).__name__}: {err}"
        if self._closed:
            await self._kill(worker)
        elif self._idle is not None:
            self._ready += 1
            self._start_error = None
            self._no_process.clear()
            self._idle.put_nowait(worker)
        return None

    def _replace(self, worker: _Process) -> None:
        """Kill `worker` now (SIGKILL: it may be inside a match) and start another."""
        self._live.discard(worker)
        self._ready -= 1
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
