"""Replicas as real processes: `gemfinder serve` subprocesses sharing one PostgreSQL database,
each on a fixed free port (so a client's channel names them all and a restarted replica comes
back at the same address), with helpers to follow searches and streams through gRPC."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_ipv6() -> None:
    """Skip the test on a host without IPv6 (a container started with it off)."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")


@dataclass
class Replica:
    name: str
    db: str
    endpoints: Path
    log_dir: Path
    lease_s: float = 3.0
    max_active: int = 8
    grace_s: float = 10.0  # the default: an upper bound, stopping ends long calls at once
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> Replica:
        log = (self.log_dir / f"{self.name}.log").open("a")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "gemfinder", "serve", "--address", self.address,
                "--db", self.db, "--endpoints", str(self.endpoints), "--metrics-port", "0",
                "--replica-id", self.name, "--lease-seconds", str(self.lease_s),
                "--max-active-searches", str(self.max_active), "--grace-s", str(self.grace_s),
            ],
            stdout=subprocess.PIPE, stderr=log, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        line = await asyncio.to_thread(self.proc.stdout.readline)
        assert re.search(r"listening on 127\.0\.0\.1:\d+", line), (self.name, line, self.tail())
        return self

    def kill(self) -> None:
        """kill -9: no release, no last writes."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    async def terminate(self) -> int:
        """SIGTERM (a graceful stop: leases handed over); its exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, 30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, lines: int = 30) -> str:
        path = self.log_dir / f"{self.name}.log"
        return "\n".join(path.read_text().splitlines()[-lines:]) if path.exists() else ""


def stub(channel: grpc.aio.Channel) -> pb_grpc.ModelSearchServiceStub:
    return pb_grpc.ModelSearchServiceStub(channel)


async def get(address: str, search_id: str) -> pb.Search:
    async with grpc.aio.insecure_channel(address) as channel:
        return (await stub(channel).GetSearch(pb.GetSearchRequest(search_id=search_id))).search


async def watch(address: str, search_id: str, after: int | None = None, limit: int | None = None):
    """The events of one WatchSearch call (up to `limit` of them, then the call is dropped)."""
    request = pb.WatchSearchRequest(search_id=search_id)
    if after is not None:
        request.after_sequence = after
    out = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = stub(channel).WatchSearch(request, timeout=120)
        async for event in call:
            out.append(event)
            if limit is not None and len(out) >= limit:
                call.cancel()
                break
    return out


def key(event: pb.WatchSearchResponse) -> tuple:
    """What makes two replicas' copies of one event the same event."""
    return (event.sequence, event.type, event.state, event.progress.SerializeToString())


def assert_follows_log(stream: list, log: list) -> None:
    """`stream` (a SNAPSHOT, then the events a client got, resumed or not) against the search's
    log as stored once it ended, which kept all but the PROGRESS events before the last (a
    stream that watched live got those too): each event once, in order, every stored event
    after the snapshot, the same as stored, and FINISHED last."""
    assert stream[0].type == pb.EVENT_TYPE_SNAPSHOT and stream[-1].type == pb.EVENT_TYPE_FINISHED
    assert log[-1].type == pb.EVENT_TYPE_FINISHED
    stored = {e.sequence: key(e) for e in log}
    numbers = [e.sequence for e in stream[1:]]
    assert numbers == sorted(set(numbers)), "an event repeated or out of order"
    assert [n for n in numbers if n in stored] == [n for n in stored if n > stream[0].sequence]
    for event in stream[1:]:
        if event.sequence in stored:
            assert key(event) == stored[event.sequence]
        else:
            assert event.type == pb.EVENT_TYPE_PROGRESS  # pruned at the end


def assert_pruned_only_progress(stored: dict[int, str], progress: str) -> None:
    """The log of an ended search, {number: type}: numbered from 1, and the numbers it lacks are
    PROGRESS events pruned with the end, so all below its last PROGRESS (which is kept)."""
    missing = set(range(1, max(stored) + 1)) - set(stored)
    last = max((n for n, kind in stored.items() if kind == progress), default=0)
    assert all(n < last for n in missing), f"events lost, not pruned: {sorted(missing)}"


def assert_numbered_without_gaps(snapshot: int, numbers: list[int], stored: set[int]) -> None:
    """A live watch's event numbers after its SNAPSHOT (numbered `snapshot`), against the numbers
    the search's log kept once it ended (`stored`): every event as it was written, no gap while
    the search ran. Gaps may come at its last read, after the end: the PROGRESS events written
    since its previous read were pruned with the end (a tick late on a loaded machine). As they
    sit between kept round events, that one read may show several gaps (once [2, 3, 4, 7, 8,
    10, ...]: 5, 6 and 9 pruned), but it holds only kept events. So: no kept event missing, and
    from the first gap on only kept events (a gap while the search ran is caught once a PROGRESS
    event the end pruned follows it; followed by kept events only, it looks like a late read)."""
    assert numbers == sorted(set(numbers)), "an event repeated or out of order"
    steps = list(zip([snapshot, *numbers], numbers, strict=False))
    gaps = [n for n, (before, this) in enumerate(steps) if this > before + 1]
    for n in gaps:
        before, this = steps[n]
        assert not set(range(before + 1, this)) & stored, f"a kept event missing: {numbers}"
    if gaps:
        assert set(numbers[gaps[0] :]) <= stored, f"a gap while the search ran: {numbers}"
