"""`gemfinder serve --address [::]:PORT`, the usual way to listen on an IPv6-only or dual-stack
pod's addresses: the gRPC API, the metrics and the health port all serve. The metrics server was
handed the bracketed host and the server refused to start ("Name or service not known")."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.server.replica_support import free_port, require_ipv6


def test_serve_listens_on_ipv6_wildcard_with_metrics_and_health(tmp_path):
    require_ipv6()
    metrics_port, health_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemfinder", "serve", "--address", "[::]:0",
         "--db", str(tmp_path / "g.db"), "--metrics-port", str(metrics_port),
         "--health-port", str(health_port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        found = re.search(r"listening on \[::\]:(\d+)", line)
        assert found, (line, proc.stderr.read() if proc.poll() is not None else "")
        port = int(found.group(1))
        for host in ("[::1]", "127.0.0.1"):  # IPv6, and IPv4 through the dual-stack socket
            with grpc.insecure_channel(f"{host}:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == 1
        with grpc.insecure_channel(f"[::1]:{health_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == 1
        with urllib.request.urlopen(f"http://[::1]:{metrics_port}/metrics", timeout=10) as r:
            assert b"gemfinder_rpc_requests_total" in r.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
