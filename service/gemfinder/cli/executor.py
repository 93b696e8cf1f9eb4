"""`gemfinder executor`: serve sandboxed code execution over HTTP until SIGTERM or Ctrl-C.

A service started with `--executor http://HOST:PORT` (GEMFINDER_EXECUTOR) runs MBPP programs
here instead of in its own process (gemfinder.tasks.executor; docs/kubernetes.md, docs/grading.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

from gemfinder.errors import UserError
from gemfinder.tasks import sandbox

ADDRESS_ENV = "GEMFINDER_EXECUTOR_ADDRESS"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "executor",
        help="run sandboxed programs for a gemfinder service (HTTP)",
        description=__doc__,
    )
    parser.add_argument(
        "--address",
        default=None,
        help=f"listen address host:port (env {ADDRESS_ENV}, default '127.0.0.1:8090'; "
        "port 0 picks a free one)",
    )
    parser.set_defaults(handler=run)


def parse_address(raw: str, field: str) -> tuple[str, int]:
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UserError(field, f"expected host:port, got {raw!r}")
    return host.strip("[]"), int(port)


def run(args: argparse.Namespace) -> int:
    from gemfinder.tasks.executor import ExecutorServer

    field = "--address" if args.address is not None else ADDRESS_ENV
    raw = args.address if args.address is not None else os.environ.get(ADDRESS_ENV)
    address = parse_address(raw or "127.0.0.1:8090", field)
    # An executor runs programs itself, whatever a shared environment says.
    sandbox.configure_executor("")
    os.environ.pop(sandbox.EXECUTOR_ENV, None)
    try:
        server = ExecutorServer(address)
    except OSError as err:
        raise UserError(field, f"cannot listen on {raw}: {err.strerror}") from None
    host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in host else host  # a URL's IPv6 host is bracketed
    layers = [k for k in sandbox.ALL_LAYERS if server.capabilities.get(k)]
    print(f"gemfinder executor: listening on http://{host}:{port}", flush=True)
    print(f"gemfinder executor: isolation {' '.join(layers)}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop.wait()
    print("gemfinder executor: shutting down", flush=True)
    server.shutdown()
    server.server_close()
    return 0
