"""Run untrusted Python (e.g. generated MBPP code) in a separate, locked-down process.

Each program gets a fresh `python -I`, an empty environment, its own temporary directory, a new
session (the whole process group is killed on timeout, and by the launcher when the grader
dies), a memory bound on its whole process tree (a cgroup, else a small process cap), a disk
cap, rlimits, seccomp, Landlock, and whatever the kernel allows of: network/pid/mount/ipc
namespaces, a private /tmp and /proc, an unprivileged per-slot uid and no_new_privs (see
_sandbox_exec.py). `capabilities()` says which layers work on this machine; every
`SandboxResult` lists the layers that were active for that run.

With an executor configured (`configure_executor(url)`, or GEMFINDER_EXECUTOR), programs run in
that separate service instead (gemfinder.tasks.executor; k8s/executor.yaml): another uid, no
secrets, no store, no network.

Thread-safe: no preexec_fn, no shared mutable state outside a slot pool. Callers in asyncio use
`await asyncio.to_thread(run_program, source)`.
"""

from __future__ import annotations

import contextlib
import ctypes
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

from gemfinder.tasks import _sandbox_cgroup
from gemfinder.tasks._sandbox_exec import uid_tasks

_LAUNCHER = Path(__file__).with_name("_sandbox_exec.py")
_TAIL = 2000
MAX_CONCURRENT = max(1, min(4, os.cpu_count() or 1))
# Each run gets a uid of its own when we are root, so RLIMIT_NPROC (counted per uid) bounds one
# program's fork bomb without starving the others, and leftovers can be found by uid. A uid is
# held by an flock, so concurrent processes (other graders, tests) never share one.
_UID_BASE, _UID_COUNT = 61000, 512
_LOCK_DIR = Path(tempfile.gettempdir(), "gemfinder-sandbox-uids")
# Per run: processes allowed with a cgroup (its memory limit bounds the tree), and without one
# (the memory limit is split between them), the disk its files may take, and files in it.
MAX_PROCS_CGROUP, MAX_PROCS = 64, 4
DISK_MB, MAX_FILES = 64, 1000
# Polled every 10 ms: page-cache writes run at GB/s, so the overshoot past DISK_MB is about
# the write rate times this interval (256 MB seen at 50 ms, 64-96 MB at 10 ms: docs/grading.md).
_POLL_S = 0.01
# Set to "0" to take the path of a kernel that refuses namespaces (tests, gVisor-less nodes).
NAMESPACES_ENV = "GEMFINDER_SANDBOX_NAMESPACES"
EXECUTOR_ENV = "GEMFINDER_EXECUTOR"
BASE_LAYERS = ("fresh_interpreter", "empty_env", "own_tmpdir", "process_group_kill")
ALL_LAYERS = BASE_LAYERS + (
    "cgroup",
    "process_cap",
    "rlimits",
    "seccomp",
    "landlock_fs",
    "landlock_net",
    "landlock_scope",
    "work_tmpfs",
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


def _limits(timeout_s: float) -> dict[str, int]:
    # RLIMIT_AS and RLIMIT_NPROC are set by the launcher: they depend on whether it got a cgroup.
    return {
        "RLIMIT_CPU": math.ceil(timeout_s) + 1,
        "RLIMIT_FSIZE": 16 << 20,
        "RLIMIT_NOFILE": 64,
        "RLIMIT_CORE": 0,
    }


def _read_roots() -> list[str]:
    """What a program may read and execute under Landlock: system directories, the four
    devices Python uses, and the interpreter's installation (a venv and its base)."""
    roots = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc"]
    roots += ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"]
    if _INTERPRETER == sys.executable:
        roots += {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
        roots.append(str(Path(sys.executable).resolve().parent))
    return roots


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
_RUN_BASE = Path(tempfile.gettempdir(), f"gemfinder-sandbox-runs-{os.geteuid()}")
_setup_lock = threading.Lock()
_setup_done = False
_nproc_ceiling = 0
_executor_url = ""


def configure_executor(url: str) -> None:
    """Send every program to the executor at `url` (empty: run them here)."""
    global _executor_url
    _executor_url = url.rstrip("/")


def configured_executor() -> str:
    """The executor configure_executor set ("" if none): grading processes are told it."""
    return _executor_url


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _rmtree(path: Path) -> None:
    """Remove a run directory even if the program made parts of it unwritable."""

    def fix(func, p, _exc):  # noqa: ANN001 - shutil's onerror signature
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)

    shutil.rmtree(path, onerror=fix)


def _stale(name: str) -> bool:
    """Whether a run named `{pid}-{start time}-...` belongs to a grader that is gone."""
    pid, _, rest = name.partition("-")
    return not (pid.isdigit() and _start_time(int(pid)) == rest.partition("-")[0])


def _setup() -> None:
    """Once per process: make the grader undumpable (a program running as its uid cannot read
    its /proc environ or memory), and remove run directories left by graders that died."""
    global _setup_done, _nproc_ceiling
    with _setup_lock:
        if _setup_done:
            return
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
        _RUN_BASE.mkdir(mode=0o711, exist_ok=True)
        for run in _RUN_BASE.iterdir():
            if _stale(run.name):
                _rmtree(run)
        _sandbox_cgroup.sweep(_stale)
        # All runs of a non-root grader share its uid, so RLIMIT_NPROC is a ceiling on the uid:
        # its tasks now (plus room for threads it starts later) and every slot's allowance.
        _nproc_ceiling = uid_tasks(os.getuid()) + 32 + MAX_CONCURRENT * MAX_PROCS
        _setup_done = True


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
    url = _executor_url or os.environ.get(EXECUTOR_ENV, "")
    if url:
        from gemfinder.tasks import executor  # only a grader that uses an executor needs the client

        return executor.run_remote(url, source, timeout_s, memory_mb)
    return run_local(source, timeout_s, memory_mb, namespaces)


def run_local(
    source: str, timeout_s: float = 10.0, memory_mb: int = 1024, namespaces: bool = True
) -> SandboxResult:
    """Run `source` in a sandbox on this machine, whatever executor is configured."""
    _setup()
    namespaces = namespaces and os.environ.get(NAMESPACES_ENV, "1") != "0"
    slot = _slots.get()
    try:
        with _exclusive_uid() as uid:
            return _run(source, timeout_s, memory_mb, namespaces, uid)
    finally:
        _slots.put(slot)


def _disk_use(work: Path) -> tuple[int, int]:
    """Bytes (allocated) and entries under the work directory, counting at most MAX_FILES + 1."""
    used = count = 0
    stack = [str(work)]
    while stack and count <= MAX_FILES:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                count += 1
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    used += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
    return used, count


def _wait(proc: subprocess.Popen, work: Path, timeout_s: float) -> str | None:
    """Wait for the launcher; the reason it was stopped early, or None if it exited itself.

    Where the work directory is not a size-capped tmpfs (no mount namespace), its size is
    polled: RLIMIT_FSIZE caps each file, this caps their sum and number.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            proc.wait(timeout=min(_POLL_S, max(0.0, deadline - time.monotonic())))
            return None
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() >= deadline:
            return "timeout"
        used, count = _disk_use(work)
        if used > DISK_MB << 20 or count > MAX_FILES:
            return f"disk limit: over {DISK_MB} MB or {MAX_FILES} files in its directory"


def _run(source: str, timeout_s: float, memory_mb: int, namespaces: bool, uid: int | None):
    run_dir = Path(
        tempfile.mkdtemp(prefix=f"{os.getpid()}-{_start_time(os.getpid())}-", dir=_RUN_BASE)
    )
    cgroup = None
    try:
        work = run_dir / "work"
        work.mkdir()
        program = run_dir / "program.py"
        program.write_text(source, encoding="utf-8")
        if uid is not None:
            os.chown(work, uid, uid)
        cgroup = _sandbox_cgroup.create(run_dir.name, memory_mb << 20, MAX_PROCS_CGROUP)
        out_path, err_path = run_dir / "stdout", run_dir / "stderr"
        status_r, status_w = os.pipe()
        cfg = {
            "status_fd": status_w,
            "grader_pid": os.getpid(),
            "python": _INTERPRETER,
            "program": str(program),
            "work_path": str(work),
            "uid": uid,
            "limits": _limits(timeout_s),
            "memory_mb": memory_mb,
            "max_procs": MAX_PROCS,
            "max_procs_cgroup": MAX_PROCS_CGROUP,
            "shared_uid": uid is None,
            "nproc_ceiling": _nproc_ceiling,
            "disk_mb": DISK_MB,
            "cgroup_procs": cgroup.procs_files if cgroup else [],
            "read_roots": _read_roots(),
            "namespaces": namespaces,
        }
        start = time.monotonic()
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
            stopped = _wait(proc, work, timeout_s)
            # Always kill the group: it ends grandchildren that outlive a finished parent too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            if uid is not None:
                _kill_uid(uid)
            if cgroup is not None:
                cgroup.kill_and_remove()
                cgroup = None
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
        code = None if stopped else proc.returncode
        stderr = _tail(err_path)
        if stopped and stopped != "timeout":
            stderr = (stderr + f"\nsandbox: stopped: {stopped}\n")[-_TAIL:]
        return SandboxResult(
            passed=code == 0,
            exit_code=code,
            timed_out=stopped == "timeout",
            stdout=_tail(out_path),
            stderr=stderr,
            isolation=BASE_LAYERS + layers,
            duration_s=duration,
        )
    finally:
        if cgroup is not None:
            cgroup.kill_and_remove()
        _rmtree(run_dir)


_caps_lock = threading.Lock()
_caps: dict[str, object] | None = None


def capabilities() -> dict[str, object]:
    """Which isolation layers work here (probed once with a trivial program), plus settings."""
    global _caps
    with _caps_lock:
        if _caps is None:
            result = run_local("pass\n", timeout_s=10.0)
            caps: dict[str, object] = {layer: layer in result.isolation for layer in ALL_LAYERS}
            caps.update(
                interpreter=_INTERPRETER,
                max_concurrent=MAX_CONCURRENT,
                probe_passed=result.passed,
            )
            _caps = caps
        return dict(_caps)
