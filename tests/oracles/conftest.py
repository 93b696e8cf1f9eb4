"""Fixtures of the oracle tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

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
