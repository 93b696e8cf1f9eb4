"""Hostile programs against the executor configuration k8s/ ships (issue 12, items 3 and 9).

Reproduced here: `gemfinder executor` runs as a non-root uid with namespaces forced off
(GEMFINDER_SANDBOX_NAMESPACES=0, the path a kernel that refuses namespaces takes, as under a
RuntimeDefault seccomp profile). Beside it runs a decoy "server" under the SAME uid - harsher
than k8s, where the service is another uid in another pod - holding GEMFINDER_TOKEN in its
environment and owning a store file, and the test itself listens on TCP as the gRPC server and
the inference endpoint would. Every attack must be contained, and the executor must keep
serving. Each test runs twice: namespaces forced off (as shipped) and, where the kernel grants
a non-root uid user namespaces, on. Needs root (to create and switch to the uid); tests run as
root here.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from gemfinder.tasks.executor import ExecutorError, run_remote

REPO_SERVICE = Path(__file__).resolve().parents[2] / "service"
USER = "gfexec"
TOKEN = "gf-token-4f1c9e7a"  # the decoy server's secret; no program output may contain it
MEMORY_MB = 512

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another uid")


def _uid() -> int:
    try:
        return pwd.getpwnam(USER).pw_uid
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            check=True,
        )
        return pwd.getpwnam(USER).pw_uid


def _as_user(argv: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    """Start argv as USER; setpriv and env exec, so the Popen's pid is argv's process."""
    user = pwd.getpwnam(USER)
    ids = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    pairs = [f"{k}={v}" for k, v in env.items()]
    return subprocess.Popen(["setpriv", *ids, "--", "env", "-i", *pairs, *argv], **kw)


def _start_executor(namespaces: bool) -> tuple[subprocess.Popen, str]:
    # Debian's interpreter: the test's venv may sit under a directory the uid cannot enter.
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    env = {"PYTHONPATH": str(REPO_SERVICE), "HOME": "/"}
    if not namespaces:
        env["GEMFINDER_SANDBOX_NAMESPACES"] = "0"
    # The executor runs gemfinder from this checkout as USER: a checkout under a directory only
    # root may enter (`mktemp -d` makes them 0700) fails here, saying so, not as a missing module.
    probe = _as_user(["test", "-r", str(REPO_SERVICE / "gemfinder" / "__init__.py")], {})
    assert probe.wait() == 0, (
        f"user {USER} cannot read {REPO_SERVICE}: clone gemfinder under directories every user "
        "may enter (e.g. chmod o+x on the clone's parents; mktemp -d makes them 0700)"
    )
    proc = _as_user(
        [python, "-m", "gemfinder.tasks.executor", "--address", "127.0.0.1:0"],
        env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd="/",
    )
    line = proc.stdout.readline()
    assert "listening on" in line, line + proc.stdout.read()
    layers = proc.stdout.readline()
    assert "seccomp" in layers and "process_cap" in layers, layers
    if namespaces and "user_namespace" not in layers:
        proc.kill()
        proc.wait()
        pytest.skip("this kernel refuses user namespaces to a non-root uid")
    assert ("namespace" in layers) == namespaces, layers
    return proc, line.split("listening on ")[1].strip()


# "off" is the configuration k8s/ ships (RuntimeDefault seccomp refuses namespaces); "on" is
# a non-root executor on a kernel that grants user namespaces.
@pytest.fixture(scope="module", params=["namespaces-off", "namespaces-on"])
def world(request):
    namespaces = request.param == "namespaces-on"
    uid = _uid()
    # The "server's" directory, owned by the uid and reachable by it (pytest's tmp_path sits
    # under a 0700 directory of root's, which would stop the program before any layer does).
    home = Path(tempfile.mkdtemp(prefix="gemfinder-hostile-"))
    home.chmod(0o755)
    os.chown(home, uid, uid)
    store = home / "gemfinder.db"
    store.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    os.chown(store, uid, uid)
    store.chmod(0o600)
    decoy = _as_user(
        ["/bin/sleep", "3600"],
        {"GEMFINDER_TOKEN": TOKEN, "GEMFINDER_DB": str(store)},
    )
    listeners = []
    for _ in range(2):  # the gRPC server and an inference endpoint
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.setblocking(False)
        listeners.append(s)
    executor, url = _start_executor(namespaces)
    time.sleep(0.3)
    decoy_pid = decoy.pid
    yield {
        "uid": uid,
        "url": url,
        "store": store,
        "store_digest": hashlib.sha256(store.read_bytes()).hexdigest(),
        "decoy_pid": decoy_pid,
        "ports": [s.getsockname()[1] for s in listeners],
        "listeners": listeners,
        "executor": executor,
        "namespaces": namespaces,
    }
    for proc in (executor, decoy):
        proc.kill()
        proc.wait()
    for s in listeners:
        s.close()
    shutil.rmtree(home)


def run(world, source: str, timeout_s: float = 10.0, memory_mb: int = MEMORY_MB):
    result = run_remote(world["url"], source, timeout_s, memory_mb)
    assert TOKEN not in result.stdout + result.stderr
    return result


def _report(result) -> dict:
    """The last JSON line a program printed."""
    lines = [x for x in result.stdout.splitlines() if x.startswith("{")]
    assert lines, result.stdout + result.stderr
    return json.loads(lines[-1])


def test_fork_bomb_with_memory_stays_within_the_memory_limit(world):
    src = """
