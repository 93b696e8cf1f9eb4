"""With TLS, probes reach the health service on the plaintext --health-port, and only it.

Kubernetes' gRPC probes speak plaintext without a client certificate: against a TLS port the
handshake fails, and a pod serving TLS never became ready. A real `gemfinder serve` with a
self-signed certificate (openssl), called as the kubelet and as a TLS client would."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

import grpc
import pytest
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.server.replica_support import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING


def _certificate(tmp_path) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl not found: apt-get install openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
         "-out", cert, "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def _check(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_probes_reach_health_in_plaintext_while_the_api_needs_tls(tmp_path):
    cert, key = _certificate(tmp_path)
    health_port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemfinder", "serve", "--address", "127.0.0.1:0",
         "--db", str(tmp_path / "g.db"), "--metrics-port", "0", "--tls-cert", cert,
         "--tls-key", key, "--health-port", str(health_port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", proc.stdout.readline()).group(1))
        assert proc.stdout.readline().strip() == (
            f"gemfinder serve: health (plaintext) on 127.0.0.1:{health_port}"
        )
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as probe:
            assert _check(probe) == SERVING
            assert _check(probe, "gemfinder.v1.ModelSearchService") == SERVING
            with pytest.raises(grpc.RpcError) as refused:  # the API is not served in plaintext
                pb_grpc.ModelSearchServiceStub(probe).GetSearch(
                    pb.GetSearchRequest(search_id="x"), timeout=5
                )
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plaintext:
            with pytest.raises(grpc.RpcError):  # what the kubelet met before
                _check(plaintext)
        creds = grpc.ssl_channel_credentials(open(cert, "rb").read())
        with grpc.secure_channel(f"127.0.0.1:{port}", creds) as tls:
            assert _check(tls) == SERVING
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_health_port_in_use_is_one_line_naming_the_flag(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "gemfinder", "serve", "--address", "127.0.0.1:0",
             "--db", str(tmp_path / "g.db"), "--metrics-port", "0", "--health-port", str(busy)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"gemfinder serve: error: --health-port: 127.0.0.1:{busy} is already in use "
        "(another gemfinder serve?)"
    )
