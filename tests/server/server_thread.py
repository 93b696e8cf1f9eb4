"""A real gemfinder server on its own event loop in a thread, for tests that call it with the
synchronous grpc client (the default client, with its default limits, as most callers use it)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from gemfinder.config import ServerConfig
from gemfinder.server.app import Server


@contextlib.contextmanager
def serve_in_thread(config: ServerConfig, oracle=None) -> Iterator[tuple[Server, int]]:
    """(server, port) of a started server; stopped, and its loop ended, on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[Server, int]:
        server = Server(config, oracle=oracle)  # grpc.aio binds to the running loop
        return server, await server.start()

    try:
        server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        try:
            yield server, port
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
