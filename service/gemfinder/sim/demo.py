"""Build the demo world on disk and run its processes: a model tree, items, fleet and server.

Everything is generated (no network, no GPU): a synthetic model tree from gemfinder.sim.trees, query
items from gemfinder.sim.fleet's synthetic generators with the tree's item ids, a simulated TGI
fleet process serving the tree as base models plus LoRA adapters, and a `gemfinder serve`
process. MBPP columns are left out: grading them runs a sandboxed interpreter per answer, too
slow for a one-minute demo on two cores.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemfinder.sim.fleet.synthetic_items import for_items, write_jsonl
from gemfinder.sim.matrix import CorrectnessMatrix, save_npz
from gemfinder.sim.trees import generate as generate_tree

SLOW_TASKS = ("mbpp",)


@dataclass
class World:
    matrix: CorrectnessMatrix
    matrix_path: Path
    items_path: Path


def build_world(workdir: Path, preset: str, models: int, items: int, seed: int) -> World:
    tree = generate_tree(preset, seed, models=models, items=items)
    m = tree.matrix
    keep = [i for i, name in enumerate(m.items) if name.split("/")[0] not in SLOW_TASKS]
    matrix = CorrectnessMatrix(
        np.ascontiguousarray(m.correct[:, keep]),
        m.models,
        [m.items[i] for i in keep],
        m.downloads,
        m.is_base,
    )
    records = for_items(matrix.items, seed=seed)  # exactly the matrix's items
    matrix_path = workdir / "tree.npz"
    items_path = workdir / "items.jsonl"
    save_npz(matrix, matrix_path)
    write_jsonl(records, items_path)
    return World(matrix, matrix_path, items_path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Processes:
    """Child processes, each in its own process group; `close` ends them (TERM, then KILL)."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[str]] = []

    def start(self, args: list[str], log: Path) -> subprocess.Popen[str]:
        handle = log.open("w", encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, "-m", "gemfinder", *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.children.append(proc)
        return proc

    def close(self, timeout: float = 10.0) -> None:
        for proc in self.children:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.children:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for(log: Path, pattern: str, proc: subprocess.Popen[str], timeout: float = 60.0):
    """Wait until a line of the child's log matches; returns the match."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(encoding="utf-8") if log.exists() else ""
        found = regex.search(text)
        if found:
            return found
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[3]} exited early; see {log}:\n{text[-2000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {pattern!r} in {log}")


def start_fleet(procs: Processes, world: World, workdir: Path, endpoints: int, latency_ms: float):
    """Start the fleet; returns the candidates file and the endpoint settings for the server,
    both written by `fleet serve` (each endpoint's concurrency: /info's, capped at 32)."""
    candidates = workdir / "candidates.jsonl"
    endpoints_path = workdir / "endpoints.json"
    log = workdir / "fleet.log"
    proc = procs.start(
        [
            "fleet", "serve", "--matrix", str(world.matrix_path),
            "--query-set", str(world.items_path), "--endpoints", str(endpoints),
            "--latency-ms", str(latency_ms), "--candidates-out", str(candidates),
            "--endpoints-out", str(endpoints_path),
        ],
        log,
    )  # fmt: skip
    wait_for(log, r"candidates written", proc)
    return candidates, endpoints_path


def start_server(procs: Processes, workdir: Path, endpoints: Path, metrics_port: int):
    log = workdir / "server.log"
    proc = procs.start(
        [
            "serve", "--address", "127.0.0.1:0", "--db", str(workdir / "gemfinder.db"),
            "--endpoints", str(endpoints), "--metrics-port", str(metrics_port),
        ],
        log,
    )  # fmt: skip
    found = wait_for(log, r"listening on 127\.0\.0\.1:(\d+)", proc)
    return int(found.group(1)), proc
