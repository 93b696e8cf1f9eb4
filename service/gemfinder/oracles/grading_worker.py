"""One grading process (`python -m gemfinder.oracles.grading_worker FD`), started by
gemfinder.oracles.grading_pool.GradingPool: grades one answer at a time from socket FD, with the
same graders as in-process, and sends back (correct, extracted) or the grader's error.

It may be killed at any moment (past its time limit), so it holds no state worth keeping. It
dies with its parent: the kernel kills it when the parent ends (PR_SET_PDEATHSIG; it may be
inside a match that would run for hours), and it exits when the socket closes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys

from gemfinder.oracles.frames import frame, read_frame_blocking

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the socket closing still ends it when idle
        pass
    if os.getppid() != parent:  # the parent ended before the prctl took effect
        os._exit(0)


def _warm() -> None:
    """Import what grading imports, so the first answer's time limit does not pay for it."""
    import gemfinder.tasks  # noqa: F401

    try:
        import lm_eval.api.instance  # noqa: F401
        import lm_eval.api.metrics  # noqa: F401
        import lm_eval.filters  # noqa: F401

        import gemfinder.tasks.lmeval.grading  # noqa: F401
    except ImportError:  # no lm-eval extra: its items fail to grade here as they would inline
        pass


def serve(fd: int) -> None:
    from gemfinder.tasks import get_task, sandbox

    sock = socket.socket(fileno=fd)
    stream = sock.makefile("rwb")
    kind, settings = read_frame_blocking(stream)
    assert kind == "settings", kind
    if settings.get("executor"):
        sandbox.configure_executor(settings["executor"])
    _warm()
    stream.write(frame(("ready",)))
    stream.flush()
    while True:
        try:
            item, response = read_frame_blocking(stream)
        except EOFError:
            return  # the parent closed the socket
        try:
            grade = get_task(item.task).grade(item, response)
            reply = ("ok", bool(grade.correct), grade.extracted)
        except Exception as exc:  # noqa: BLE001 - a grader failure is the query's, not ours
            reply = ("error", f"{type(exc).__name__}: {exc}"[:500])
        stream.write(frame(reply))
        stream.flush()


def main() -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when grading stops
    serve(int(sys.argv[1]))


if __name__ == "__main__":
    main()