import json, os
read, write = os.pipe()
kids = 0
for _ in range(64):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        got = 0
        chunks = []
        try:
            while True:
                chunks.append(bytearray(16 << 20))
                got += 16
        except MemoryError:
            pass
        os.write(write, f"{got}\\n".encode())
        os._exit(0)
    kids += 1
os.close(write)
total = sum(int(x) for x in os.fdopen(read).read().split())
print(json.dumps({"kids": kids, "child_mb": total}))
"""
    report = _report(run(world, src, timeout_s=20))
    assert report["kids"] < 8, report
    # The program's own interpreter plus its children, each capped at memory_mb / processes.
    assert report["child_mb"] <= MEMORY_MB, report


def test_disk_filling_is_stopped(world):
    src = """
import os, sys
written = 0
block = b"x" * (1 << 20)
for i in range(2500):
    try:
        with open(f"f{i}", "wb") as f:
            for _ in range(16):
                f.write(block)
                written += 1
    except OSError as err:
        print("error", err, flush=True)
    print(written, flush=True)
"""
    start = time.monotonic()
    result = run(world, src, timeout_s=20)
    if world["namespaces"]:  # the work directory is a 64 MB tmpfs of the run's own
        assert "No space left" in result.stdout, result.stdout[-300:]
    else:  # its size is polled and the run stopped
        assert not result.passed and "disk limit" in result.stderr, result.stderr[-300:]
    numbers = [int(x) for x in result.stdout.split() if x.isdigit()]
    assert max(numbers) < 256, max(numbers)  # MB; the cap is 64 MB, polled every 10 ms
    assert time.monotonic() - start < 15


SHARED = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")


def test_shared_writable_paths_are_closed_between_runs(world):
    marker = f"gemfinder-hostile-{os.getpid()}"
    write = f"""
import json
ok = []
for d in {SHARED!r}:
    try:
        open(d + "/{marker}", "w").write("planted")
        ok.append(d)
    except OSError:
        pass
print(json.dumps({{"written": ok}}))
"""
    written = _report(run(world, write))["written"]
    # With namespaces each of them is a tmpfs of the run's own; without, none is writable.
    assert written == (list(SHARED) if world["namespaces"] else [])
    for d in SHARED:
        assert not Path(d, marker).exists()
    read = f"""
import json, os
seen, found = {{}}, []
for d in {SHARED!r}:
    found += [d] if os.path.exists(d + "/{marker}") else []
    try:
        seen[d] = os.listdir(d)
    except OSError:
        pass
print(json.dumps({{"listed": seen, "found": found}}))
"""
    report = _report(run(world, read))
    assert report["found"] == []
    if not world["namespaces"]:
        assert report["listed"] == {}


def test_namespaces_io_uring_keyring_ptrace_and_mount_are_denied(world):
    src = f"""
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER = 0x10000000
params = ctypes.create_string_buffer(120)
calls = {{
    "unshare": lambda: libc.unshare(CLONE_NEWUSER),
    "clone_newuser": lambda: libc.syscall(56, CLONE_NEWUSER | 17, 0, 0, 0, 0),
    "setns": lambda: libc.syscall(308, 0, 0),
    "io_uring_setup": lambda: libc.syscall(425, 8, params),
    "add_key": lambda: libc.syscall(248, b"user", b"k", b"v", 1, -3),
    "keyctl": lambda: libc.syscall(250, 0, -3, 0),
    "ptrace_attach": lambda: libc.ptrace(16, {world["decoy_pid"]}, 0, 0),
    "mount": lambda: libc.mount(b"none", b".", b"tmpfs", 0, None),
    "bpf": lambda: libc.syscall(321, 0, 0, 0),
    "perf_event_open": lambda: libc.syscall(298, 0, 0, -1, -1, 0),
    "setsid": lambda: libc.setsid(),
}}
print(json.dumps({{name: call() for name, call in calls.items()}}))
"""
    report = _report(run(world, src))
    assert report == {name: -1 for name in report}, report


def test_server_environment_and_proc_are_unreadable(world):
    src = f"""
