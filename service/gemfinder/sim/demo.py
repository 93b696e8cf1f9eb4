"""Build the demo world on disk and run its processes: a model tree, items, fleet and server.

Everything is generated (no network, no GPU): a synthetic model tree from gemfinder.sim.trees, query
items from gemfinder.sim.fleet's synthetic generators with the tree's item ids, a simulated TGI
fleet process serving the tree as base models plus LoRA adapters, and a `gemfinder serve`
process. MBPP columns are left out: grading them runs a sandboxed interpreter per answer, too
slow for a one-minute demo on two cores. With an lm-eval task the items are that task's
documents instead (the tree decides which model answers which right), and the server builds the
same query set from its registered data when the client names the task.
"""

from __future__ import annotations

import json
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
    # With an lm-eval task: the file registering it with the server (serve --lm-eval-tasks).
    lm_eval_tasks: Path | None = None


def _drop_slow(m: CorrectnessMatrix) -> CorrectnessMatrix:
    keep = [i for i, name in enumerate(m.items) if name.split("/")[0] not in SLOW_TASKS]
    return CorrectnessMatrix(
        np.ascontiguousarray(m.correct[:, keep]),
        m.models,
        [m.items[i] for i in keep],
        m.downloads,
        m.is_base,
    )


def build_world(workdir: Path, preset: str, models: int, items: int, seed: int) -> World:
    matrix = _drop_slow(generate_tree(preset, seed, models=models, items=items).matrix)
    records = for_items(matrix.items, seed=seed)  # exactly the matrix's items
    matrix_path = workdir / "tree.npz"
    items_path = workdir / "items.jsonl"
    save_npz(matrix, matrix_path)
    write_jsonl(records, items_path)
    return World(matrix, matrix_path, items_path)


def build_lm_eval_world(
    workdir: Path,
    preset: str,
    models: int,
    seed: int,
    records: list[dict],
    data_files: dict[str, Path],
) -> World:
    """A world whose items are an lm-eval task's documents (`records`, built as the server will
    build them): the tree's answers are given to those ids, so the fleet answers them (text or
    log-likelihoods) right where the tree says, and the server is registered to serve the task
    from the same data files (`lm-eval-tasks.json`)."""
    n = len(records)
    tree = _drop_slow(generate_tree(preset, seed, models=models, items=2 * n + 20).matrix)
    if tree.n_items < n:
        raise ValueError(f"the tree has {tree.n_items} items, fewer than the task's {n}")
    matrix = CorrectnessMatrix(
        np.ascontiguousarray(tree.correct[:, :n]),
        tree.models,
        [r["id"] for r in records],
        tree.downloads,
        tree.is_base,
    )
    matrix_path = workdir / "tree.npz"
    items_path = workdir / "items.jsonl"
    save_npz(matrix, matrix_path)
    write_jsonl(records, items_path)
    tasks = workdir / "lm-eval-tasks.json"
    task = records[0]["lm_eval"]["task"]
    tasks.write_text(
        json.dumps({task: {split: str(p.resolve()) for split, p in data_files.items()}}),
        encoding="utf-8",
    )
    return World(matrix, matrix_path, items_path, tasks)


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


def start_server(
    procs: Processes, workdir: Path, endpoints: Path, metrics_port: int, extra: list[str] = ()
):
    log = workdir / "server.log"
    proc = procs.start(
        [
            "serve", "--address", "127.0.0.1:0", "--db", str(workdir / "gemfinder.db"),
            "--endpoints", str(endpoints), "--metrics-port", str(metrics_port), *extra,
        ],
        log,
    )  # fmt: skip
    found = wait_for(log, r"listening on 127\.0\.0\.1:(\d+)", proc)
    return int(found.group(1)), proc
