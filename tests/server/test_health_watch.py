"""The standard health service's Watch through a real `gemfinder serve`, as a load balancer's
client-side health checking (gRPC's healthCheckConfig, Envoy) uses it.

Watch is a streaming handler written as a coroutine that sends with `context.write` (grpc_health's
aio servicer); the interceptors once iterated it as an async generator and every Watch ended
INTERNAL. Asserted: without the token, both names stream SERVING, a SIGTERM streams NOT_SERVING
and ends the stream (an open Watch once held every stop for the whole grace period, delaying the
handover of the searches), and the server exits 0 well within its grace.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICE = "gemfinder.v1.ModelSearchService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
GRACE_S = 30  # what stopping may take with calls still running; a Watch must not hold it


@pytest.fixture
def server(tmp_path):
    log = (tmp_path / "server.log").open("a")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "gemfinder", "serve", "--address", "127.0.0.1:0",
            "--db", str(tmp_path / "g.db"), "--metrics-port", "0", "--token", "s3cret",
            "--grace-s", str(GRACE_S),
        ],
        stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", proc.stdout.readline())
        assert port, (tmp_path / "server.log").read_text()
        yield proc, int(port.group(1)), tmp_path / "server.log"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_watch_streams_serving_then_not_serving_on_sigterm(server):
    proc, port, log = server
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        overall = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=30)
        assert next(overall).status == SERVING, log.read_text()
        assert next(watch).status == SERVING, log.read_text()
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert next(watch).status == NOT_SERVING
        assert next(overall).status == NOT_SERVING
        assert list(watch) == [] and list(overall) == []  # ended by the server, status OK
        assert watch.code() == grpc.StatusCode.OK
    assert proc.wait(GRACE_S) == 0
    assert time.monotonic() - start < GRACE_S / 3, "an open Watch held the stop"
    assert "internal error" not in log.read_text()


def test_watch_of_an_unknown_service_says_so(server):
    _, port, _ = server
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=30
        )
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        watch.cancel()
