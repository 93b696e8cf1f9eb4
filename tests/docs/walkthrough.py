"""Run a doc's code blocks in order, as a reader would, in one shared working directory.

The directory looks like a checkout (symlinks to the repository's files), so `python -m
bench.x` works, while whatever a block writes (`tree.npz`, logs) stays in the directory.
Commands come from the active environment: its bin directory is first on PATH. Each block runs
in a process group of its own; its background jobs (a fleet, a server started with `&`) keep
running for the next blocks, and every group is killed when the walkthrough ends, also when a
block fails or times out.

The environment points the service at free ports (GEMFINDER_ADDRESS, GEMFINDER_METRICS_PORT;
the Python clients in the docs read GEMFINDER_ADDRESS), so a server a developer runs on the
default ports does not get in the way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.docs.blocks import Block, read_blocks

REPO = Path(__file__).resolve().parents[2]
NOT_LINKED = {".git", ".venv", "target", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
DEFAULT_TIMEOUT_S = 120.0


class BlockFailed(AssertionError):
    pass


def run_doc(doc: Path, workdir: Path, shared_data: Path | None) -> list[str]:
    """Run every block of `doc` in order in `workdir`; return the blocks left out because the
    reference data is missing (`shared_data` None). Fails on the first block that fails, and
    on any block it cannot run that has no skip marker."""
    blocks = read_blocks(doc)
    unrunnable = [b.where for b in blocks if b.kind == "other" and not b.marker.skip]
    if unrunnable:
        raise BlockFailed(
            f"code blocks in a language the doc test cannot run: {unrunnable}; mark each with "
            "<!-- doc-test: skip, REASON --> (README.md, 'Docs are tested')"
        )
    left_out = []
    data_env = {"GEMFINDER_SHARED_DATA": str(shared_data)} if shared_data else {}
    with Walkthrough(workdir, data_env) as walk:
        for block in blocks:
            if block.marker.skip:
                continue
            if block.marker.shared_data and shared_data is None:
                left_out.append(block.where)
                continue
            walk.run(block)
    print(", ".join(f"{where} {took:.1f} s" for where, took in walk.timings))
    return left_out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Walkthrough:
    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None):
        self.workdir = workdir
        for entry in REPO.iterdir():
            if entry.name not in NOT_LINKED:
                (workdir / entry.name).symlink_to(entry)
        self.logs = workdir / ".doc-test"
        self.logs.mkdir()
        bin_dir = str(Path(sys.executable).parent)
        self.env = dict(os.environ)
        self.env.update(
            PATH=bin_dir + os.pathsep + self.env.get("PATH", ""),
            GEMFINDER_ADDRESS=f"127.0.0.1:{free_port()}",
            GEMFINDER_METRICS_PORT=str(free_port()),
            PYTHONUNBUFFERED="1",
        )
        self.env.update(extra_env or {})
        self.groups: list[int] = []
        self.timings: list[tuple[str, float]] = []  # (block, seconds), printed by the test

    def run(self, block: Block) -> str:
        """Run one block; return its output (stdout and stderr), or raise BlockFailed."""
        name = f"{block.path.stem}-{block.line}"
        if block.kind == "python":
            script = self.logs / f"{name}.py"
            script.write_text(block.script())
            argv = [sys.executable, str(script)]
        else:
            script = self.logs / f"{name}.sh"
            script.write_text(block.script())
            argv = ["bash", "-e", "-o", "pipefail", str(script)]
        out_path = self.logs / f"{name}.out"
        timeout = block.marker.timeout or DEFAULT_TIMEOUT_S
        started = time.monotonic()
        with out_path.open("wb") as out:
            # Output to a file, not a pipe: a background job keeps a pipe open after the
            # block's shell exits, and reading it would never end.
            proc = subprocess.Popen(
                argv, cwd=self.workdir, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, process_group=0,
            )  # fmt: skip
            self.groups.append(proc.pid)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                code = None
        output = out_path.read_text(errors="replace")
        took = time.monotonic() - started
        if code != 0:
            status = f"timed out after {timeout:.0f} s" if code is None else f"exit status {code}"
            raise BlockFailed(self._report(block, f"{status} ({took:.1f} s)", output))
        for text in block.marker.expect:
            if text not in output:
                raise BlockFailed(self._report(block, f"output lacks {text!r}", output))
        self.timings.append((block.where, took))
        return output

    def _report(self, block: Block, what: str, output: str) -> str:
        lines = [f"{block.where}: {what}", "--- block:", block.script().rstrip()]
        lines += ["--- output (last 40 lines):", *output.splitlines()[-40:]]
        for log in sorted(self.workdir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            lines += [f"--- {log.name} (last 15 lines):", *tail]
        return "\n".join(lines)

    def close(self) -> None:
        """Stop every process the blocks left behind: SIGTERM, then SIGKILL after 5 s."""
        alive = [g for g in self.groups if _signal_group(g, signal.SIGTERM)]
        deadline = time.monotonic() + 5
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [g for g in alive if _signal_group(g, 0)]
        for group in alive:
            _signal_group(group, signal.SIGKILL)

    def __enter__(self) -> Walkthrough:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _signal_group(group: int, sig: int) -> bool:
    """Send `sig` to a process group; False when the group has no process left."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        return False
    # The group leader may be a zombie of ours (bash ended, not waited for): reap it so that
    # signal 0 stops finding it.
    try:
        os.waitpid(group, os.WNOHANG)
    except ChildProcessError:
        pass
    return True
