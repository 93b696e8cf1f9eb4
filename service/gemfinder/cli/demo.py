"""`gemfinder demo`: generated model tree + simulated fleet + server + a real gRPC client.

No GPU, no network: see gemfinder.demo for what is generated. Prints the winner beside the most
popular model, queries spent against exhaustive evaluation, and where the metrics are.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from gemfinder import demo, report
from gemfinder.candidates import Candidate, load_candidates
from gemfinder.tasks import Item, load_query_set


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="end-to-end demo on generated data (no GPU)")
    parser.add_argument("--preset", default="qwen2.5-7b", help="model-tree preset")
    parser.add_argument("--models", type=int, default=300, help="pool size (fine-tunes + bases)")
    parser.add_argument("--items", type=int, default=1000, help="items before dropping MBPP")
    parser.add_argument("--per-model", type=int, default=50, help="query budget per model")
    parser.add_argument("--endpoints", type=int, default=4, help="simulated TGI servers")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fleet median latency")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="keep generated files here (default: a temp dir)")
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        return _run(args, Path(args.workdir))
    with tempfile.TemporaryDirectory(prefix="gemfinder-demo-") as tmp:
        return _run(args, Path(tmp))


def _run(args: argparse.Namespace, workdir: Path) -> int:
    start = time.monotonic()
    world = demo.build_world(workdir, args.preset, args.models, args.items, args.seed)
    m = world.matrix
    print(
        f"model tree: {m.n_models} models ({args.preset} preset), {m.n_items} generated items",
        flush=True,
    )
    procs = demo.Processes()
    try:
        candidates, endpoints = demo.start_fleet(
            procs, world, workdir, args.endpoints, args.latency_ms
        )
        metrics_port = demo.free_port()
        port, _ = demo.start_server(procs, workdir, endpoints, metrics_port)
        print(f"fleet: {args.endpoints} simulated TGI endpoints; server: 127.0.0.1:{port}")
        records = load_candidates(candidates)
        items = load_query_set(world.items_path)
        result = asyncio.run(_client(port, records, items, args))
        truth = dict(zip(m.models, m.accuracies().tolist(), strict=True))
        print()
        print(report.ranking_table(result, top=5))
        print()
        print(report.gem_report(result, truth))
        best = max(truth.values())
        winner_truth = truth[result.winner.model_id]
        rank = 1 + sum(v > winner_truth for v in truth.values())
        print(
            f"truth         the winner is rank {rank} of {m.n_models} by exhaustive accuracy "
            f"(best {best:.3f})"
        )
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        print(f"metrics       {url} (while the server runs); e.g. {_sample(url)}")
        print(f"done in {time.monotonic() - start:.0f}s; logs and data in {workdir}")
    finally:
        procs.close()
    return 0


def _sample(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
        text = resp.read().decode()
    wanted = ("gemfinder_budget_spent_total ", "gemfinder_searches_finished_total{")
    return "; ".join(line for line in text.splitlines() if line.startswith(wanted))


async def _client(port: int, candidates: list[Candidate], items: list[Item], args) -> object:
    import grpc
    from tqdm import tqdm

    from gemfinder.server.convert import spec_to_proto
    from gemfinder.v1 import gemfinder_pb2 as pb
    from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

    spec = spec_to_proto(candidates, items, args.per_model, args.seed)
    request_id = uuid.uuid4().hex
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ModelSearchServiceStub(channel)
        call = stub.SelectBestModel(pb.SelectBestModelRequest(spec=spec, request_id=request_id))
        if not args.no_progress:
            await _watch(stub, request_id, call, tqdm, pb)
        response = await call
    return response.search.result


async def _watch(stub, request_id: str, call, tqdm, pb) -> None:
    """Find the search by its request id, then follow WatchSearch with a progress bar."""
    search_id = ""
    while not search_id and not call.done():
        listed = await stub.ListSearches(pb.ListSearchesRequest(request_id=request_id))
        search_id = listed.searches[0].search_id if listed.searches else ""
        await asyncio.sleep(0.1)
    if not search_id:
        return
    bar = tqdm(total=1, unit="q", desc="searching", dynamic_ncols=True, mininterval=0.5)
    async for event in stub.WatchSearch(pb.WatchSearchRequest(search_id=search_id)):
        p = event.progress
        bar.total = max(p.budget, 1)
        bar.n = p.spent
        rnd = f"round {p.round}/{p.total_rounds}" if p.total_rounds else "done"
        bar.set_postfix_str(
            f"{rnd}, {p.survivors} left, leader {p.leader_model_id[-28:]} {p.leader_accuracy:.3f}"
        )
    bar.close()
