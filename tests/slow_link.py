"""A TCP forwarder on 127.0.0.1 that delays every chunk it passes by `delay_s`: a database
reached over a slow link, or a loaded machine where the store's writer thread lags behind the
search. Threads of its own, so it forwards whatever the caller's event loop is doing.

    with SlowLink("127.0.0.1", 5432, delay_s=0.003) as link:
        url = f"postgresql://user:pw@127.0.0.1:{link.port}/db"
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit


class SlowLink:
    def __init__(self, host: str, port: int, delay_s: float) -> None:
        self.target = (host, port)
        self.delay_s = delay_s
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name="slow-link", daemon=True).start()

    @classmethod
    def to_url(cls, url: str, delay_s: float) -> tuple[SlowLink, str]:
        """A link to the server of a postgresql:// URL, and the URL through it."""
        parts = urlsplit(url)
        link = cls(parts.hostname or "127.0.0.1", parts.port or 5432, delay_s)
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return link, urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{link.port}"))

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        # One chunk at a time, each held `delay_s`: a request and its reply each arrive late.
        try:
            while chunk := src.recv(65536):
                time.sleep(self.delay_s)
                dst.sendall(chunk)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> SlowLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
