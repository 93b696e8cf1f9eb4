"""`gemfinder serve` with its event loop's steps and garbage collections timed (thread CPU time):
what holds the loop, by the task that held it.

    python -m bench.speed.loop_steps OUT.json serve --address 127.0.0.1:0 ...

Runs `gemfinder serve` with the arguments after OUT.json and, when it exits (SIGTERM), writes
to OUT.json the longest steps (each a callback the loop ran: a task's turn between two awaits)
with the task that took them, grouped by kind, and every full (generation 2) collection's pause.
`health_latency --loop-steps` runs its server this way and prints the summary (docs/service.md,
"Health under load"). CPU time of the loop's thread, not wall time: on a shared machine a step
also waits for a core, which says nothing about the code.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import re
import sys
import threading
import time
from asyncio import events
from collections import defaultdict

SLOW_S = 0.015  # steps kept by name; all are counted
_steps: list[float] = []
_slow: list[tuple[float, str]] = []
_gen2: list[float] = []
_gc_start: list[float] = [0.0]


def _task_name(handle: events.Handle) -> str:
    """The kind of task a step ran: an RPC's method, a search's runner, or the coroutine."""
    callback = handle._callback  # type: ignore[attr-defined]
    for ref in [getattr(callback, "__self__", None), *gc.get_referents(callback)]:
        if isinstance(ref, asyncio.Task):
            rpc = re.search(r"/([A-Za-z]+)\]$", ref.get_name())
            if rpc:
                return rpc.group(1)
            if ref.get_name().startswith("search-"):
                return "search (runner; its end)"
            return getattr(ref.get_coro(), "__qualname__", ref.get_name())
    return "callback"


def _timed_run(self: events.Handle, run=events.Handle._run) -> None:
    began = time.thread_time()
    run(self)
    took = time.thread_time() - began
    _steps.append(took)
    if took > SLOW_S:
        _slow.append((took, _task_name(self)))


def _on_gc(phase: str, info: dict) -> None:
    if threading.current_thread() is not threading.main_thread() or info["generation"] != 2:
        return
    if phase == "start":
        _gc_start[0] = time.thread_time()
    else:
        _gen2.append(time.thread_time() - _gc_start[0])


def summary() -> dict:
    kinds: dict[str, list[float]] = defaultdict(list)
    for took, name in _slow:
        kinds["StartSearch" if name == "SearchManager.start" else name].append(took * 1000)
    gen2 = sorted(ms * 1000 for ms in _gen2)
    return {
        "steps": len(_steps),
        "steps_cpu_s": round(sum(_steps), 2),
        "over_ms": {f"{ms}": sum(1 for s in _steps if s * 1000 > ms) for ms in (10, 25, 50)},
        "slow_by_kind": {
            k: {
                "count": len(v),
                "max_ms": round(max(v), 1),
                "median_ms": round(sorted(v)[len(v) // 2], 1),
            }
            for k, v in sorted(kinds.items(), key=lambda kv: -max(kv[1]))
        },
        "gen2_pauses": len(gen2),
        "gen2_median_ms": round(gen2[len(gen2) // 2], 1) if gen2 else None,
        "gen2_max_ms": round(gen2[-1], 1) if gen2 else None,
    }


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2
    out, argv = sys.argv[1], sys.argv[2:]
    events.Handle._run = _timed_run  # type: ignore[method-assign]
    gc.callbacks.append(_on_gc)
    atexit.register(lambda: open(out, "w").write(json.dumps(summary(), indent=1)))
    from gemfinder.cli import main as gemfinder

    return gemfinder(argv)


if __name__ == "__main__":
    sys.exit(main())
