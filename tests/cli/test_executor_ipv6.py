"""`gemfinder executor --address [::]:PORT` (an IPv6-only or dual-stack pod) listens and answers
/healthz; it refused to start ("Address family for hostname not supported")."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request

from tests.server.replica_support import require_ipv6


def test_executor_listens_on_the_ipv6_wildcard(tmp_path):
    require_ipv6()
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
