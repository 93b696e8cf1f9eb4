"""Replicas on one PostgreSQL: Watch lag, takeover time and queries paid twice.

    python -m bench.speed.replicas                 # 3 rounds
    python -m bench.speed.replicas --rounds 1 --models 12 --per-model 10

Two `gemfinder serve` processes, A and B (tests/server/replica_support.py), share a database on
a PostgreSQL server this bench starts from Debian's binaries (fsync on, as deployed), against a
simulated TGI fleet in this process. Each round, on a new database each time:

1. **clean**: one search through A, uninterrupted; its /generate requests at the fleet.
2. **watch lag**: during that search, WatchSearch on A (the owner) and on B; the lag of an
   event is when a client received it minus when the owner produced it (the event's `created`
   in the database; one machine, one clock).
3. **kill -9**: the same search through A, A killed with SIGKILL at 40 % of the budget; the
   takeover time (kill until B owns the search, and A's last renewal until then: the lease plus
   up to one tick), and queries paid twice (requests over the clean run's).
4. **SIGTERM**: the same, A stopped gracefully (timed from the signal): its leases are released,
   B claims them within a tick.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import tempfile
import time
from pathlib import Path

import grpc
import psycopg
from gemfinder.v1 import gemfinder_pb2 as pb

from tests.pg_support import PostgresServer, find_bin
from tests.pool_support import (
    clear_best_pool,
    generate_requests,
    spec_proto,
    start_fleet,
    write_endpoints,
)
from tests.server.replica_support import Replica, stub


def _row(url: str, search_id: str) -> tuple:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT owner, lease_until, state, progress::json->>'spent',"
            " progress::json->>'budget' FROM searches WHERE id = %s",
            (search_id,),
        ).fetchone()


async def _created(url: str, search_id: str) -> dict[int, float]:
    """When each event was stored, read while the search runs: the write that ends a search
    prunes its PROGRESS events but the last (docs/service.md, Replicas)."""
    made: dict[int, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT seq, created, type FROM events WHERE search_id = %s AND seq > %s",
                (search_id, max(made, default=0)),
            ).fetchall()
            made.update((int(seq), float(created)) for seq, created, _ in rows)
            if any(kind == "finished" for _, _, kind in rows):
                return made
            await asyncio.sleep(0.05)


async def _received(address: str, search_id: str) -> list[tuple[int, float]]:
    out = []
    async with grpc.aio.insecure_channel(address) as channel:
        async for event in stub(channel).WatchSearch(pb.WatchSearchRequest(search_id=search_id)):
            if event.type != pb.EVENT_TYPE_SNAPSHOT:
                out.append((event.sequence, time.time()))
    return out


async def _start(address: str, spec, request_id: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        started = await stub(channel).StartSearch(
            pb.StartSearchRequest(spec=spec, request_id=request_id)
        )
    return started.search.search_id


async def _until_state(url: str, search_id: str, done) -> tuple:
    while True:
        row = _row(url, search_id)
        if done(row):
            return row
        await asyncio.sleep(0.01)


def _spent(row) -> float:
    return int(row[3] or 0) / max(int(row[4] or 1), 1)


async def one_round(pg, fleet, endpoints: Path, spec, lease: float, tmp: Path) -> dict:
    out: dict = {}
    # 1-2. clean run, watched on the owner and on the other replica
    url = pg.new_database()
    a, b = Replica("A", url, endpoints, tmp, lease), Replica("B", url, endpoints, tmp, lease)
    try:
        await asyncio.gather(a.start(), b.start())
        before = generate_requests(fleet)
        sid = await _start(a.address, spec, "clean")
        on_a, on_b, made = await asyncio.gather(
            _received(a.address, sid), _received(b.address, sid), _created(url, sid)
        )
        out["clean"] = generate_requests(fleet) - before
        # An event pruned between two of _created's reads (rare) is left out.
        out["lag_owner"] = [t - made[seq] for seq, t in on_a if seq in made]
        out["lag_other"] = [t - made[seq] for seq, t in on_b if seq in made]
    finally:
        a.stop()
        b.stop()
    # 3-4. the owner killed, then stopped gracefully, at 40 % of the budget
    for how in ("kill", "term"):
        url = pg.new_database()
        a, b = Replica("A", url, endpoints, tmp, lease), Replica("B", url, endpoints, tmp, lease)
        try:
            await asyncio.gather(a.start(), b.start())
            before = generate_requests(fleet)
            sid = await _start(a.address, spec, how)
            await _until_state(url, sid, lambda r: _spent(r) >= 0.4)
            stopped = time.time()
            if how == "kill":
                a.kill()
                renewed = _row(url, sid)[1] - lease  # A's last renewal, on the same clock
            else:
                a.proc.send_signal(signal.SIGTERM)  # not waited for: B may claim before A exits
            row = await _until_state(url, sid, lambda r: r[0] == "B" or r[2] == "succeeded")
            if row[0] != "B":
                raise SystemExit("the search ended before B took it over: give it more --models")
            took = time.time() - stopped
            await asyncio.to_thread(a.proc.wait, 30)
            await _until_state(url, sid, lambda r: r[2] == "succeeded")
            out[how] = {
                "takeover_s": took,
                "since_renewal_s": stopped + took - renewed if how == "kill" else None,
                "paid_twice": generate_requests(fleet) - before - out["clean"],
            }
        finally:
            a.stop()
            b.stop()
    return out


def _pct(values: list[float], q: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]


async def bench(args) -> None:
    bin_dir = find_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL not installed: scripts/install.sh installs it")
    matrix, items = clear_best_pool(n_models=args.models, per_task=12)
    fleet, candidates, configs = await start_fleet(matrix, items, latency_s=args.latency_ms / 1e3)
    pg = PostgresServer(bin_dir, fsync=True)
    rounds = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            endpoints = write_endpoints(configs, Path(tmp) / "endpoints.json")
            spec = spec_proto(candidates, items, per_model=args.per_model, seed=1)
            for n in range(args.rounds):
                result = await one_round(pg, fleet, endpoints, spec, args.lease, Path(tmp))
                rounds.append(result)
                kill, term = result["kill"], result["term"]
                print(
                    f"round {n + 1}: clean {result['clean']} queries; kill -9: taken over "
                    f"{kill['takeover_s']:.2f} s after the kill, {kill['since_renewal_s']:.2f} s "
                    f"after A's last renewal, {kill['paid_twice']} paid twice; SIGTERM: taken "
                    f"over {term['takeover_s']:.2f} s after, {term['paid_twice']} paid twice",
                    flush=True,
                )
    finally:
        pg.stop()
        await fleet.stop()
    for who in ("owner", "other"):
        lags = [lag * 1e3 for r in rounds for lag in r[f"lag_{who}"]]
        print(
            f"watch lag on the {who} replica ({len(lags)} events): p50 {_pct(lags, 50):.0f} ms, "
            f"p95 {_pct(lags, 95):.0f} ms, max {max(lags):.0f} ms"
        )
    print(f"lease {args.lease} s (tick {args.lease / 3:.2f} s), fleet latency {args.latency_ms} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--per-model", type=int, default=30)
    parser.add_argument("--lease", type=float, default=1.5, help="--lease-seconds of both")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
