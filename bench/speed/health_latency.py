"""Health-check latency while searches at the heaviest allowed parameters run.

    python -m bench.speed.health_latency                          # every algorithm, 200 probes each
    python -m bench.speed.health_latency --algorithms ttts --models 2000 --probes 100

Three processes, so that nothing but the server's own work delays a probe: a simulated TGI
fleet (`gemfinder fleet serve`), the server (`gemfinder serve`) and this client. For each
algorithm, four searches run at once with the largest parameter values the core accepts
(docs/search.md, "Parameter ranges"; a finished search is replaced by a new one), while
`--probes` gRPC health checks are sent `--interval-ms` apart; each probe's round trip is
timed. Prints p50, p99 and max per algorithm and over all probes. Goal: p99 under 100 ms. Last,
the server's CPU per query it had answered by an endpoint (user + system time of its process
over the run, from /proc, idle probes included): what search.pressure's back-off is sized by.
With `--loop-steps`, the server's longest event-loop steps by kind and its full garbage
collections' pauses (bench.speed.loop_steps).

First it times the scheduler calls themselves (in this process, no server): the longest `ask`
and `tell_many` of a search on the same pool at the same parameters, asked in the batches the
runner uses. The service runs those calls on a worker thread; this is the time they would have
held the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
from gemfinder import _core
from gemfinder.candidates import load_candidates
from gemfinder.server.convert import spec_to_proto
from gemfinder.sim.fleet.synthetic_items import generate
from gemfinder.sim.matrix import CorrectnessMatrix, save_npz
from gemfinder.tasks import parse_item
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TASKS = ("arc_challenge", "mmlu", "winogrande", "gsm8k")
SEARCHES = 4
FINISHED = (pb.SEARCH_STATE_SUCCEEDED, pb.SEARCH_STATE_FAILED, pb.SEARCH_STATE_CANCELLED)


def heaviest(algorithm: str, models: int) -> dict[str, float]:
    """The parameter values that make one scheduler call do the most work (core_rs config.rs:
    the ranges' ends), and the most tries per pull for every algorithm."""
    params = {
        "ttts": {"leader_prob": 1e-9, "max_resample": 1000.0},  # every choice a challenger hunt
        "ucb": {"c": 100.0},
        "ucb_e": {"a": 1e6},
        "gem": {"first_cut": float(models - 1), "first_round_share": 1e-9},
    }.get(algorithm, {})
    return params | {"max_attempts": 10.0}


def write_pool(tmp: Path, models: int, per_task: int) -> tuple[Path, Path]:
    """A pool with one clear best model, so that TTTS's posterior soon has a confident leader
    (the case in which every challenger search spends all `max_resample` draws)."""
    records = generate(per_task, 0, tasks=TASKS)
    items = [parse_item(json.dumps(r), r["id"]) for r in records]
    rng = np.random.default_rng(0)
    acc = np.append(rng.uniform(0.2, 0.6, models - 1), 0.97)
    correct = (rng.random((models, len(items))) < acc[:, None]).astype(np.uint8)
    names = [f"org/ft-{k}" for k in range(models)]
    save_npz(CorrectnessMatrix(correct, names, [it.id for it in items]), tmp / "pool.npz")
    with (tmp / "items.jsonl").open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(r) + "\n" for r in records)
    return tmp / "pool.npz", tmp / "items.jsonl"


def start(argv: list[str], log: Path, module: list[str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *(module or ["gemfinder"]), *argv],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float = 120) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before {pattern!r}")
        found = re.search(pattern, line)
        if found:
            return found
    raise TimeoutError(pattern)


async def keep_searching(stub, make_spec, stop: asyncio.Event, counts: dict[str, int]) -> None:
    """Keep SEARCHES searches running until `stop`; then cancel those still running."""
    running: list[str] = []
    seed = 0
    while not stop.is_set():
        for sid in list(running):
            search = (await stub.GetSearch(pb.GetSearchRequest(search_id=sid))).search
            if search.state in FINISHED:
                running.remove(sid)
                counts["finished"] += 1
                counts["queries"] += search.progress.spent
                counts["cached"] += search.progress.cached
        while len(running) < SEARCHES:
            seed += 1
            reply = await stub.StartSearch(pb.StartSearchRequest(spec=make_spec(seed)))
            running.append(reply.search.search_id)
            counts["started"] += 1
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass
    for sid in running:
        search = (await stub.CancelSearch(pb.CancelSearchRequest(search_id=sid))).search
        counts["queries"] += search.progress.spent
        counts["cached"] += search.progress.cached


