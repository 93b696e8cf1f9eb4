"""Run untrusted Python (e.g. generated MBPP code) in a separate, locked-down process.

Each program gets a fresh `python -I`, an empty environment, its own temporary directory, a new
session (the whole process group is killed on timeout), rlimits, and whatever the kernel allows
of: network/pid/mount/ipc namespaces, a private /tmp and /proc, an unprivileged per-slot uid and
no_new_privs (see _sandbox_exec.py). `capabilities()` says which layers work on this machine;
every `SandboxResult` lists the layers that were active for that run.

Thread-safe: no preexec_fn, no shared mutable state outside a slot pool. Callers in asyncio use
`await asyncio.to_thread(run_program, source)`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_LAUNCHER = Path(__file__).with_name("_sandbox_exec.py")
_TAIL = 2000
MAX_CONCURRENT = max(1, min(4, os.cpu_count() or 1))
# Each run gets a uid of its own when we are root, so RLIMIT_NPROC (counted per uid) bounds one
# program's fork bomb without starving the others, and leftovers can be found by uid. A uid is
# held by an flock, so concurrent processes (other graders, tests) never share one.
_UID_BASE, _UID_COUNT = 61000, 512
_LOCK_DIR = Path(tempfile.gettempdir(), "gemfinder-sandbox-uids")
BASE_LAYERS = ("fresh_interpreter", "empty_env", "own_tmpdir", "process_group_kill")
ALL_LAYERS = BASE_LAYERS + (
    "rlimits",
    "no_new_privs",
    "unprivileged_user",
    "user_namespace",
    "net_namespace",
    "pid_namespace",
    "ipc_namespace",
    "mount_namespace",
    "private_tmp",
    "private_proc",
)


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one program: `passed` means exit code 0 within the time limit."""

    passed: bool
    exit_code: int | None
    timed_out: bool
    stdout: str  # last characters only
    stderr: str
    isolation: tuple[str, ...]
    duration_s: float


def _limits(timeout_s: float, memory_mb: int) -> dict[str, int]:
    return {
        "RLIMIT_AS": memory_mb << 20,
        "RLIMIT_CPU": math.ceil(timeout_s) + 1,
        "RLIMIT_NPROC": 64,
        "RLIMIT_FSIZE": 16 << 20,
        "RLIMIT_NOFILE": 64,
        "RLIMIT_CORE": 0,
    }


def _world_executable(path: str) -> bool:
    p = Path(path).resolve()
    dirs_ok = all(os.stat(d).st_mode & 0o001 for d in p.parents)
    return p.is_file() and dirs_ok and bool(os.stat(p).st_mode & 0o001)


def _interpreter() -> str:
    """sys.executable, unless a dropped uid could not reach it (pyenv under a 0700 /root)."""
    if os.geteuid() != 0 or _world_executable(sys.executable):
        return sys.executable
    for cand in (shutil.which("python3"), "/usr/bin/python3", "/usr/local/bin/python3"):
        if cand and _world_executable(cand):
            return str(Path(cand).resolve())
    return sys.executable


_INTERPRETER = _interpreter()
_slots: queue.Queue[int] = queue.Queue()
for _i in range(MAX_CONCURRENT):
    _slots.put(_i)


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - _TAIL))
        return f.read().decode("utf-8", "replace")


def _kill_uid(uid: int) -> None:
    """Kill every process left running as the slot's uid (escapees from the process group)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                os.kill(int(entry), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue


@contextlib.contextmanager
def _exclusive_uid() -> Iterator[int | None]:
    if os.geteuid() != 0:
        yield None
        return
    _LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    start = random.randrange(_UID_COUNT)
    for k in range(_UID_COUNT):
        uid = _UID_BASE + (start + k) % _UID_COUNT
        fd = os.open(_LOCK_DIR / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            _kill_uid(uid)  # a crashed earlier holder may have left processes behind
            yield uid
        finally:
            os.close(fd)
        return
    raise RuntimeError("sandbox: no free uid")


def run_program(
    source: str, timeout_s: float = 10.0, memory_mb: int = 1024, namespaces: bool = True
) -> SandboxResult:
    """Run `source` as a script in the sandbox; blocks until it ends or is killed."""
    slot = _slots.get()
    try:
        with _exclusive_uid() as uid:
            return _run(source, timeout_s, memory_mb, namespaces, uid)
    finally:
        _slots.put(slot)


def _run(source: str, timeout_s: float, memory_mb: int, namespaces: bool, uid: int | None):
    with tempfile.TemporaryDirectory(prefix="gemfinder-sandbox-") as tmp:
        work = Path(tmp, "work")
        work.mkdir()
        (work / "program.py").write_text(source, encoding="utf-8")
        if uid is not None:
            os.chown(work, uid, uid)
        out_path, err_path = Path(tmp, "stdout"), Path(tmp, "stderr")
        status_r, status_w = os.pipe()
        cfg = {
            "status_fd": status_w,
            "python": _INTERPRETER,
            "program": "program.py",
            "uid": uid,
            "limits": _limits(timeout_s, memory_mb),
            "namespaces": namespaces,
        }
        start = time.monotonic()
        timed_out = False
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", str(_LAUNCHER), json.dumps(cfg)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=work,
                    env={},
                    start_new_session=True,
                    pass_fds=(status_w,),
                )
            os.close(status_w)
            status_w = -1
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            # Always kill the group: it ends grandchildren that outlive a finished parent too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            if uid is not None:
                _kill_uid(uid)
            with os.fdopen(status_r, "rb") as status:
                status_r = -1
                reported = status.read().decode() or "[]"
        finally:
            for fd in (status_r, status_w):
                if fd >= 0:
                    os.close(fd)
        duration = time.monotonic() - start
        try:
            layers = tuple(json.loads(reported))
        except json.JSONDecodeError:
            layers = ()
        code = None if timed_out else proc.returncode
        return SandboxResult(
            passed=code == 0,
            exit_code=code,
            timed_out=timed_out,
            stdout=_tail(out_path),
            stderr=_tail(err_path),
            isolation=BASE_LAYERS + layers,
            duration_s=duration,
        )


_caps_lock = threading.Lock()
_caps: dict[str, object] | None = None


def capabilities() -> dict[str, object]:
    """Which isolation layers work here (probed once with a trivial program), plus settings."""
    global _caps
    with _caps_lock:
        if _caps is None:
            result = run_program("pass\n", timeout_s=10.0)
            caps: dict[str, object] = {layer: layer in result.isolation for layer in ALL_LAYERS}
            caps.update(
                interpreter=_INTERPRETER,
                max_concurrent=MAX_CONCURRENT,
                probe_passed=result.passed,
            )
            _caps = caps
        return dict(_caps)
