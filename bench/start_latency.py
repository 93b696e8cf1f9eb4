"""StartSearch latency under concurrency: many callers start searches at once.

    python bench/start_latency.py                      # 100 starts of 10-candidate searches
    python bench/start_latency.py --starts 100 --candidates 10 --endpoints 4 --latency-ms 1000

Three processes, as in a deployment: a healthy simulated TGI fleet (its generation takes
`--latency-ms`, as on GPUs elsewhere), the server (`--max-active-searches` above the number of
starts, its endpoints file listing the fleet) and the callers. Every caller sends one
StartSearch at the same moment (its own request id, its own candidates); the figure is the wall
time from sending to the answer, which covers the pre-search check of the candidates'
endpoints (their /info and /v1/models answer after `--probe-latency-ms`) while the searches
started before run. The server stops once every start is answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import grpc
import numpy as np
from aiohttp import web
from gemfinder.config import ServerConfig
from gemfinder.server.app import Server
from gemfinder.server.convert import spec_to_proto
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet import fleet as fleet_module
from gemfinder.sim.fleet import server as fleet_server
from gemfinder.sim.fleet.build import candidates_for, fleet_from_matrix
from gemfinder.sim.fleet.synthetic_items import generate
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.tasks import parse_item
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

TASKS = ("arc_challenge", "mmlu")
SPAWN = multiprocessing.get_context("spawn")


def world(args):
    """The pool (matrix, items) and the fleet serving it; the same in every process."""
    items = [parse_item(json.dumps(r), r["id"]) for r in generate(args.per_task, 0, tasks=TASKS)]
    rng = np.random.default_rng(0)
    accuracy = rng.uniform(0.2, 0.8, (args.models, 1))
    correct = (rng.random((args.models, len(items))) < accuracy).astype(np.uint8)
    names = [f"org/ft-{k}" for k in range(args.models)]
    matrix = CorrectnessMatrix(correct, names, [it.id for it in items])
    fleet = fleet_from_matrix(
        matrix,
        args.endpoints,
        latency_median_s=args.latency_ms / 1000,
        max_concurrent_requests=args.slots,
    )
    return matrix, items, fleet


def _fleet(args, urls_out, stop) -> None:
    """The fleet's process: serve until `stop` is set, after sending the endpoints' URLs.
    /info and /v1/models answer after `--probe-latency-ms` (the simulated fleet answers them at
    once; a real endpoint is a network hop away and busy generating)."""

    @web.middleware
    async def slow_probes(request: web.Request, handler):
        if request.path in ("/info", "/v1/models"):
            await asyncio.sleep(args.probe_latency_ms / 1000)
        return await handler(request)

    def make_app(state) -> web.Application:
        app = fleet_server.make_app(state)
        app.middlewares.append(slow_probes)
        return app

    fleet_module.make_app = make_app

    async def serve() -> None:
        matrix, items, config = world(args)
        fleet = await Fleet(config, matrix, items).start()
        urls_out.put({name: fleet.url(name) for name in fleet.names})
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await fleet.stop()

    asyncio.run(serve())


def _callers(port: int, requests: list[bytes]) -> list[float]:
    """The callers' process: send every StartSearch at once; each one's latency (s)."""

    async def send() -> list[float]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            await stub.ListSearches(pb.ListSearchesRequest(), timeout=10)  # channel up
            messages = [pb.StartSearchRequest.FromString(r) for r in requests]

            async def start(request: pb.StartSearchRequest) -> float:
                t0 = time.perf_counter()
                await stub.StartSearch(request, timeout=120)
                return time.perf_counter() - t0

            return await asyncio.gather(*(start(m) for m in messages))

    return asyncio.run(send())


async def run(args, urls: dict[str, str]) -> list[float]:
    matrix, items, fleet_config = world(args)
    candidates = candidates_for(fleet_config, urls, matrix)
    rng = np.random.default_rng(1)
    requests = []
    for k in range(args.starts):
        chosen = sorted(rng.choice(len(candidates), args.candidates, replace=False))
        spec = spec_to_proto([candidates[i] for i in chosen], items, args.per_model, seed=k)
        requests.append(pb.StartSearchRequest(spec=spec, request_id=f"b{k}").SerializeToString())
    with tempfile.TemporaryDirectory() as tmp:
        endpoints = Path(tmp) / "endpoints.json"
        listed = [
            {"url": urls[e.name], "adapters": list(e.adapters)} for e in fleet_config.endpoints
        ]
        endpoints.write_text(json.dumps(listed), encoding="utf-8")
        config = ServerConfig(
            address="127.0.0.1:0",
            metrics_port=0,
            db=f"{tmp}/bench.db",
            endpoints=str(endpoints),
            max_active_searches=args.max_active,
        )
        server = Server(config)
        port = await server.start()
        try:
            with ProcessPoolExecutor(1, mp_context=SPAWN) as callers:
                latencies = await asyncio.get_running_loop().run_in_executor(
                    callers, _callers, port, requests
                )
        finally:
            await server.stop(0)
    return sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=100, help="concurrent StartSearch calls")
    parser.add_argument("--candidates", type=int, default=10, help="candidates per search")
    parser.add_argument("--models", type=int, default=40, help="models served by the fleet")
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--slots", type=int, default=16, help="max_concurrent_requests each")
    parser.add_argument("--latency-ms", type=float, default=1000.0, help="generation time")
    parser.add_argument("--probe-latency-ms", type=float, default=50.0, help="/info answer time")
    parser.add_argument("--per-task", type=int, default=20, help="items per task (2 tasks)")
    parser.add_argument("--per-model", type=int, default=2, help="query budget per model")
    parser.add_argument("--max-active", type=int, default=200, help="--max-active-searches")
    args = parser.parse_args()
    urls_out, stop = SPAWN.Queue(), SPAWN.Event()
    fleet = SPAWN.Process(target=_fleet, args=(args, urls_out, stop))
    fleet.start()
    try:
        latencies = asyncio.run(run(args, urls_out.get(timeout=60)))
    finally:
        stop.set()
        fleet.join(30)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * len(latencies)) - 1)]
    print(
        f"{args.starts} concurrent StartSearch, {args.candidates} candidates each, "
        f"{args.endpoints} endpoints x {args.slots} slots at {args.latency_ms:.0f} ms, probes "
        f"{args.probe_latency_ms:.0f} ms, "
        f"--max-active-searches {args.max_active}"
    )
    print(
        f"accepted {len(latencies)}; latency p50 {statistics.median(latencies):.3f} s, "
        f"p99 {p99:.3f} s, max {latencies[-1]:.3f} s"
    )


if __name__ == "__main__":  # the fleet's and the callers' processes import this module
    main()
