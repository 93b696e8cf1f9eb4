"""End-to-end service throughput and fleet utilisation: gRPC + runner + oracles + graders.

    python -m bench.speed.service_throughput                       # both runs below
    python -m bench.speed.service_throughput --latency-ms 50 --endpoints 4 --slots 16

Runs SelectBestModel through a real in-process server against a simulated TGI fleet (HTTP on
127.0.0.1) and prints graded queries per second and endpoint utilisation: requests in flight
at the fleet over its slots (endpoints x slots), sampled every 5 ms while the search runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time

import grpc
import numpy as np
from gemfinder.config import ServerConfig
from gemfinder.oracles import EndpointConfig, InferenceOracle
from gemfinder.server.app import Server
from gemfinder.server.convert import spec_to_proto
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.build import candidates_for, fleet_from_matrix
from gemfinder.sim.fleet.synthetic_items import generate
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.tasks import parse_item
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

TASKS = ("arc_challenge", "mmlu", "winogrande", "gsm8k")


def pool(models: int, per_task: int, seed: int = 0):
    items = [parse_item(json.dumps(r), r["id"]) for r in generate(per_task, seed, tasks=TASKS)]
    rng = np.random.default_rng(seed)
    acc = rng.uniform(0.2, 0.8, models)
    correct = (rng.random((models, len(items))) < acc[:, None]).astype(np.uint8)
    names = [f"org/ft-{k}" for k in range(models)]
    return CorrectnessMatrix(correct, names, [it.id for it in items]), items


async def run(args, latency_ms: float) -> dict:
    matrix, items = pool(args.models, args.per_task)
    config = fleet_from_matrix(
        matrix, args.endpoints, latency_median_s=latency_ms / 1000, max_concurrent_requests=512
    )
    fleet = await Fleet(config, matrix, items).start()
    urls = {name: fleet.url(name) for name in fleet.names}
    endpoints = [
        EndpointConfig(urls[e.name], adapters=tuple(e.adapters), max_concurrency=args.slots)
        for e in config.endpoints
    ]
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(
            ServerConfig(
                address="127.0.0.1:0",
                metrics_port=0,
                db=f"{tmp}/bench.db",
                allow_any_endpoint=True,  # the fleet on 127.0.0.1 (oracles.allowlist)
            ),
            oracle=InferenceOracle(endpoints),
        )
        port = await server.start()
        samples: list[int] = []
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                samples.append(sum(fleet.state(n).in_flight for n in fleet.names))
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample())
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.ModelSearchServiceStub(channel)
                request = pb.SelectBestModelRequest(
                    spec=spec_to_proto(candidates_for(config, urls, matrix), items, args.per_model)
                )
                start = time.perf_counter()
                response = await stub.SelectBestModel(request, timeout=600)
                wall = time.perf_counter() - start
        finally:
            done.set()
            await sampler
            await server.stop(0)
            await fleet.stop()
    spent = response.search.result.queries_spent
    slots = args.endpoints * args.slots
    return {
        "latency_ms": latency_ms,
        "queries": spent,
        "seconds": wall,
        "graded_per_s": spent / wall,
        "utilisation": float(np.mean(samples)) / slots if samples else 0.0,
        "slots": slots,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--per-task", type=int, default=150, help="items per task (4 tasks)")
    parser.add_argument("--per-model", type=int, default=20, help="query budget per model")
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--slots", type=int, default=16, help="max_concurrency per endpoint")
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 50.0])
    args = parser.parse_args()
    print(
        f"{args.models} models, {len(TASKS) * args.per_task} items, {args.per_model} queries "
        f"per model, {args.endpoints} endpoints x {args.slots} slots"
    )
    print(f"{'latency':>8} {'queries':>8} {'seconds':>8} {'graded/s':>9} {'utilisation':>12}")
    for latency in args.latency_ms:
        r = asyncio.run(run(args, latency))
        print(
            f"{r['latency_ms']:>6.0f}ms {r['queries']:>8} {r['seconds']:>8.2f} "
            f"{r['graded_per_s']:>9.0f} {r['utilisation']:>11.0%}"
        )


if __name__ == "__main__":
    main()
