"""Client CPU per graded query: gemfinder's oracle beside bare HTTP clients, one fleet, one run.

Issue 15's acceptance bench. The same simulated TGI fleet process (zero latency, 2 endpoints,
12 models) answers every client; every client sends the same multiple-choice queries (same
prompts, same greedy settings and the same request body as gemfinder's TGI backend, 32 in
flight per endpoint) and grades the answers with the same grader. Clients:

- `aiohttp`: a bare aiohttp loop (POST /generate, json.loads, grade): the floor;
- `huggingface_hub`: a bare AsyncInferenceClient loop (`text_generation`, grade), the library's
  own HTTP client;
- `gemfinder`: the oracle (gemfinder.oracles.InferenceOracle: retries, circuit breaker, answer
  cap, statistics) in the calling process;
- `gemfinder-wN`: the oracle in N worker processes (gemfinder.oracles.workers), fed a batch of
  pulls at a time as the search runner feeds them.

CPU counts every client process (the bench process and its oracle workers; the fleet is not
counted), over the timed queries only; "main process" is the bench process's share, the part
that one core must carry (with workers: routing the pulls and reading back the results).
Variants run in turn, each in a fresh process, `--rounds` times, and each figure is the median
over rounds; ratios are to the bare aiohttp loop of the same run. graded/s depends on what else
the machine runs; the CPU figures much less.

    python -m bench.speed.client_cpu [--queries 3000] [--rounds 2] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from gemfinder.candidates import Candidate, load_candidates
from gemfinder.sim.fleet.synthetic_items import generate, write_jsonl
from gemfinder.sim.matrix import CorrectnessMatrix, save_npz
from gemfinder.tasks import Item, get_task, load_query_set

from bench.speed.oracle_throughput import MODELS, _start_fleet

CONCURRENCY = 32  # per endpoint, as in the measurement
WARMUP = 200


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes `pids` have used so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _payload(cand: Candidate, item: Item) -> tuple[str, dict]:
    task = get_task(item.task)
    gen = task.generation_for(item)
    params = {
        "max_new_tokens": gen.max_new_tokens,
        "stop": list(gen.stop),
        "do_sample": False,
        "return_full_text": False,
    }
    if cand.adapter_id:
        params["adapter_id"] = cand.adapter_id
    return task.build_prompt(item, False).text, params


def _grade(item: Item, text: str) -> int:
    return int(get_task(item.task).grade(item, text).correct)


class _Limits:
    def __init__(self, candidates: list[Candidate]) -> None:
        self.sems = {c.endpoint: asyncio.Semaphore(CONCURRENCY) for c in candidates}


async def _aiohttp(work, candidates) -> tuple[int, Callable]:
    import aiohttp

    limits = _Limits(candidates)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def one(cand: Candidate, item: Item) -> int | None:
        prompt, params = _payload(cand, item)
        async with limits.sems[cand.endpoint]:
            async with session.post(
                f"{cand.endpoint}/generate", json={"inputs": prompt, "parameters": params}
            ) as resp:
                if resp.status != 200:
                    return None
                body = json.loads(await resp.read())
        return _grade(item, body["generated_text"])

    return one, session.close


async def _hf(work, candidates) -> tuple[Callable, Callable]:
    from huggingface_hub import AsyncInferenceClient

    limits = _Limits(candidates)
    clients = {c.endpoint: AsyncInferenceClient(token="bench") for c in candidates}

    async def one(cand: Candidate, item: Item) -> int | None:
        prompt, params = _payload(cand, item)
        async with limits.sems[cand.endpoint]:
            out = await clients[cand.endpoint].text_generation(
                prompt, model=f"{cand.endpoint}/generate", **params
            )
        return _grade(item, out)

    async def close() -> None:
        for client in clients.values():
            await client.close()

    return one, close


def _endpoints(candidates):
    from gemfinder.oracles import EndpointConfig

    adapters = defaultdict(list)
    for c in candidates:
        if c.adapter_id:
            adapters[c.endpoint].append(c.adapter_id)
    return [
        EndpointConfig(url, adapters=tuple(adapters[url]), max_concurrency=CONCURRENCY)
        for url in dict.fromkeys(c.endpoint for c in candidates)
    ]


async def _gemfinder(work, candidates) -> tuple[Callable, Callable]:
    from gemfinder.oracles import InferenceOracle

    oracle = InferenceOracle(_endpoints(candidates))
    await oracle.prepare(candidates)

    async def one(cand: Candidate, item: Item) -> int | None:
        return (await oracle.answer(cand, item)).reward

    return one, oracle.aclose


def _workers(n: int) -> Callable:
    async def make(work, candidates) -> tuple[Callable, Callable]:
        from gemfinder.oracles.workers import WorkerOracle

        oracle = WorkerOracle(_endpoints(candidates), workers=n)
        await oracle.prepare(candidates)
        _PIDS[:] = oracle.pids

        async def one(cand: Candidate, item: Item) -> int | None:
            return (await oracle.answer(cand, item)).reward

        return one, oracle.aclose

    return make


_PIDS: list[int] = []  # the oracle workers of the variant running


async def _timed(make, work, candidates) -> dict:
    one, close = await make(work, candidates)
    try:
        await asyncio.gather(*(one(c, it) for c, it in work[:WARMUP]))
        pids = [os.getpid(), *_PIDS]
        cpu0, main0, t0 = _cpu_of(pids), _cpu_of(pids[:1]), time.perf_counter()
        rewards = await asyncio.gather(*(one(c, it) for c, it in work[WARMUP:]))
        elapsed, cpu = time.perf_counter() - t0, _cpu_of(pids) - cpu0
        main = _cpu_of(pids[:1]) - main0
    finally:
        await close()
    graded = sum(r is not None for r in rewards)
    return {
        "graded": graded,
        "seconds": elapsed,
        "cpu_s": cpu,
        "main_cpu_s": main,
        "rewards": rewards,
    }


def _variants(workers: list[int]) -> dict[str, Callable]:
    out = {"aiohttp": _aiohttp, "huggingface_hub": _hf, "gemfinder": _gemfinder}
    out.update({f"gemfinder-w{n}": _workers(n) for n in workers})
    return out


def _workload(workdir: Path) -> None:
    records = generate(100, seed=1, tasks=("arc_challenge", "mmlu", "winogrande"))
    write_jsonl(records, workdir / "items.jsonl")
    items = load_query_set(workdir / "items.jsonl")
    rng = np.random.default_rng(0)
    correct = (rng.random((MODELS, len(items))) < 0.6).astype(np.uint8)
    names = [f"bench/model-{k}" for k in range(MODELS)]
    save_npz(CorrectnessMatrix(correct, names, [it.id for it in items]), workdir / "m.npz")


def _child(args: argparse.Namespace) -> None:
    """One variant in this (fresh) process: no client state leaks from one variant into
    another (gemfinder installs its client factory into huggingface_hub process-wide)."""
    candidates = load_candidates(args.candidates)
    items = load_query_set(args.items)
    pairs = [(c, it) for it in items for c in candidates]
    need = WARMUP + args.queries
    work = (pairs * (need // len(pairs) + 1))[:need]
    make = _variants(args.workers)[args.variant]
    print(json.dumps(asyncio.run(_timed(make, work, candidates))))


def _run_child(name: str, args: argparse.Namespace, candidates: Path, items: Path) -> dict:
    command = [
        sys.executable, "-m", "bench.speed.client_cpu", "--variant", name,
        "--candidates", str(candidates), "--items", str(items), "--queries", str(args.queries),
        "--workers", ",".join(map(str, args.workers)),
    ]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3000, help="timed queries per variant")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every variant (median)")
    parser.add_argument(
        "--workers",
        type=lambda s: [int(n) for n in s.split(",")],
        default=[1, 2],
        help="worker counts of the gemfinder-wN variants, comma-separated (default 1,2)",
    )
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--candidates", help=argparse.SUPPRESS)
    parser.add_argument("--items", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        return _child(args)
    rows: dict[str, list[dict]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        _workload(workdir)
        proc, candidates = _start_fleet(workdir)
        try:
            for _ in range(args.rounds):
                for name in _variants(args.workers):
                    rows[name].append(_run_child(name, args, candidates, workdir / "items.jsonl"))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    reference = rows["aiohttp"][0]["rewards"]
    base = statistics.median(r["cpu_s"] / r["graded"] for r in rows["aiohttp"])
    print(
        f"{'client':<16} {'graded/s':>9} {'CPU ms/graded':>14} {'x aiohttp':>10} "
        f"{'main process':>13}  same grades"
    )
    for name, runs in rows.items():
        cpu = statistics.median(r["cpu_s"] / r["graded"] for r in runs)
        main = statistics.median(r["main_cpu_s"] / r["graded"] for r in runs)
        rate = statistics.median(r["graded"] / r["seconds"] for r in runs)
        same = all(r["rewards"] == reference for r in runs)
        print(
            f"{name:<16} {rate:>9.0f} {1000 * cpu:>14.3f} {cpu / base:>10.2f} "
            f"{1000 * main:>13.3f}  {same}"
        )


if __name__ == "__main__":
    main()
