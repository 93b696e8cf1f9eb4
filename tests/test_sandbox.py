"""Hostile programs against the sandbox: none may escape, hang the grader or leave processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gemfinder.tasks import _sandbox_cgroup, sandbox
from gemfinder.tasks.sandbox import run_program

CAPS = sandbox.capabilities()


# A grandchild that sleeps with `marker` in its command line (sleep(1) would reject the extra
# argument and exit at once, so the tests would pass without anything to kill).
_SLEEPER = (
    'os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(30)", "{marker}"])'
)


def _procs_with_marker(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmd:
                found.append(int(entry))
    return found


def test_capabilities_report_layers():
    assert CAPS["probe_passed"] is True
    for layer in sandbox.BASE_LAYERS + ("rlimits",):
        assert CAPS[layer] is True


def test_passing_and_failing_programs():
    ok = run_program("assert 1 + 1 == 2\nprint('hi')\n")
    assert ok.passed and ok.exit_code == 0 and "hi" in ok.stdout
    bad = run_program("assert 1 + 1 == 3\n")
    assert not bad.passed and bad.exit_code == 1 and "AssertionError" in bad.stderr
    assert set(sandbox.BASE_LAYERS) <= set(ok.isolation)


def test_infinite_loop_times_out_quickly():
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", timeout_s=1.0)
    assert result.timed_out and not result.passed
    assert time.monotonic() - start < 5


def test_fork_bomb_is_contained():
    src = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    start = time.monotonic()
    result = run_program(src, timeout_s=2.0)
    assert not result.passed
    assert time.monotonic() - start < 10
    # The grader is still usable right afterwards.
    assert run_program("print(1)\n").passed


def test_memory_bomb_is_contained():
    result = run_program("x = bytearray(8 << 30)\n", timeout_s=5.0, memory_mb=512)
    assert not result.passed and "MemoryError" in result.stderr


def test_cannot_touch_files_outside_its_directory(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    tmp_path.chmod(0o755)
    victim.chmod(0o644)
    src = f"""
import os
errors = 0
for action in (
    lambda: os.remove({str(victim)!r}),
    lambda: open({str(victim)!r}, "w").write("pwned"),
    lambda: open({str(tmp_path / "new.txt")!r}, "w").write("new"),
    lambda: open("/etc/gemfinder-pwned", "w").write("x"),
):
    try:
        action()
    except OSError:
        errors += 1
open("inside.txt", "w").write("fine")  # its own directory is writable
assert errors == 4, errors
"""
    result = run_program(src)
    assert result.passed, result.stderr
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "new.txt").exists()
    assert not Path("/etc/gemfinder-pwned").exists()


def test_private_tmp_hides_host_tmp(tmp_path):
    if not CAPS["private_tmp"]:
        pytest.skip("no mount namespace here: /tmp is shared (reported as private_tmp=False)")
    result = run_program("import os\nassert os.listdir('/tmp') == [], os.listdir('/tmp')\n")
    assert result.passed, result.stderr


def test_environment_secrets_are_not_visible(monkeypatch):
    monkeypatch.setenv("GEMFINDER_FAKE_SECRET", "hunter2-fake")
    src = """
import os, glob
assert "GEMFINDER_FAKE_SECRET" not in os.environ
for path in glob.glob("/proc/*/environ"):
    try:
        assert b"hunter2-fake" not in open(path, "rb").read(), path
    except PermissionError:
        pass
print("clean")
"""
    result = run_program(src)
    assert result.passed and "clean" in result.stdout, result.stderr


def test_network_is_unreachable():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    src = f"""
import socket
import subprocess
import sys
s = socket.socket()
s.settimeout(2)
s.connect(("127.0.0.1", {port}))
print("connected")
"""
    try:
        result = run_program(src)
    finally:
        server.close()
    if not CAPS["net_namespace"]:
        assert "net_namespace" not in result.isolation
        pytest.skip("no network namespace on this machine: network isolation is reported absent")
    assert "net_namespace" in result.isolation
    assert not result.passed and "connected" not in result.stdout


def test_killing_its_parent_does_not_hurt_the_grader():
    src = """
import os, signal
for target in (os.getppid(), 0, -1):
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass
"""
    # In a pid namespace getppid() is 0 and pid 1 ignores its own SIGKILL, so the program may
    # even finish; what matters is that nothing outside it was hit.
    result = run_program(src)
    assert not result.timed_out
    assert run_program("print('alive')\n").passed


def test_grandchild_that_outlives_the_timeout_is_killed():
    marker = f"gemfinder-grandchild-{os.getpid()}-{time.time_ns()}"
    src = f"""
import os, sys, time
if os.fork() == 0:
    try:
        os.setsid()  # denied by seccomp where it applies: the group kill must still reach it
    except OSError:
        pass
    if os.fork() == 0:
        {_SLEEPER.format(marker=marker)}
    os._exit(0)
