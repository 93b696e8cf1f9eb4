"""gemfinder-process CPU per graded query with the PostgreSQL store vs the SQLite store.

    python -m bench.speed.store_backends                    # 3 rounds of each, alternating
    python -m bench.speed.store_backends --rounds 5 --models 300

One simulated TGI fleet (in this process) serves every run. Each run starts `gemfinder serve` as
a subprocess on a new, empty database (a SQLite file, or a new database on a PostgreSQL server
this bench starts from Debian's binaries, as the tests do: tests/pg_support.py), runs one
SelectBestModel and reads the serve process's CPU time (/proc, user + system) before and after
the call: the process's start-up is not counted, nor the fleet's or this client's work. The
PostgreSQL server's own CPU over the call is printed beside it. Runs alternate between the
backends so that drift on a shared machine hits both alike; the medians are compared.

Then the time one store call holds the event loop (the store is synchronous, called from the
loop: gemfinder.pg_store), per backend, for the calls of the search's hot path: the cache read
is one per batch of pulls the scheduler hands out (timed at BATCH keys), not one per query.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from gemfinder.server.convert import spec_to_proto
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.build import candidates_for, fleet_from_matrix
from gemfinder.store import open_store
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

from bench.speed.service_throughput import pool
from tests.pg_support import PostgresServer, find_bin

TICK = os.sysconf("SC_CLK_TCK")
BATCH = 32  # keys per timed cache read: a sequential algorithm's batch (search.runner)


def cpu_seconds(pid: int, children: bool = False) -> float:
    """user + system CPU of a live process (with its reaped children's when `children`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        used += int(fields[13]) + int(fields[14])  # cutime, cstime
    return used / TICK


def postgres_cpu(pg: PostgresServer) -> float:
    """The PostgreSQL server's CPU: the postmaster, its reaped backends, its live ones."""
    master = int((pg.data / "postmaster.pid").read_text().split()[0])
    total = cpu_seconds(master, children=True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            if int(text.rsplit(")", 1)[1].split()[1]) == master:  # ppid
                total += cpu_seconds(int(stat.parent.name))
        except (OSError, ValueError):
            continue  # a backend that ended meanwhile
    return total


async def one_run(db: str, endpoints: Path, request: pb.SelectBestModelRequest, log: Path):
    with log.open("a") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gemfinder", "serve", "--address", "127.0.0.1:0",
             "--metrics-port", "0", "--db", db, "--endpoints", str(endpoints)],
            stdout=subprocess.PIPE, stderr=err, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        line = await asyncio.to_thread(proc.stdout.readline)
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not port:
            raise SystemExit(f"gemfinder serve did not start: {line!r} (see {log})")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port.group(1)}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            await stub.ListSearches(pb.ListSearchesRequest())  # warm: the first call's imports
            before, start = cpu_seconds(proc.pid), time.perf_counter()
            response = await stub.SelectBestModel(request, timeout=900)
            wall, cpu = time.perf_counter() - start, cpu_seconds(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(30)
    return response.search.result.queries_spent, cpu, wall


async def bench(args) -> None:
    bin_dir = find_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL not installed: scripts/install.sh installs it")
    matrix, items = pool(args.models, args.per_task)
    config = fleet_from_matrix(
        matrix, args.endpoints, latency_median_s=args.latency_ms / 1000, max_concurrent_requests=512
    )
    fleet = await Fleet(config, matrix, items).start()
    pg = PostgresServer(bin_dir, fsync=True)  # a server as deployed: durable
    urls = {name: fleet.url(name) for name in fleet.names}
    request = pb.SelectBestModelRequest(
        spec=spec_to_proto(candidates_for(config, urls, matrix), items, args.per_model)
    )
    results: dict[str, list[tuple[float, float, float]]] = {"sqlite": [], "postgresql": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            endpoints = Path(tmp) / "endpoints.json"
            endpoints.write_text(
                json.dumps(
                    [
                        {"url": urls[e.name], "adapters": list(e.adapters),
                         "max_concurrency": args.slots}
                        for e in config.endpoints
                    ]
                )
            )  # fmt: skip
            for n in range(args.rounds):
                for backend in ("sqlite", "postgresql"):
                    db = f"{tmp}/run{n}.db" if backend == "sqlite" else pg.new_database("bench")
                    pg_before = postgres_cpu(pg)
                    queries, cpu, wall = await one_run(db, endpoints, request, Path(tmp) / "log")
                    pg_cpu = postgres_cpu(pg) - pg_before if backend == "postgresql" else 0.0
                    results[backend].append((cpu / queries * 1e6, pg_cpu / queries * 1e6, wall))
                    server = f", PostgreSQL CPU {pg_cpu / queries * 1e6:.0f} us/query"
                    print(
                        f"{backend:>10} run {n + 1}: {queries} graded queries in {wall:.2f} s, "
                        f"gemfinder CPU {cpu:.2f} s = {cpu / queries * 1e6:.0f} us/query"
                        + (server if pg_cpu else ""),
                        flush=True,
                    )
    finally:
        pg.stop()
        await fleet.stop()
    sqlite = statistics.median(r[0] for r in results["sqlite"])
    postgres = statistics.median(r[0] for r in results["postgresql"])
    server = statistics.median(r[1] for r in results["postgresql"])
    print(
        f"median gemfinder CPU per graded query: SQLite {sqlite:.0f} us, PostgreSQL "
        f"{postgres:.0f} us ({postgres / sqlite:.2f}x; goal <= 1.10x); PostgreSQL server "
        f"{server:.0f} us/query on top"
    )


def call_times(db: str, calls: int = 2000) -> dict[str, tuple[float, float]]:
    """{call: (median, 99th percentile) microseconds} of the store's hot-path calls."""
    store = open_store(db)
    store.create_search("s", None, {"bench": True})
    lookup = f"cached_many({BATCH})"
    times: dict[str, list[float]] = {lookup: [], "put_answers(8)": [], "save_snapshot": []}
    snapshot = os.urandom(20_000)
    for n in range(calls):
        answers = [(f"k{n}-{j}", n % 50, n * 8 + j, j % 2) for j in range(8)]
        # One batch of pulls as the runner reads it: a few answered before, the rest new.
        keys = [f"k{n - 1}-{j}" for j in range(8)] + [f"k{n}-new{j}" for j in range(BATCH - 8)]
        start = time.perf_counter()
        store.cached_many(keys)
        middle = time.perf_counter()
        store.put_answers("s", answers)
        end = time.perf_counter()
        store.save_snapshot("s", snapshot)
        times[lookup].append((middle - start) * 1e6)
        times["put_answers(8)"].append((end - middle) * 1e6)
        times["save_snapshot"].append((time.perf_counter() - end) * 1e6)
    store.close()
    return {
        name: (statistics.median(t), statistics.quantiles(t, n=100)[98])
        for name, t in times.items()
    }


def print_call_times(calls: int) -> None:
    pg = PostgresServer(find_bin(), fsync=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = {
                "sqlite": call_times(f"{tmp}/calls.db", calls),
                "postgresql": call_times(pg.new_database(), calls),
            }
    finally:
        pg.stop()
    print("event loop held per store call, median / p99 (us):")
    for name in rows["sqlite"]:
        (a, b), (c, d) = rows["sqlite"][name], rows["postgresql"][name]
        print(f"  {name:>15}: SQLite {a:6.0f} / {b:6.0f}   PostgreSQL {c:6.0f} / {d:6.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each backend")
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--per-task", type=int, default=150, help="items per task (4 tasks)")
    parser.add_argument("--per-model", type=int, default=20, help="query budget per model")
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--slots", type=int, default=16, help="max_concurrency per endpoint")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="fleet median latency")
    parser.add_argument("--calls", type=int, default=2000, help="store calls timed, of each")
    args = parser.parse_args()
    asyncio.run(bench(args))
    print_call_times(args.calls)


if __name__ == "__main__":
    main()
