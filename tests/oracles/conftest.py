"""Fixtures of the oracle tests."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class CountingListener:
    """A listening socket that accepts every connection, counts it and closes it at once: an
    endpoint the operator never listed (which must see no connection), or a server dying on
    every request (which the circuit breaker must not hammer). Closing at once makes an HTTP
    client that does connect fail fast. Dual stack where the machine has IPv6, so that
    127.0.0.1, ::1 and localhost all reach it."""

    def __init__(self) -> None:
        self.dual_stack = has_ipv6()
        if self.dual_stack:
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # and 127.0.0.1
            self.sock.bind(("::", 0))
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)  # hundreds of pulls may connect at once
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        """Stop accepting (a test may close it before counting; the fixture closes it again)."""
        if self.sock.fileno() < 0:
            return
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)


@pytest.fixture
def listener() -> Iterator[Callable[[], CountingListener]]:
    """listener() -> a new CountingListener on a free port; all are closed at the end."""
    made: list[CountingListener] = []

    def make() -> CountingListener:
        made.append(CountingListener())
        return made[-1]

    yield make
    for each in made:
        each.close()


# (request head, request body) -> the raw bytes sent back before the connection is closed
Reply = Callable[[bytes, bytes], bytes]


@dataclass
class RawServer:
    """An HTTP server that reads one request per connection, records its head (request line
    and headers), answers with its Reply's bytes and hangs up: what a well-behaved server would
    not send (a redirect to elsewhere, an answer cut short) is written as given."""

    url: str
    requests: list[bytes] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [head.split(b" ")[1].decode() for head in self.requests]


class RawServers:
    """The `raw_server` fixture: `await raw_server(reply)` starts a RawServer on a free port of
    127.0.0.1; `raw_server.response(...)` builds a reply's bytes; all stop at the test's end."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []

    @staticmethod
    def response(status: str, body: bytes, headers: str = "", length: int | None = None) -> bytes:
        """A raw HTTP/1.1 answer: `status` like "307 Redirect", extra `headers` lines each ending
        in CRLF, a JSON body declared `length` bytes long (a lie, when given) or its own."""
        declared = len(body) if length is None else length
        return (
            f"HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        ).encode() + body

    async def __call__(self, reply: Reply) -> RawServer:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            body = await reader.readexactly(length)
            made.requests.append(head)
            writer.write(reply(head, body))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.servers.append(server)
        made = RawServer(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        return made

    async def close(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServers]:
    servers = RawServers()
    yield servers
    await servers.close()