time.sleep(30)
"""
    result = run_program(src, timeout_s=2.0)
    assert result.timed_out
    time.sleep(0.2)
    assert _procs_with_marker(marker) == []


def test_grandchild_of_a_finished_program_is_killed():
    marker = f"gemfinder-orphan-{os.getpid()}-{time.time_ns()}"
    src = f"""
import os, sys
if os.fork() == 0:
    try:
        os.setsid()
    except OSError:
        pass
    {_SLEEPER.format(marker=marker)}
"""
    result = run_program(src, timeout_s=5.0)
    assert result.passed
    time.sleep(0.2)
    assert _procs_with_marker(marker) == []


def test_concurrent_runs_from_threads():
    results = []

    def work(i: int) -> None:
        results.append(run_program(f"assert {i} * 2 == {2 * i}\n").passed)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 8


def test_fallback_without_namespaces_still_contains():
    # The path taken where the kernel refuses namespaces: layers are reported honestly.
    marker = f"gemfinder-fallback-{os.getpid()}-{time.time_ns()}"
    src = f"""
import os, sys
if os.fork() == 0:
    try:
        os.setsid()
    except OSError:
        pass
    {_SLEEPER.format(marker=marker)}
"""
    result = run_program(src, namespaces=False)
    assert result.passed
    assert "net_namespace" not in result.isolation and "pid_namespace" not in result.isolation
    time.sleep(0.2)
    assert _procs_with_marker(marker) == []


def test_memory_of_the_whole_process_tree_is_bounded():
    # 64 children each touching 64 MB and holding it: a per-process limit alone would allow
    # 4 GB. What counts is what is held at once: children that touched their 64 MB and are
    # still alive together (a child that touched and then died freed its memory; counting it
    # would add up memory that was never held at the same time).
    src = """
import os, signal, struct, time
read, write = os.pipe()
kids = []
for _ in range(64):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        try:
            block = bytearray(64 << 20)
            block[::4096] = b"x" * len(block[::4096])
            os.write(write, struct.pack("i", os.getpid()))
            time.sleep(60)
        finally:
            os._exit(0)
    kids.append(pid)
time.sleep(4)  # every child that can touch its 64 MB has done so
os.set_blocking(read, False)
touched = set()
try:
    while chunk := os.read(read, 4096):
        touched.update(struct.unpack(f"{len(chunk) // 4}i", chunk))
except BlockingIOError:
    pass
alive = {pid for pid in kids if os.waitpid(pid, os.WNOHANG) == (0, 0)}
print("held", len(touched & alive) * 64, "touched", len(touched), flush=True)
for pid in alive:
    os.kill(pid, signal.SIGKILL)
"""
    result = run_program(src, timeout_s=20.0, memory_mb=256)
    held = [int(x) for x in result.stdout.split()[1:2]] or [0]  # killed outright: nothing held
    assert held[0] <= 256, result.stdout
    assert {"cgroup", "process_cap"} & set(result.isolation)


def test_grader_killed_with_sigkill_takes_its_program_along(tmp_path):
    marker = f"gemfinder-grader-{os.getpid()}-{time.time_ns()}"
    program = f"""
import os, sys, time
if os.fork() == 0:
    {_SLEEPER.format(marker=marker)}
time.sleep(30)
"""
    source = tmp_path / "program.py"  # not on the grader's command line, which has no marker
    source.write_text(program)
    grader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from gemfinder.tasks import sandbox; "
            f"sandbox.run_program(open({str(source)!r}).read())",
        ]
    )
    deadline = time.monotonic() + 15
    while not _procs_with_marker(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _procs_with_marker(marker)
    grader.kill()
    grader.wait()
    deadline = time.monotonic() + 3
    while _procs_with_marker(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _procs_with_marker(marker) == []
    # Its run directory is still there, until the next grader's first run sweeps it.
    runs = sandbox._RUN_BASE
    stale = [p for p in runs.iterdir() if p.name.startswith(f"{grader.pid}-")]
    assert stale
    subprocess.run(
        [sys.executable, "-c", "from gemfinder.tasks import sandbox; sandbox.run_program('pass')"],
        check=True,
    )
    assert not any(p.exists() for p in stale)
    # So does its cgroup, where runs get one.
    for base in _sandbox_cgroup._bases():
        assert not list(base.glob(f"{grader.pid}-*")), base


def test_program_starts_with_default_signal_dispositions():
    # The launcher ignores job-control signals and handles SIGTERM; the program must not inherit.
    src = "import signal\nfor s in (15, 20, 21, 22):\n    assert signal.getsignal(s) == 0, s\n"
    assert run_program(src).passed
