"""Server memory and responsiveness under oversized input: the figures of docs/service.md.

    python -m bench.speed.request_limits                 # both parts, about 1 minute
    python -m bench.speed.request_limits --part preauth  # 8 unauthenticated 57 MB requests
    python -m bench.speed.request_limits --part answer   # a search against 100 MB answers

Runs `gemfinder serve` as a subprocess (so RSS is the server's alone) and prints its RSS before
and after (VmRSS) and at peak (VmHWM, from /proc). `preauth`: 8 concurrent StartSearch calls of
57 MB without the token. `answer`: a search whose endpoint answers every query with 100 MB,
while GetSearch is timed every 100 ms (the worst is printed). Extra flags go to `serve`, e.g.
`--max-message-bytes 67108864` or `--max-answer-bytes 209715200`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.hostile_endpoint import HostileEndpoint

TOKEN = "bench-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
MB = 1024 * 1024


def rss(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start_server(tmp: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    address = f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "gemfinder", "serve", "--address", address]
    argv += ["--metrics-port", "0", "--db", f"{tmp}/bench.db", "--token", TOKEN, *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(200):
            try:
                await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                return proc, address
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def item(i: int, fields: dict) -> pb.QueryItem:
    return pb.QueryItem(id=f"g{i}", task="gsm8k", fields_json=json.dumps(fields))


async def preauth(tmp: str, extra: list[str]) -> None:
    proc, address = await start_server(tmp, extra)
    before = rss(proc.pid)[0]
    big = item(0, {"question": "x" * (57 * MB), "answer": "#### 1"})
    request = pb.StartSearchRequest(
        spec=pb.SearchSpec(query_set=pb.QuerySet(inline=pb.InlineQuerySet(items=[big])))
    )
    options = [("grpc.max_send_message_length", -1)]
    codes = []
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = pb_grpc.ModelSearchServiceStub(channel)

        async def one():
            try:
                await stub.StartSearch(request, timeout=60)
                codes.append("OK")
            except grpc.aio.AioRpcError as err:
                codes.append(err.code().name)

        await asyncio.gather(*(one() for _ in range(8)))
    await asyncio.sleep(1)
    after, peak = rss(proc.pid)
    proc.terminate()
    proc.wait(30)
    print(
        f"preauth: 8 x 57 MB unauthenticated -> {sorted(set(codes))}; server RSS "
        f"{before:.0f} MB before, {peak:.0f} MB peak, {after:.0f} MB after"
    )


async def answer(tmp: str, extra: list[str]) -> None:
    async with HostileEndpoint(100 * MB) as endpoint:
        endpoints = Path(tmp) / "endpoints.json"
        endpoints.write_text(json.dumps([{"url": endpoint.url, "adapters": ["org/b"]}]))
        proc, address = await start_server(tmp, ["--endpoints", str(endpoints), *extra])
        before = rss(proc.pid)[0]
        spec = pb.SearchSpec(
            candidates=[
                pb.Candidate(model_id="org/base", endpoint=endpoint.url),
                pb.Candidate(model_id="org/b", endpoint=endpoint.url, adapter_id="org/b"),
            ],
            query_set=pb.QuerySet(
                inline=pb.InlineQuerySet(
                    items=[item(i, {"question": f"{i} + 1?", "answer": i + 1}) for i in range(4)]
                )
            ),
            budget=pb.Budget(per_model=4),
        )
        worst, state = 0.0, ""
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            started = await stub.StartSearch(pb.StartSearchRequest(spec=spec), metadata=AUTH)
            search_id = started.search.search_id
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                got = await stub.GetSearch(
                    pb.GetSearchRequest(search_id=search_id), metadata=AUTH, timeout=60
                )
                worst = max(worst, time.perf_counter() - t0)
                state = pb.SearchState.Name(got.search.state)
                if got.search.state >= pb.SEARCH_STATE_SUCCEEDED:
                    break
                await asyncio.sleep(0.1)
        after, peak = rss(proc.pid)
        proc.terminate()
        proc.wait(30)
    print(
        f"answer: {endpoint.requests} answers of 100 MB -> search {state} "
        f"({got.search.error[:80]!r}); worst GetSearch {worst * 1000:.0f} ms; server RSS "
        f"{before:.0f} MB before, {peak:.0f} MB peak, {after:.0f} MB after; endpoint sent "
        f"{endpoint.sent / MB:.0f} MB"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("preauth", "answer", "both"), default="both")
    args, extra = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("preauth", "both"):
            os.makedirs(f"{tmp}/p")
            await preauth(f"{tmp}/p", extra)
        if args.part in ("answer", "both"):
            os.makedirs(f"{tmp}/a")
            await answer(f"{tmp}/a", extra)


if __name__ == "__main__":
    asyncio.run(main())
