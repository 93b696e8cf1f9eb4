"""The oracle in worker processes: one replica's HTTP-and-grading path on several cores.

`WorkerOracle` is an Oracle (prepare, answer, release, aclose) whose answers come from N worker
processes (`python -m gemfinder.oracles.worker`), each running an InferenceOracle on its own
event loop. The scheduler, the store and the pre-search check stay in this process: the
runner's pulls (a round at a time) are sent to the workers in batches, one frame per loop turn,
and their results come back the same way, so picks are the scheduler's as in-process.

- Each endpoint's concurrency (from its settings or /info, sized by the pre-search check here)
  is split between the workers, and a pull goes to the worker with the fewest pulls in flight
  on its endpoint: the endpoint never sees more requests at once than in-process.
- A worker that dies (killed, crashed) fails the pulls it held as `worker_lost`: a failure the
  scheduler gives back, never a wrong answer; a new worker takes its place.
- The workers' oracle events (attempts, retries, failures by kind) come back with the results
  and are recorded in this process's OracleStats, so metrics count them as in-process.
- Adapters on demand (oracles.lora_runtime) are registered and unregistered by this process,
  around the worker's answer, so each exactly once whatever worker asks, within one cap.
- Shutdown (`aclose`) asks each worker to stop, then terminates and finally kills what is left;
  a worker whose parent dies sees its socket close and exits.

Frames: oracles.frames (a length and a pickle, over a socketpair only this process and its
children hold).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from gemfinder.candidates import Candidate
from gemfinder.lora_leases import LoraLeases
from gemfinder.oracles.base import FailureKind, OracleResult
from gemfinder.oracles.endpoints import EndpointConfig
from gemfinder.oracles.frames import frame, read_frame
from gemfinder.oracles.grading_pool import DEFAULT_SIZE as DEFAULT_GRADING_WORKERS
from gemfinder.oracles.grading_pool import DEFAULT_TIMEOUT_S as DEFAULT_GRADING_TIMEOUT_S
from gemfinder.oracles.inference import InferenceOracle
from gemfinder.oracles.lora_runtime import RuntimeAdapters
from gemfinder.oracles.retry import RetryPolicy
from gemfinder.oracles.stats import OracleStats
from gemfinder.tasks import Item

log = logging.getLogger(__name__)
START_TIMEOUT_S = 60.0  # a worker imports the HTTP stack and the tasks: a few seconds
STOP_TIMEOUT_S = 5.0


def split(limit: int, workers: int) -> list[int]:
    """`limit` slots shared by `workers`, as evenly as possible (some get 0 when fewer)."""
    return [limit // workers + (1 if k < limit % workers else 0) for k in range(workers)]


class _Worker:
    """One worker process and the pulls it holds."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reader_task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.pending: dict[int, tuple[asyncio.Future[OracleResult], str, Candidate, Item]] = {}
        self.outbox: list[tuple[int, Candidate, Item, bool]] = []
        self.cancelled: list[int] = []
        self.load: Counter[str] = Counter()  # pulls in flight per endpoint
        self.alive = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class WorkerOracle:
    """An Oracle answering through `workers` processes (see the module docstring)."""

    def __init__(
        self,
        endpoints: Iterable[EndpointConfig] = (),
        *,
        workers: int = 2,
        policy: RetryPolicy | None = None,
        stats: OracleStats | None = None,
        concurrency_cap: int = 32,
        default_concurrency: int = 8,
        validate: bool = True,
        seed: int | None = None,
        max_answer_bytes: int | None = None,
        executor: str = "",
        log_level: str = "WARNING",
        grading_timeout_s: float = DEFAULT_GRADING_TIMEOUT_S,
        grading_workers: int = DEFAULT_GRADING_WORKERS,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        extra = {} if max_answer_bytes is None else {"max_answer_bytes": max_answer_bytes}
        # Probes, candidate checks, pool sizes and cache scopes: here, as in-process.
        self.local = InferenceOracle(
            endpoints,
            policy=policy,
            stats=stats,
            concurrency_cap=concurrency_cap,
            default_concurrency=default_concurrency,
            validate=validate,
            seed=seed,
            **extra,
        )
        self.stats = self.local.stats
        self.policy = self.local.policy
        self._settings = {
            "policy": self.local.policy,
            "default_concurrency": default_concurrency,
            "seed": seed,
            "max_answer_bytes": self.local.max_answer_bytes,
            "executor": executor,
            "log_level": log_level,
            # Each worker grades what is not known linear in its own grading processes.
            "grading_timeout_s": grading_timeout_s,
            "grading_workers": grading_workers,
        }
        self._workers = [_Worker(k) for k in range(workers)]
        self._configured: dict[str, EndpointConfig] = {}  # endpoint -> its settings and limit
        self._ids = 0
        self._flush_scheduled = False
        self._closing = False
        self._started = False
        self._start_lock: asyncio.Lock | None = None

    @property
    def configs(self) -> dict[str, EndpointConfig]:
        """The operator's endpoint settings (their cost models: search.serving_cost)."""
        return self.local.configs

    # the Oracle protocol ----------------------------------------------------------------------
    async def prepare(self, candidates: list[Candidate]) -> None:
        await self.local.prepare(candidates)
        await self._start()
        for url in dict.fromkeys(c.endpoint for c in candidates):
            self._configure(url)

    async def release(self, candidates: list[Candidate]) -> None:
        await self.local.release(candidates)
        gone = [url for url in self._configured if url not in self.local._endpoints]
        for url in gone:
            del self._configured[url]
        if gone:
            self._broadcast(("forget", gone))

    def cache_scope(self, endpoint: str) -> str:
        return self.local.cache_scope(endpoint)

    def concurrency(self, url: str) -> int:
        return self.local.concurrency(url)

    @property
    def retained(self) -> int:
        return self.local.retained

    @property
    def pids(self) -> list[int]:
        """The live workers' process ids (benches count their CPU; tests kill them)."""
        return [w.pid for w in self._workers if w.alive and w.pid is not None]

    async def answer(
        self, candidate: Candidate, item: Item, *, system_prompt: bool = False
    ) -> OracleResult:
        await self._start()
        url = candidate.endpoint
        if url not in self._configured:  # answer() without prepare(), as InferenceOracle allows
            self.local._endpoint(candidate)
            self._configure(url)
        config = self.local._endpoints[url].config
        if not RuntimeAdapters.on_demand(config, candidate.adapter_id):
            return await self._send(url, candidate, item, system_prompt)
        # Adapters on demand are registered and unregistered here, once, whichever worker asks
        # (the workers get no lora_paths): held while the worker answers.
        name, start = str(candidate.adapter_id), time.perf_counter()
        async with self.local.runtime_adapters.held(config, name) as problem:
            if problem is not None:
                self.stats.record("pull")
                return self.local.unregistered(candidate, item, problem, start)
            result = await self._send(url, candidate, item, system_prompt)
        if result.reward is None:
            self.local.check_registered(config, name, result)
        return result

    def claim_adapters(self, candidates: list[Candidate]) -> None:
        self.local.claim_adapters(candidates)

    def share_adapters(self, leases: LoraLeases) -> None:
        self.local.share_adapters(leases)  # this process registers: its leases

    async def release_adapters(self, candidates: list[Candidate]) -> None:
        await self.local.release_adapters(candidates)

    async def _send(
        self, url: str, candidate: Candidate, item: Item, system_prompt: bool
    ) -> OracleResult:
        """One pull, answered by the worker with the fewest pulls in flight on `url`."""
        worker = await self._pick(url)
        self._ids += 1
        rid = self._ids
        future: asyncio.Future[OracleResult] = asyncio.get_running_loop().create_future()
        worker.pending[rid] = (future, url, candidate, item)
        worker.load[url] += 1
        worker.outbox.append((rid, candidate, item, system_prompt))
        self._schedule_flush()
        try:
            return await future
        except asyncio.CancelledError:
            # The pull is abandoned (search cancelled): its answer, when it comes, is dropped.
            if worker.pending.pop(rid, None) is not None:
                worker.load[url] -= 1
                worker.cancelled.append(rid)  # the worker stops it: no request left running
                self._schedule_flush()
            raise

    async def aclose(self) -> None:
        self._closing = True
        for worker in self._workers:
            await self._stop(worker)
        await self.local.aclose()

    async def start(self) -> None:
        """Start the workers now (the server does, so that a worker that cannot start fails
        the start, not the first search); else the first prepare or answer starts them."""
        await self._start()

    # workers ----------------------------------------------------------------------------------
    async def _start(self) -> None:
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self._started:
                await asyncio.gather(*(self._spawn(w) for w in self._workers))
                self._started = True

    async def _spawn(self, worker: _Worker) -> None:
        ours, theirs = socket.socketpair()
        try:
            worker.proc = subprocess.Popen(
                [sys.executable, "-m", "gemfinder.oracles.worker", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        worker.writer = writer
        worker.ready.clear()
        worker.alive = True
        writer.write(frame(("settings", self._settings)))
        for config in self._configured.values():
            writer.write(frame(("configure", [self._share(config, worker.index)])))
        worker.reader_task = asyncio.create_task(self._read(worker, reader))
        try:
            await asyncio.wait_for(worker.ready.wait(), START_TIMEOUT_S)
        except TimeoutError:
            await self._stop(worker)
            raise RuntimeError(f"oracle worker {worker.index} did not start") from None

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await read_frame(reader)
                if message[0] == "ready":
                    worker.ready.set()
                elif message[0] == "results":
                    self._results(worker, message[1], message[2])
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass  # the worker is gone
        except Exception:  # noqa: BLE001 - a broken frame: the worker is unusable
            log.exception("oracle worker %d sent a broken frame", worker.index)
        await self._lost(worker)

    def _results(self, worker: _Worker, results: list, events: list) -> None:
        for event, kind in events:
            self.stats.record(event, kind)
        for rid, result in results:
            entry = worker.pending.pop(rid, None)
            if entry is None:
                continue  # abandoned
            future, url, _, _ = entry
            worker.load[url] -= 1
            if not future.done():
                future.set_result(result)

    async def _lost(self, worker: _Worker) -> None:
        """The worker's socket closed: fail what it held (never a 0), reap it, replace it."""
        was_alive, worker.alive = worker.alive, False
        worker.ready.set()  # nobody waits for a dead worker's start
        if worker.writer is not None:
            worker.writer.close()
        if worker.proc is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(worker.proc.wait, STOP_TIMEOUT_S)
        held, worker.pending = worker.pending, {}
        worker.load.clear()
        worker.outbox.clear()
        worker.cancelled.clear()
        if held and not self._closing:
            code = worker.proc.returncode if worker.proc is not None else None
            log.error(
                "oracle worker %d (pid %s) ended (exit %s) holding %d pulls: they fail as %s",
                worker.index,
                worker.pid,
                code,
                len(held),
                FailureKind.WORKER_LOST.value,
            )
        for future, _, candidate, item in held.values():
            self.stats.record("pull_failed", FailureKind.WORKER_LOST)
            if not future.done():
                future.set_result(
                    OracleResult(
                        candidate.model_id,
                        item.id,
                        None,
                        FailureKind.WORKER_LOST,
                        error=f"oracle worker {worker.index} (pid {worker.pid}) ended",
                    )
                )
        if was_alive and not self._closing:
            asyncio.get_running_loop().create_task(self._respawn(worker))

    async def _respawn(self, worker: _Worker) -> None:
        try:
            await self._spawn(worker)
        except Exception:  # noqa: BLE001 - the others keep answering; pulls route around it
            log.exception("restarting oracle worker %d failed", worker.index)

    async def _stop(self, worker: _Worker) -> None:
        if worker.writer is not None and worker.alive:
            with contextlib.suppress(Exception):
                worker.writer.write(frame(("stop",)))
                await worker.writer.drain()
        proc = worker.proc
        if proc is not None:
            try:
                await asyncio.to_thread(proc.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    await asyncio.to_thread(proc.wait, STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    await asyncio.to_thread(proc.wait)
        if worker.reader_task is not None:
            with contextlib.suppress(BaseException):
                await worker.reader_task
        worker.alive = False

    # routing ----------------------------------------------------------------------------------
    def _share(self, config: EndpointConfig, index: int) -> EndpointConfig:
        """A worker's settings for an endpoint: its share of the concurrency, and no
        lora_paths (this process registers adapters on demand, not the workers)."""
        share = split(config.max_concurrency or 1, self.size)[index]
        return replace(config, max_concurrency=share, lora_paths=None)

    @property
    def size(self) -> int:
        return len(self._workers)

    def _configure(self, url: str) -> None:
        endpoint = self.local._endpoints[url]
        config = replace(endpoint.config, max_concurrency=endpoint.limit)
        if self._configured.get(url) == config:
            return
        self._configured[url] = config
        for worker in self._workers:
            if worker.alive and worker.writer is not None:
                worker.writer.write(frame(("configure", [self._share(config, worker.index)])))

    def _broadcast(self, message: Any) -> None:
        data = frame(message)
        for worker in self._workers:
            if worker.alive and worker.writer is not None:
                worker.writer.write(data)

    async def _pick(self, url: str) -> _Worker:
        """The live worker with the fewest pulls in flight on `url` per slot it has there."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            shares = split(self._configured[url].max_concurrency or 1, self.size)
            live = [w for w in self._workers if w.alive and w.ready.is_set() and shares[w.index]]
            if live:
                return min(live, key=lambda w: w.load[url] / shares[w.index])
            if time.monotonic() > deadline:
                raise RuntimeError("no oracle worker is running")
            await asyncio.sleep(0.05)  # a worker is being replaced

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """One frame per worker with every pull queued since the last loop turn."""
        self._flush_scheduled = False
        for worker in self._workers:
            if worker.writer is None or not worker.alive:
                continue
            if worker.cancelled:
                worker.writer.write(frame(("cancel", worker.cancelled)))
                worker.cancelled = []
            if worker.outbox:
                # Pulls cancelled before they went out are not sent at all.
                batch = [p for p in worker.outbox if p[0] in worker.pending]
                worker.outbox = []
                if batch:
                    worker.writer.write(frame(("answer", batch)))
