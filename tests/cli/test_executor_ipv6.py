"""`gemfinder executor --address [::]:PORT` (an IPv6-only or dual-stack pod) listens and answers
/healthz; it refused to start ("Address family for hostname not supported")."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request

import pytest


def _require_ipv6() -> None:
    """A host without IPv6 (a container started with it off) cannot run this."""
    import socket

    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")


def test_executor_listens_on_the_ipv6_wildcard(tmp_path):
    _require_ipv6()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemfinder", "executor", "--address", "[::]:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        found = re.search(r"listening on http://\[::\]:(\d+)", line)
        assert found, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = f"http://[::1]:{found.group(1)}/healthz"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=10) as response:
            assert json.loads(response.read())["ok"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
