"""How fast a search against a dead fleet fails, and how many connections it costs.

    python bench/dead_fleet.py                  # 10,000 queries, 100 models on 4 dead endpoints

Every endpoint is a closed port on 127.0.0.1 (each connection is refused at once). The search
is allowed to start anyway (allow_unreachable) and runs through the SearchManager with the
InferenceOracle and the default retry policy, as the server would, until it fails (more queries
failed than its budget; docs/service.md "When a search fails"). Prints the wall time, the
connection attempts the oracle made and the attempts the circuit breaker spared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time

from gemfinder.candidates import Candidate
from gemfinder.oracles import InferenceOracle, OracleStats
from gemfinder.search.manager import SearchManager
from gemfinder.search.spec import SearchSpec
from gemfinder.sim.fleet.synthetic_items import generate
from gemfinder.store import Store
from gemfinder.tasks import parse_item


def closed_port() -> int:
    """A port nothing listens on: bound for a moment, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def run(args) -> dict:
    urls = [f"http://127.0.0.1:{closed_port()}" for _ in range(args.endpoints)]
    candidates = [
        Candidate(f"org/m-{k}", urls[k % len(urls)], adapter_id=f"org/m-{k}")
        for k in range(args.models)
    ]
    records = generate(args.items // 2, 0, tasks=("arc_challenge", "mmlu"))
    items = [parse_item(json.dumps(r), r["id"]) for r in records]
    spec = SearchSpec(
        candidates=candidates,
        items=items,
        budget=args.budget,
        allow_unreachable=True,
    )
    stats = OracleStats()
    oracle = InferenceOracle(stats=stats, validate=False)
    manager = SearchManager(Store(), oracle)
    t0 = time.perf_counter()
    row = await manager.start(spec)
    row = await manager.wait(row.id)
    wall = time.perf_counter() - t0
    await oracle.aclose()
    blocked = stats.count("attempt_blocked")
    return {
        "state": row.state,
        "seconds": wall,
        "connections": stats.count("attempt"),
        "blocked": blocked,
        "failed_pulls": stats.count("pull_failed"),
        "error": (row.error or "")[:100],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=10_000, help="queries of the search")
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--items", type=int, default=200)
    args = parser.parse_args()
    r = asyncio.run(run(args))
    print(
        f"{args.budget} queries, {args.models} models on {args.endpoints} dead endpoints: "
        f"{r['state']} in {r['seconds']:.1f} s; {r['connections']} connection attempts, "
        f"{r['blocked']} spared by the circuit breaker, {r['failed_pulls']} failed queries"
    )
    print(f"error: {r['error']}")


if __name__ == "__main__":
    main()
