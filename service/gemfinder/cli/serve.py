"""`gemfinder serve`: run the gRPC ModelSearchService until SIGTERM or Ctrl-C.

Every flag also reads an environment variable (see gemfinder.config and docs/service.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from gemfinder import config as cfg


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the gRPC search service")
    cfg.add_arguments(parser)
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return asyncio.run(_run(cfg.load(args)))


async def _run(config: cfg.ServerConfig) -> int:
    from gemfinder.server.app import Server

    server = Server(config)
    port = await server.start()
    host = config.address.rpartition(":")[0]
    print(f"gemfinder serve: listening on {host}:{port}", flush=True)
    if server.metrics_port:
        print(
            f"gemfinder serve: metrics on http://{host}:{server.metrics_port}/metrics", flush=True
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("gemfinder serve: shutting down", flush=True)
    await server.stop()
    return 0
