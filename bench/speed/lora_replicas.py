"""Two replicas registering adapters on demand on one vLLM endpoint: their own caps (before)
vs the cap and the users shared through the store (gemfinder.lora_leases).

    python -m bench.speed.lora_replicas                 # 3 rounds of each
    python -m bench.speed.lora_replicas --rounds 1

The simulated vLLM of tests/oracles/lora_support.py (15 adapters on demand, max_cpu_loras 3,
queries answered after 2 ms) and a PostgreSQL server this bench starts from Debian's binaries
(tests/pg_support.py). Each run, on a new database: replicas A and B (each an oracle with a
store of its own and its own replica id, as two processes have) run one search each at once,
A over adapters 0-9 and B over 5-14 (five shared), budget 25 per model. Printed per run, from
the fleet's own record: the most gemfinder registrations it held at once, registrations (200),
"already loaded" answers, unregistrations, queries it refused because the adapter was gone
(404 "does not exist"), the searches' failed queries and the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from gemfinder.lora_leases import LoraLeases
from gemfinder.oracles import InferenceOracle
from gemfinder.pg_store import PgStore

from tests.fleet_support import FAST_RETRY
from tests.oracles.lora_support import CAP, LOAD, UNLOAD, Setup
from tests.pg_support import PostgresServer, find_bin


async def run(pg: PostgresServer, share: bool) -> dict[str, float]:
    setup = Setup(latency_s=0.002)
    db = pg.new_database()
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        replicas = []
        for name, rows in (("A", setup.rows[:10]), ("B", setup.rows[5:])):
            store = PgStore(db)
            oracle = InferenceOracle([setup.endpoint(url)], policy=FAST_RETRY)
            if share:
                oracle.share_adapters(LoraLeases(store, name))
            runner = setup.runner(oracle, url, name, rows, store)
            await oracle.prepare(runner.spec.candidates)
            replicas.append((store, oracle, runner))
        start = time.perf_counter()
        try:
            results = await asyncio.gather(*(runner.run() for _, _, runner in replicas))
        finally:
            for store, oracle, _ in replicas:
                await oracle.aclose()
                store.close()
        wall = time.perf_counter() - start
    return {
        "most at once": state.most_registered,
        "registered": _logged(state, LOAD),
        "already loaded": state.lora_statuses[400],
        "unregistered": _logged(state, UNLOAD),
        "refused (gone)": state.statuses[404],
        "failed queries": sum(r.queries_failed for r in results),
        "wall s": wall,
    }


def _logged(state, route: str) -> int:
    """Successful loads or unloads (the fleet logs those only)."""
    return sum(1 for done, _, _ in state.lora_log if done == route)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bin_dir = find_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL not installed: see tests/pg_support.py")
    pg = PostgresServer(bin_dir, fsync=True)
    try:
        figures: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for n in range(args.rounds):
            for share in (False, True):
                row = await run(pg, share)
                figures[share].append(row)
                mode = "shared" if share else "own caps"
                print(f"round {n + 1} {mode:8s} " + "  ".join(f"{k} {v:g}" for k, v in row.items()))
        print(f"\nmedians over {args.rounds} rounds (max_cpu_loras {CAP}):")
        for share in (False, True):
            rows = figures[share]
            mode = "shared through the store" if share else "each replica its own cap"
            cells = "  ".join(f"{k} {statistics.median(r[k] for r in rows):g}" for k in rows[0])
            print(f"  {mode}: {cells}")
    finally:
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
