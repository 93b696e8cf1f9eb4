"""Graded queries per second through the oracle layer against a zero-latency simulated fleet.

The fleet runs in its own process (`gemfinder fleet serve`), so client and server do not share
one event loop. Multiple choice and MBPP (sandboxed code execution) are measured separately.

    python bench/oracle_throughput.py [--mc-pulls 3000] [--mbpp-pulls 200] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from gemfinder.candidates import load_candidates
from gemfinder.oracles import EndpointConfig, InferenceOracle
from gemfinder.sim.fleet.synthetic_items import generate, write_jsonl
from gemfinder.sim.matrix import CorrectnessMatrix, save_npz
from gemfinder.tasks import load_query_set

MODELS = 12


def _start_fleet(workdir: Path) -> tuple[subprocess.Popen, Path]:
    candidates = workdir / "candidates.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gemfinder",
            "fleet",
            "serve",
            "--matrix",
            str(workdir / "m.npz"),
            "--query-set",
            str(workdir / "items.jsonl"),
            "--endpoints",
            "2",
            "--max-concurrent",
            "512",
            "--candidates-out",
            str(candidates),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not candidates.exists():  # written whole (renamed into place) once the fleet listens
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("fleet did not start")
        time.sleep(0.1)
    return proc, candidates


async def _run(label: str, items, candidates, concurrency: int, pulls: int) -> dict:
    adapters = defaultdict(list)
    for c in candidates:
        if c.adapter_id:
            adapters[c.endpoint].append(c.adapter_id)
    endpoints = [
        EndpointConfig(url, adapters=tuple(adapters[url]), max_concurrency=concurrency)
        for url in {c.endpoint for c in candidates}
    ]
    oracle = InferenceOracle(endpoints)
    await oracle.prepare(candidates)
    work = [(c, it) for it in items for c in candidates][:pulls]
    start = time.perf_counter()
    results = await asyncio.gather(*(oracle.answer(c, it) for c, it in work))
    elapsed = time.perf_counter() - start
    await oracle.aclose()
    ok = sum(r.ok for r in results)
    latencies = sorted(r.latency_s for r in results)
    return {
        "workload": label,
        "pulls": len(results),
        "graded": ok,
        "seconds": round(elapsed, 2),
        "graded_per_s": round(ok / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99) - 1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mc-pulls", type=int, default=3000)
    parser.add_argument("--mbpp-pulls", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32, help="per endpoint")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        records = generate(100, seed=1, tasks=("arc_challenge", "mmlu", "winogrande", "mbpp"))
        write_jsonl(records, workdir / "items.jsonl")
        items = load_query_set(workdir / "items.jsonl")
        rng = np.random.default_rng(0)
        correct = (rng.random((MODELS, len(items))) < 0.6).astype(np.uint8)
        names = [f"bench/model-{k}" for k in range(MODELS)]
        save_npz(CorrectnessMatrix(correct, names, [it.id for it in items]), workdir / "m.npz")
        proc, cand_path = _start_fleet(workdir)
        try:
            candidates = load_candidates(cand_path)
            mc = [it for it in items if it.task != "mbpp"]
            mbpp = [it for it in items if it.task == "mbpp"]
            rows = [
                asyncio.run(
                    _run("multiple choice", mc, candidates, args.concurrency, args.mc_pulls)
                ),
                asyncio.run(_run("mbpp", mbpp, candidates, args.concurrency, args.mbpp_pulls)),
            ]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