async def probe(health, probes: int, interval_s: float) -> list[float]:
    """`probes` health checks `interval_s` apart (start to start); round trips in ms."""
    times: list[float] = []
    next_at = time.perf_counter()
    for _ in range(probes):
        begin = time.perf_counter()
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
        times.append((time.perf_counter() - begin) * 1000)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        next_at += interval_s
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return times


def call_times(algorithm: str, correct: np.ndarray, per_model: int) -> tuple[float, float, int]:
    """Longest ask and tell_many (ms) of one search driven to its end, answers from `correct`,
    in the runner's batches (a round up to 2,048 pulls, sequential algorithms 32), and calls."""
    k, n = correct.shape
    sched = _core.Scheduler(algorithm, k, n, per_model * k, 1, params=heaviest(algorithm, k))
    window = 2048 if sched.round_based else 32
    longest_ask = longest_tell = 0.0
    calls = 0
    while not sched.finished:
        begin = time.perf_counter()
        pulls = sched.ask(window)
        longest_ask = max(longest_ask, time.perf_counter() - begin)
        begin = time.perf_counter()
        sched.tell_many([(m, i, bool(correct[m, i])) for m, i in pulls])
        longest_tell = max(longest_tell, time.perf_counter() - begin)
        calls += 2
    return longest_ask * 1000, longest_tell * 1000, calls


def figures(times: list[float]) -> str:
    p50, p99 = np.percentile(times, [50, 99])
    return f"{p50:>7.1f} {p99:>7.1f} {max(times):>7.1f}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux: /proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(args, port: int, candidates, items) -> int:
    """Probe while each algorithm's searches run; returns the queries endpoints answered."""
    all_times: list[float] = []
    fetched = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ModelSearchServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        # Idle first: the floor set by this machine, not by the server's searches.
        idle = await probe(health, min(args.probes, 40), args.interval_ms / 1000)
        print(f"{'(idle)':<14} {'':>5} {'':>8} {figures(idle)}", flush=True)
        for algorithm in args.algorithms:
            params = heaviest(algorithm, len(candidates))

            def make_spec(seed: int, algorithm=algorithm, params=params) -> pb.SearchSpec:
                return spec_to_proto(
                    candidates, items, args.per_model, seed, algorithm=algorithm, params=params
                )

            stop = asyncio.Event()
            counts = {"started": 0, "finished": 0, "queries": 0, "cached": 0}
            searching = asyncio.create_task(keep_searching(stub, make_spec, stop, counts))
            # Probe once every search has started (each StartSearch of a 1,000-model spec holds
            # the loop for tens of ms of CPU itself, and under load they took 2 s in all), and
            # their first calls are under way: what is measured is health while they run.
            while counts["started"] < SEARCHES and not searching.done():
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            times = await probe(health, args.probes, args.interval_ms / 1000)
            stop.set()
            await searching
            all_times += times
            fetched += counts["queries"] - counts["cached"]
            print(
                f"{algorithm:<14} {counts['started']:>5} {counts['queries']:>8} {figures(times)}",
                flush=True,
            )
    print(f"{'all':<14} {'':>5} {'':>8} {figures(all_times)}")
    return fetched


