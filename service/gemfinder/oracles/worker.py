"""One oracle worker process (`python -m gemfinder.oracles.worker FD`), started by
gemfinder.oracles.workers.WorkerOracle: an InferenceOracle on its own event loop, answering the
pulls that arrive on socket FD and sending back results with its oracle events.

It exits when told to stop or when the socket closes (its parent is gone), cancelling what it
still holds: a worker never outlives the process that started it.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from typing import Any

from gemfinder.oracles import transport
from gemfinder.oracles.frames import frame, read_frame
from gemfinder.oracles.inference import InferenceOracle
from gemfinder.oracles.stats import OracleStats


class _Events(OracleStats):
    """Oracle events since the last results frame, in order, to replay in the parent."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str | None]] = []

    def record(self, event: str, kind: str | None = None) -> None:
        self.log.append((event, None if kind is None else str(kind)))


class Worker:
    def __init__(self, writer: asyncio.StreamWriter, settings: dict[str, Any]) -> None:
        from gemfinder.tasks import sandbox

        if settings["executor"]:
            sandbox.configure_executor(settings["executor"])
        self.writer = writer
        self.events = _Events()
        self.oracle = InferenceOracle(
            policy=settings["policy"],
            stats=self.events,
            default_concurrency=settings["default_concurrency"],
            validate=False,  # checked by the parent before the search
            seed=settings["seed"],
            max_answer_bytes=settings["max_answer_bytes"],
            grading_timeout_s=settings["grading_timeout_s"],
            grading_workers=settings["grading_workers"],
        )
        self.tasks: dict[int, asyncio.Task[Any]] = {}
        self.done: list[tuple[int, Any]] = []
        self._flush_scheduled = False

    def answer(self, batch: list) -> None:
        for rid, candidate, item, system_prompt in batch:
            task = asyncio.ensure_future(
                self.oracle.answer(candidate, item, system_prompt=system_prompt)
            )
            self.tasks[rid] = task
            task.add_done_callback(lambda t, rid=rid: self._finished(rid, t))

    def cancel(self, rids: list[int]) -> None:
        for rid in rids:
            task = self.tasks.pop(rid, None)
            if task is not None:
                task.cancel()

    def _finished(self, rid: int, task: asyncio.Task[Any]) -> None:
        if self.tasks.pop(rid, None) is None or task.cancelled():
            return
        self.done.append((rid, task.result()))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        done, self.done = self.done, []
        events, self.events.log = self.events.log, []
        self.writer.write(frame(("results", done, events)))

    async def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.oracle.aclose()


async def serve(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_connection(sock=sock)
    kind, settings = await read_frame(reader)
    assert kind == "settings", kind
    from gemfinder.cli.serve import configure_logging

    configure_logging(settings["log_level"])
    worker = Worker(writer, settings)
    # The HTTP client stack, imported and its SSL context built before the worker says it is
    # ready: else its first answer paid for them (150-225 ms) on this loop (transport.warm).
    transport.warm()
    writer.write(frame(("ready",)))
    try:
        while True:
            message = await read_frame(reader)
            if message[0] == "answer":
                worker.answer(message[1])
            elif message[0] == "cancel":
                worker.cancel(message[1])
            elif message[0] == "configure":
                for config in message[1]:
                    worker.oracle.configure(config)
            elif message[0] == "forget":
                await worker.oracle.forget(message[1])
            elif message[0] == "stop":
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the parent is gone
    finally:
        await worker.stop()
        writer.close()


def main() -> None:
    # The parent stops its workers (a frame, then SIGTERM); Ctrl-C in a terminal reaches the
    # whole process group, and a worker must not die of it before its parent asks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
