"""`gemfinder executor` and the MBPP grader's use of it (--executor / GEMFINDER_EXECUTOR)."""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import subprocess
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
from gemfinder import config as cfg
from gemfinder.errors import UserError
from gemfinder.tasks import Item, get_task, sandbox
from gemfinder.tasks.executor import ExecutorError, run_remote

ITEM = Item("m1", "mbpp", {"text": "Write f.", "test_list": ["assert f(2) == 4"]})
GOOD, BAD = "def f(x):\n    return 2 * x\n", "def f(x):\n    return x\n"


@pytest.fixture
def executor():
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemfinder.tasks.executor", "--address", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert "listening on" in line, line
    yield proc, line.split("listening on ")[1].strip()
    proc.kill()
    proc.wait()


@pytest.fixture
def use_executor():
    def configure(url: str) -> None:
        sandbox.configure_executor(url)

    yield configure
    sandbox.configure_executor("")


def test_mbpp_grades_through_the_executor_and_fails_loudly_without_it(executor, use_executor):
    proc, url = executor
    use_executor(url)
    task = get_task("mbpp")
    assert task.grade(ITEM, GOOD).correct is True
    assert task.grade(ITEM, BAD).correct is False
    proc.kill()
    proc.wait()
    # The executor gone, grading raises: the oracle records a grading failure, not a 0.
    with pytest.raises(ExecutorError, match="executor"):
        task.grade(ITEM, GOOD)


def test_environment_variable_selects_the_executor(executor, monkeypatch):
    _, url = executor
    monkeypatch.setenv(sandbox.EXECUTOR_ENV, url)
    result = sandbox.run_program("import os\nprint(os.getpid())\n")
    assert result.passed
    monkeypatch.setenv(sandbox.EXECUTOR_ENV, "http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(ExecutorError):
        sandbox.run_program("pass\n")


def _post(url: str, body: bytes, path: str = "/run") -> tuple[int, dict]:
    request = urllib.request.Request(url + path, data=body)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"[1]", "body"),
        (b'{"program": ""}', "program"),
        (b'{"program": 5}', "program"),
        (b'{"program": "pass", "timeout_s": 0}', "timeout_s"),
        (b'{"program": "pass", "timeout_s": 1e999}', "timeout_s"),
        (b'{"program": "pass", "timeout_s": true}', "timeout_s"),
        (b'{"program": "pass", "memory_mb": 1}', "memory_mb"),
        (b'{"program": "pass", "memory_mb": 1.5}', "memory_mb"),
    ],
)
def test_bad_requests_name_the_field(executor, body, field):
    status, answer = _post(executor[1], body)
    assert status == 400 and answer["error"].startswith(f"{field}: "), answer


def test_oversized_program_and_unknown_paths(executor):
    _, url = executor
    # Refused on its Content-Length, before a byte of the body is read.
    conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    conn.putrequest("POST", "/run")
    conn.putheader("Content-Length", str(64 << 20))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"].startswith("program: ")
    conn.close()
    assert _post(url, b"{}", path="/nope")[0] == 404
    with urllib.request.urlopen(url + "/healthz", timeout=30) as response:
        health = json.loads(response.read())
    assert health["ok"] is True and health["isolation"]["seccomp"] is True


def test_answer_reports_reason_and_layers(executor):
    _, url = executor
    result = run_remote(url, "import time\ntime.sleep(5)\n", 0.5, 256)
    assert result.timed_out and not result.passed
    status, answer = _post(url, json.dumps({"program": "raise SystemExit(3)"}).encode())
    assert status == 200 and answer["reason"] == "exit code 3" and "seccomp" in answer["isolation"]


def test_executor_setting_is_validated_and_read_from_the_environment():
    args = argparse.Namespace(executor="gemfinder-executor:8090")
    with pytest.raises(UserError) as err:
        cfg.load(args, environ={})
    assert err.value.field == "--executor"
    loaded = cfg.load(None, environ={"GEMFINDER_EXECUTOR": "http://gemfinder-executor:8090"})
    assert loaded.executor == "http://gemfinder-executor:8090"


def test_server_with_an_executor_sends_programs_there(tmp_path, use_executor):
    from gemfinder.server.app import Server

    config = cfg.ServerConfig(
        address="127.0.0.1:0",
        metrics_port=0,
        db=str(tmp_path / "e.db"),
        executor="http://127.0.0.1:9/",
    )

    async def build() -> Server:  # grpc.aio wants a running loop; the server is never started
        return Server(config)

    server = asyncio.run(build())
    try:
        with pytest.raises(ExecutorError, match="127.0.0.1:9"):
            get_task("mbpp").grade(ITEM, GOOD)
    finally:
        server.store.close()


def test_busy_executor_answers_503_and_the_client_raises():
    import threading

    from gemfinder.tasks.executor import ExecutorServer

    server = ExecutorServer(("127.0.0.1", 0))
    server.admit = threading.Semaphore(0)  # as if MAX_ADMITTED requests were already in
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(ExecutorError, match="HTTP 503"):
            run_remote(url, "pass\n", 5.0, 256)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--address", "nonsense"], {}, "--address: expected host:port"),
        ([], {"GEMFINDER_EXECUTOR_ADDRESS": "h:99999"}, "GEMFINDER_EXECUTOR_ADDRESS: expected"),
        (["--address", "203.0.113.1:8090"], {}, "--address: cannot listen on"),
    ],
)
def test_executor_command_refuses_bad_addresses(argv, env, message, monkeypatch, capsys):
    from gemfinder.cli import main

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["executor", *argv]) == 2
    assert message in capsys.readouterr().err