import glob, json, os
found, errors = [], 0
for path in [f"/proc/{world["decoy_pid"]}/environ"] + glob.glob("/proc/*/environ"):
    try:
        if b"{TOKEN}" in open(path, "rb").read():
            found.append(path)
    except OSError:
        errors += 1
print(json.dumps({{"found": found, "errors": errors, "env": dict(os.environ)}}))
"""
    report = _report(run(world, src))
    assert report["found"] == [] and report["errors"] >= 1
    assert report["env"] == {} or set(report["env"]) <= {"LC_CTYPE"}


def test_store_file_cannot_be_read_or_changed(world):
    store = world["store"]
    src = f"""
import json, os
done = []
for name, action in [
    ("read", lambda: open({str(store)!r}, "rb").read(16)),
    ("write", lambda: open({str(store)!r}, "r+b").write(b"pwned")),
    ("truncate", lambda: os.truncate({str(store)!r}, 0)),
    ("remove", lambda: os.remove({str(store)!r})),
    ("rename", lambda: os.rename({str(store)!r}, {str(store)!r} + ".x")),
]:
    try:
        action()
        done.append(name)
    except OSError:
        pass
print(json.dumps({{"done": done}}))
"""
    assert _report(run(world, src))["done"] == []
    assert hashlib.sha256(store.read_bytes()).hexdigest() == world["store_digest"]


def test_grpc_server_and_inference_endpoint_are_unreachable(world):
    src = f"""
import json, socket
reached = []
for port in {world["ports"]!r}:
    for family, kind in ((socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET, socket.SOCK_DGRAM)):
        try:
            s = socket.socket(family, kind)
            s.settimeout(2)
            s.connect(("127.0.0.1", port))
            s.send(b"x")
            reached.append(port)
        except OSError:
            pass
print(json.dumps({{"reached": reached}}))
"""
    assert _report(run(world, src))["reached"] == []
    for listener in world["listeners"]:
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_killing_the_server_and_the_executor_fails(world):
    src = f"""
import json, os, signal
results = {{}}
targets = [("server", {world["decoy_pid"]}), ("everyone", -1)]
if os.getppid() > 0:  # 0 in a pid namespace: the launcher is outside it
    targets.append(("parent", os.getppid()))
for name, pid in targets:
    for sig in (signal.SIGKILL, signal.SIGSTOP):
        try:
            os.kill(pid, sig)
            results[f"{{name}}-{{sig}}"] = "sent"
        except OSError as err:
            results[f"{{name}}-{{sig}}"] = err.errno
print(json.dumps(results))
"""
    report = _report(run(world, src))
    # kill(-1) reports success even when every target refused (EPERM), so for it only the
    # survivors below count.
    assert [k for k, v in report.items() if v == "sent" and not k.startswith("everyone")] == []
    os.kill(world["decoy_pid"], 0)  # still alive
    assert world["executor"].poll() is None
    assert run(world, "print('still serving')\n").passed


def _marked(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def test_no_program_outlives_a_killed_executor_and_its_directory_goes(world):
    executor, url = _start_executor(world["namespaces"])
    marker = f"gemfinder-survivor-{os.getpid()}-{time.time_ns()}"
    src = f"""
import os, sys, time
for _ in range(2):
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", "{marker}"])
open("left-behind", "w").write("x")
time.sleep(60)
"""
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(run_remote(url, src, 30.0, MEMORY_MB))
        except ExecutorError as err:
            outcome.append(err)

    thread = threading.Thread(target=call)
    thread.start()
    runs = Path(f"/tmp/gemfinder-sandbox-runs-{world['uid']}")
    deadline = time.monotonic() + 10
    while len(_marked(marker)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_marked(marker)) == 2
    assert any(runs.iterdir())
    executor.send_signal(signal.SIGKILL)
    executor.wait()
    thread.join(10)
    assert isinstance(outcome[0], ExecutorError)  # a grading failure, never a wrong answer
    deadline = time.monotonic() + 3
    while _marked(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _marked(marker) == []
    # The directory of the killed executor's run goes at the next executor's first run.
    leftover = [p.name for p in runs.iterdir()]
    assert leftover
    again, url = _start_executor(world["namespaces"])
    try:
        assert run_remote(url, "print(1)\n", 10.0, MEMORY_MB).passed
        assert not {p.name for p in runs.iterdir()} & set(leftover)
    finally:
        again.kill()
        again.wait()
