"""StartSearch latency under concurrency: many callers start searches at once.

    python bench/start_latency.py                      # 100 starts of 10-candidate searches
    python bench/start_latency.py --starts 100 --candidates 10 --endpoints 4

A real in-process server (`--max-active-searches` above the number of starts, the endpoints
file listing the fleet) and a healthy simulated TGI fleet on 127.0.0.1. Every caller sends one
StartSearch at the same moment (its own request id, its own 10 candidates); the figure is the
wall time from sending to the answer, which covers the pre-search check of the candidates'
endpoints. The searches then run to the end before the server stops (not timed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
from gemfinder.config import ServerConfig
from gemfinder.fleet import Fleet
from gemfinder.fleet.build import candidates_for, fleet_from_matrix
from gemfinder.fleet.synthetic_items import generate
from gemfinder.matrix import CorrectnessMatrix
from gemfinder.server.app import Server
from gemfinder.server.convert import spec_to_proto
from gemfinder.tasks import parse_item
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

TASKS = ("arc_challenge", "mmlu")


def pool(models: int, per_task: int, seed: int = 0):
    items = [parse_item(json.dumps(r), r["id"]) for r in generate(per_task, seed, tasks=TASKS)]
    rng = np.random.default_rng(seed)
    correct = (rng.random((models, len(items))) < rng.uniform(0.2, 0.8, (models, 1))).astype(
        np.uint8
    )
    names = [f"org/ft-{k}" for k in range(models)]
    return CorrectnessMatrix(correct, names, [it.id for it in items]), items


def endpoints_file(config, urls: dict[str, str], path: Path) -> str:
    data = [{"url": urls[e.name], "adapters": list(e.adapters)} for e in config.endpoints]
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


async def run(args) -> list[float]:
    matrix, items = pool(args.models, args.per_task)
    fleet_config = fleet_from_matrix(matrix, args.endpoints, max_concurrent_requests=64)
    fleet = await Fleet(fleet_config, matrix, items).start()
    urls = {name: fleet.url(name) for name in fleet.names}
    candidates = candidates_for(fleet_config, urls, matrix)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(
            address="127.0.0.1:0",
            metrics_port=0,
            db=f"{tmp}/bench.db",
            endpoints=endpoints_file(fleet_config, urls, Path(tmp) / "endpoints.json"),
            max_active_searches=args.max_active,
        )
        server = Server(config)
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.ModelSearchServiceStub(channel)
                await stub.ListSearches(pb.ListSearchesRequest(), timeout=10)  # channel up

                async def start(k: int) -> tuple[float, str]:
                    chosen = rng.choice(len(candidates), args.candidates, replace=False)
                    spec = spec_to_proto(
                        [candidates[i] for i in sorted(chosen)], items, args.per_model, seed=k
                    )
                    request = pb.StartSearchRequest(spec=spec, request_id=f"bench-{k}")
                    t0 = time.perf_counter()
                    reply = await stub.StartSearch(request, timeout=120)
                    return time.perf_counter() - t0, reply.search.search_id

                started = await asyncio.gather(*(start(k) for k in range(args.starts)))
                for _, search_id in started:  # let them finish: a clean stop, not timed
                    await server.manager.wait(search_id)
        finally:
            await server.stop(0)
            await fleet.stop()
    return sorted(t for t, _ in started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=100, help="concurrent StartSearch calls")
    parser.add_argument("--candidates", type=int, default=10, help="candidates per search")
    parser.add_argument("--models", type=int, default=40, help="models served by the fleet")
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--per-task", type=int, default=20, help="items per task (2 tasks)")
    parser.add_argument("--per-model", type=int, default=2, help="query budget per model")
    parser.add_argument("--max-active", type=int, default=200, help="--max-active-searches")
    args = parser.parse_args()
    latencies = asyncio.run(run(args))
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    print(
        f"{args.starts} concurrent StartSearch, {args.candidates} candidates each, "
        f"{args.endpoints} endpoints, --max-active-searches {args.max_active}"
    )
    print(
        f"accepted {len(latencies)}; latency p50 {statistics.median(latencies):.3f} s, "
        f"p99 {p(0.99):.3f} s, max {latencies[-1]:.3f} s"
    )


if __name__ == "__main__":
    main()
