"""A cgroup per sandbox run, where the machine offers one: memory and process count of the
whole process tree capped, and every process of the run found and killed at the end.

cgroup v2 (most nodes): a `gemfinder-sandbox` group under the unified root with the memory and
pids controllers delegated to it, one child group per run. cgroup v1 (this development
machine): the same layout in the memory and pids hierarchies. Either needs write access to the
cgroup tree, which in practice means a root grader outside a container; elsewhere `create`
returns None and the launcher falls back to a small process cap (see _sandbox_exec.py).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
BASE = "gemfinder-sandbox"


class RunCgroup:
    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            try:
                found |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
            except (OSError, ValueError):
                continue
        return found

    def kill_and_remove(self) -> None:
        kill_file = self.dirs[0] / "cgroup.kill"  # v2, Linux 5.14+
        for _ in range(100):
            if kill_file.exists():
                _write(kill_file, "1")
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        for d in self.dirs:
            try:
                d.rmdir()
            except OSError:
                pass  # a zombie still being reaped: the next sweep removes it


def _write(path: Path, text: str) -> bool:
    try:
        path.write_text(text)
        return True
    except OSError:
        return False


def _v2(name: str, memory_bytes: int, max_procs: int) -> RunCgroup | None:
    base = ROOT / BASE
    if not (ROOT / "cgroup.controllers").exists():
        return None
    try:
        base.mkdir(exist_ok=True)
    except OSError:
        return None
    enabled = (base / "cgroup.subtree_control").read_text().split()
    if not {"memory", "pids"} <= set(enabled):
        _write(base / "cgroup.subtree_control", "+memory +pids")
    run = base / name
    try:
        run.mkdir()
    except OSError:
        return None
    ok = _write(run / "memory.max", str(memory_bytes)) and _write(run / "pids.max", str(max_procs))
    _write(run / "memory.swap.max", "0")
    if not ok:
        RunCgroup([run]).kill_and_remove()
        return None
    return RunCgroup([run])


def _own_v1(controller: str) -> Path:
    """This process's group in a v1 hierarchy: runs nest under it, so its limits still apply."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return ROOT / controller / path.lstrip("/")
    raise OSError(f"no {controller} cgroup")


def _v1(name: str, memory_bytes: int, max_procs: int) -> RunCgroup | None:
    mem_root, pids_root = _own_v1("memory"), _own_v1("pids")
    if not ((mem_root / "memory.limit_in_bytes").exists() and (pids_root / "tasks").exists()):
        return None
    dirs = []
    try:
        for root in (mem_root, pids_root):
            (root / BASE).mkdir(exist_ok=True)
            (root / BASE / name).mkdir()
            dirs.append(root / BASE / name)
    except OSError:
        RunCgroup(dirs).kill_and_remove()
        return None
    mem, pids = dirs
    ok = _write(mem / "memory.limit_in_bytes", str(memory_bytes))
    ok = ok and _write(pids / "pids.max", str(max_procs))
    # With swap accounting, swap counts too; without it the file is absent and swap is the
    # node's concern.
    _write(mem / "memory.swappiness", "0")
    if (mem / "memory.memsw.limit_in_bytes").exists():
        _write(mem / "memory.memsw.limit_in_bytes", str(memory_bytes))
    if not ok:
        RunCgroup(dirs).kill_and_remove()
        return None
    return RunCgroup(dirs)


def _bases() -> list[Path]:
    if (ROOT / "cgroup.controllers").exists():
        return [ROOT / BASE]
    try:
        return [_own_v1("memory") / BASE, _own_v1("pids") / BASE]
    except OSError:
        return []


def sweep(stale: Callable[[str], bool]) -> None:
    """Kill and remove the run groups whose grader died (names as the run directories)."""
    if os.geteuid() != 0:
        return
    for base in _bases():
        if base.is_dir():
            for run in base.iterdir():
                if run.is_dir() and stale(run.name):
                    RunCgroup([run]).kill_and_remove()


def create(name: str, memory_bytes: int, max_procs: int) -> RunCgroup | None:
    """A fresh cgroup for one run, or None where no writable cgroup tree is available."""
    if os.geteuid() != 0:
        return None
    try:
        return _v2(name, memory_bytes, max_procs) or _v1(name, memory_bytes, max_procs)
    except OSError:
        return None