def print_loop_steps(found: dict) -> None:
    """The server's loop holds (bench.speed.loop_steps): steps over 15 ms of CPU by kind (the
    first StartSearch also creates the endpoints' clients; `_run` is the server's start-up)."""
    over = ", ".join(f"{n} over {ms} ms" for ms, n in found["over_ms"].items())
    print(f"event loop: {found['steps']:,} steps, {found['steps_cpu_s']} s of CPU; {over}")
    for kind, s in found["slow_by_kind"].items():
        print(
            f"  {kind:<28} {s['count']:>5} steps over 15 ms, "
            f"median {s['median_ms']}, max {s['max_ms']} ms"
        )
    print(
        f"full collections: {found['gen2_pauses']}, pause median {found['gen2_median_ms']} ms, "
        f"max {found['gen2_max_ms']} ms (CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--per-task", type=int, default=100, help="items per task (4 tasks)")
    parser.add_argument("--per-model", type=int, default=20, help="query budget per model")
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--slots", type=int, default=16, help="max_concurrency per endpoint")
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=50.0)
    parser.add_argument(
        "--algorithms",
        nargs="+",
        default=["ttts", "ucb", "ucb_e", "gem", "sr", "sh", "sh_correlated", "bayes_elim"],
    )
    parser.add_argument("--logs", help="directory to keep the fleet's and server's logs in")
    parser.add_argument(
        "--loop-steps",
        action="store_true",
        help="time the server's event-loop steps and full collections (bench.speed.loop_steps) "
        "and print the longest by kind",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        logs = Path(args.logs) if args.logs else tmp
        logs.mkdir(parents=True, exist_ok=True)
        matrix, query_set = write_pool(tmp, args.models, args.per_task)
        fleet = start(
            [
                "fleet", "serve", "--matrix", str(matrix), "--query-set", str(query_set),
                "--endpoints", str(args.endpoints),
                "--candidates-out", str(tmp / "candidates.jsonl"),
                "--endpoints-out", str(tmp / "endpoints.json"),
            ],
            logs / "fleet.log",
        )  # fmt: skip
        server = None
        try:
            wait_for_line(fleet, r"candidates written")
            # Slots per endpoint as a TGI server has them (the oracle's limit per endpoint).
            settings = json.loads((tmp / "endpoints.json").read_text())
            for endpoint in settings:
                endpoint["max_concurrency"] = args.slots
            (tmp / "endpoints.json").write_text(json.dumps(settings))
            steps = tmp / "loop_steps.json"
            server = start(
                [
                    "serve", "--address", "127.0.0.1:0", "--db", str(tmp / "bench.db"),
                    "--endpoints", str(tmp / "endpoints.json"), "--log-level", "WARNING",
                ],
                logs / "server.log",
                ["bench.speed.loop_steps", str(steps)] if args.loop_steps else None,
            )  # fmt: skip
            port = int(wait_for_line(server, r"listening on 127\.0\.0\.1:(\d+)").group(1))
            candidates = load_candidates(tmp / "candidates.jsonl")
            items = [parse_item(line, str(i)) for i, line in enumerate(query_set.open())]
            correct = np.load(matrix)["correct"]
            print(f"{'algorithm':<14} {'calls':>7} {'ask ms':>7} {'tell ms':>8}  (scheduler alone)")
            for algorithm in args.algorithms:
                ask_ms, tell_ms, calls = call_times(algorithm, correct, args.per_model)
                print(f"{algorithm:<14} {calls:>7} {ask_ms:>7.2f} {tell_ms:>8.2f}", flush=True)
            print(
                f"{len(candidates)} models, {len(items)} items, {args.per_model} queries per "
                f"model, {SEARCHES} searches at once, {args.probes} probes "
                f"{args.interval_ms:.0f} ms apart (round trip, ms)"
            )
            print(f"{'algorithm':<14} {'runs':>5} {'queries':>8} {'p50':>7} {'p99':>7} {'max':>7}")
            cpu_before = cpu_seconds(server.pid)
            fetched = asyncio.run(measure(args, port, candidates, items))
            cpu = cpu_seconds(server.pid) - cpu_before
            print(
                f"server CPU {cpu:.1f} s for {fetched:,} queries answered by endpoints: "
                f"{1000 * cpu / max(fetched, 1):.2f} ms per answer"
            )
        finally:
            for proc in (server, fleet):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        print("a process ignored SIGTERM for 30 s", file=sys.stderr)
            if args.loop_steps and steps.exists():
                print_loop_steps(json.loads(steps.read_text()))


if __name__ == "__main__":
    main()
