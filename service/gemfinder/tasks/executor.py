"""The code executor: runs sandboxed programs for a grader in another process, pod or uid.

`gemfinder executor` serves a small HTTP API on a local or cluster-internal address; a server
started with `--executor URL` (GEMFINDER_EXECUTOR) sends every MBPP program there instead of
running it beside its own token, store and network. k8s/executor.yaml runs it as its own
Deployment: another uid, no service account token, no secrets, no store volume, read-only root,
all egress denied.

    POST /run  {"program": str, "timeout_s": float, "memory_mb": int}
      200      {"passed", "reason", "exit_code", "timed_out", "stdout", "stderr", "isolation",
                "duration_s"}
      400      {"error": "<field>: <reason>"}     503 when all run slots and the queue are busy
    GET /healthz  {"ok": true, "isolation": {layer: bool, ...}}

No authentication: only the service may reach it (NetworkPolicy; a loopback address locally).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import urllib.error
import urllib.request
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gemfinder.tasks import sandbox

MAX_PROGRAM_BYTES = 1 << 20
MAX_TIMEOUT_S = 60.0
MEMORY_MB_RANGE = (64, 4096)
# Requests admitted at once (running or waiting for one of sandbox.MAX_CONCURRENT slots), beyond
# which the executor answers 503: above the service's grading threads (asyncio's default pool,
# at most 32), so an ordinary service never sees it. A waiting request may wait QUEUE_WAIT_S.
MAX_ADMITTED = 64
QUEUE_WAIT_S = 300.0


class ExecutorError(RuntimeError):
    """The executor could not run the program: a grading failure, never a wrong answer."""


def reason(result: sandbox.SandboxResult) -> str:
    if result.passed:
        return ""
    if result.timed_out:
        return "timeout"
    if result.exit_code is None:
        return result.stderr.rsplit("sandbox: stopped: ", 1)[-1].strip() or "stopped"
    return f"exit code {result.exit_code}"


def parse_request(body: bytes) -> tuple[str, float, int]:
    """(program, timeout_s, memory_mb) from a /run body; ValueError names the bad field."""
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"body: not JSON ({err})") from None
    if not isinstance(obj, dict):
        raise ValueError("body: expected a JSON object")
    program = obj.get("program")
    if not isinstance(program, str) or not program.strip():
        raise ValueError("program: must be a non-empty string")
    timeout_s = obj.get("timeout_s", 10.0)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise ValueError("timeout_s: must be a number")
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise ValueError(f"timeout_s: must be in (0, {MAX_TIMEOUT_S}], got {timeout_s}")
    memory_mb = obj.get("memory_mb", 1024)
    low, high = MEMORY_MB_RANGE
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int):
        raise ValueError("memory_mb: must be an integer")
    if not low <= memory_mb <= high:
        raise ValueError(f"memory_mb: must be in [{low}, {high}], got {memory_mb}")
    return program, float(timeout_s), memory_mb


class _Handler(BaseHTTPRequestHandler):
    server: ExecutorServer
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a connection may sit idle or trickle its request (one thread each)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass  # one line per program is noise; failures are in the responses

    def _reply(self, status: int, obj: dict[str, Any]) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != "/healthz":
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"path: no {self.path}"})
            return
        self._reply(HTTPStatus.OK, {"ok": True, "isolation": self.server.capabilities})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/run":
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"path: no {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._reply(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length: required"})
            return
        if not 0 < length <= MAX_PROGRAM_BYTES + 4096:
            self.close_connection = True
            self._reply(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"program: larger than {MAX_PROGRAM_BYTES} bytes"},
            )
            return
        try:
            program, timeout_s, memory_mb = parse_request(self.rfile.read(length))
        except ValueError as err:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(err)})
            return
        if not self.server.admit.acquire(blocking=False):
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "executor: all slots busy"})
            return
        try:
            result = sandbox.run_local(program, timeout_s=timeout_s, memory_mb=memory_mb)
        finally:
            self.server.admit.release()
        self._reply(
            HTTPStatus.OK,
            {
                "passed": result.passed,
                "reason": reason(result),
                "exit_code": result.exit_code,
                "timed_out": result.timed_out,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "isolation": list(result.isolation),
                "duration_s": result.duration_s,
            },
        )


class ExecutorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        if ":" in address[0]:  # an IPv6 host (`[::]:8090`, brackets removed): its family
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.admit = threading.Semaphore(MAX_ADMITTED)
        self.capabilities = sandbox.capabilities()


def run_remote(url: str, source: str, timeout_s: float, memory_mb: int) -> sandbox.SandboxResult:
    """Run `source` on the executor at `url`; ExecutorError if it cannot say how it went."""
    body = json.dumps({"program": source, "timeout_s": timeout_s, "memory_mb": memory_mb})
    request = urllib.request.Request(
        f"{url}/run", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    # No proxy from the environment: the executor is a cluster-internal or loopback address.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout_s + QUEUE_WAIT_S) as response:
            obj = json.loads(response.read(1 << 20))
    except urllib.error.HTTPError as err:
        detail = err.read(2000).decode("utf-8", "replace")
        raise ExecutorError(f"executor {url}: HTTP {err.code}: {detail}") from None
    except (OSError, ValueError) as err:
        raise ExecutorError(f"executor {url}: {err}") from None
    try:
        return sandbox.SandboxResult(
            passed=obj["passed"] is True,
            exit_code=obj["exit_code"],
            timed_out=bool(obj["timed_out"]),
            stdout=str(obj["stdout"]),
            stderr=str(obj["stderr"]),
            isolation=tuple(obj["isolation"]),
            duration_s=float(obj["duration_s"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ExecutorError(f"executor {url}: malformed answer ({err!r})") from None


def main(argv: list[str] | None = None) -> int:
    """`python -m gemfinder.tasks.executor`: the `gemfinder executor` command without importing the
    other subcommands (and their dependencies), for a minimal executor image or interpreter."""
    import argparse

    from gemfinder.cli import executor as command
    from gemfinder.errors import UserError

    parser = argparse.ArgumentParser(prog="gemfinder executor")
    command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["executor", *(argv if argv is not None else sys.argv[1:])])
    try:
        return command.run(args)
    except UserError as err:
        print(f"gemfinder executor: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
