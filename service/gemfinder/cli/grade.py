"""`gemfinder grade FILE.jsonl`: grade model responses offline, one JSON line in, one out.

Each input line is one JSON object: `task`, `response` (the model's answer, a string) and the
item's own fields, all at the top level (`id` optional), as in:

  {"task": "gsm8k", "question": "What is 8 * 9?", "answer": "#### 72", "response": "8 * 9 = 72"}

The item's fields are not nested under an "item" key ({"task": ..., "response": ..., "item":
{...}} is refused). A multiple-choice item (arc_challenge, mmlu, ...) has "question", "choices"
(a list) and "answer" (the right choice's letter); mbpp has "text" and "test_list" (the asserts).

Output lines are the input objects plus `correct` and `extracted`; a malformed line becomes
`{"line": N, "error": "..."}` and the rest are still graded. MBPP lines run in the sandbox,
concurrently up to its slot limit; output order always follows input order. An item scored
from log-likelihoods (lm_eval multiple_choice) takes as `response` what a search records for
it: a JSON list of one log-likelihood per choice, e.g. "[-4.2, -1.3, -7.0, -9.9]".

An answer whose grader is not known linear (an lm_eval item's pattern, e.g. one of an
operator's task YAML) is graded as the server grades it: in a grading process, within
--grading-timeout-s. One past the limit is neither right nor wrong: its line is written back with
"correct": null, "failure": "grading_timeout" and an "error"; a grader that raises there gives
"failure": "grading". Either counts as a line that could not be graded.

Exit status: 0 when every line was graded; 1 when some line could not be graded (every other
line is still graded and written); 2 when the command is refused (unreadable file, unwritable
--out) and nothing is graded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TextIO

from gemfinder.cli._args import subcommand
from gemfinder.errors import UserError
from gemfinder.oracles.grading_pool import DEFAULT_TIMEOUT_S as DEFAULT_GRADING_TIMEOUT_S
from gemfinder.oracles.grading_pool import GradingError, GradingPool, GradingTimeout
from gemfinder.outputs import not_an_input
from gemfinder.tasks import Grade, Item, get_task, parse_item, sandbox

EXIT_UNGRADED_LINES = 1  # the output is complete but holds error lines; scripts must notice


def register(subparsers: argparse._SubParsersAction) -> None:
    summary = ("grade responses in a JSONL file (a JSON object per line: task, response and "
               "the item's fields, all top-level)")  # fmt: skip
    p = subcommand(subparsers, "grade", summary, __doc__, run)
    p.add_argument("file", help="input JSONL, or - for stdin")
    p.add_argument("--out", default="-", help="output JSONL (default: stdout)")
    p.add_argument(
        "--grading-timeout-s",
        type=float,
        default=DEFAULT_GRADING_TIMEOUT_S,
        help="time limit for grading one answer whose grader is not known linear, as the "
        f"server's (default {DEFAULT_GRADING_TIMEOUT_S:g}); past it the line is a "
        "grading_timeout, neither right nor wrong",
    )


def _loglikelihoods(response: str, n: int) -> list[float]:
    why = f"'response' must be a JSON list of {n} log-likelihoods (one per choice)"
    try:
        lls = json.loads(response)
    except json.JSONDecodeError:
        raise UserError("response", why) from None
    if not (
        isinstance(lls, list)
        and len(lls) == n
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in lls)
    ):
        raise UserError("response", why)
    return [float(x) for x in lls]


class _PoolThread:
    """A GradingPool on an event loop in a thread of its own: the grading threads block on it.
    Its processes start at the first answer that needs them, so most files never start one."""

    def __init__(self, timeout_s: float) -> None:
        self.pool = GradingPool(timeout_s=timeout_s)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="grading-pool")
        self.thread.start()

    def grade(self, item: Item, response: str, extra_s: float) -> Grade:
        coro = self.pool.grade(item, response, extra_s)
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.pool.aclose(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _grade_line(lineno: int, line: str, pool: _PoolThread) -> dict[str, Any]:
    try:
        line.encode("utf-8")  # input is read with surrogateescape: bad bytes become surrogates
    except UnicodeEncodeError as err:
        return {"line": lineno, "error": f"not UTF-8 text (character {err.start + 1})"}
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        return {"line": lineno, "error": f"bad JSON: {err.msg} at column {err.colno}"}
    if not isinstance(obj, dict):
        return {"line": lineno, "error": "expected a JSON object"}
    if "response" not in obj:
        return {"line": lineno, "error": "missing 'response' (a string)"}
    response = obj["response"]
    if not isinstance(response, str):
        kind = "null" if response is None else type(response).__name__
        return {"line": lineno, "error": f"'response' must be a string, got {kind}"}
    fields = {k: v for k, v in obj.items() if k != "response"}
    fields.setdefault("id", f"line-{lineno}")
    try:
        item: Item = parse_item(json.dumps(fields), f"line {lineno}")
        task = get_task(item.task)
        requests = task.loglikelihood_requests(item)
        if requests:
            grade = task.grade_loglikelihoods(item, _loglikelihoods(response, len(requests)))
        elif task.grading_bounded(item, response):
            grade = task.grade(item, response)
        else:  # a pathological answer could hold `re` for hours: a killable process
            grade = pool.grade(item, response, task.code_seconds(item))
    except UserError as err:
        reason = err.reason
        if isinstance(obj.get("item"), dict) and "needs field" in reason:
            # A nested "item" object: the shape the help's summary once led readers to guess.
            reason += " (put the item's fields beside task and response, not under 'item')"
        return {"line": lineno, "error": reason}
    except (GradingTimeout, GradingError) as err:
        kind = "grading_timeout" if isinstance(err, GradingTimeout) else "grading"
        return {**obj, "correct": None, "extracted": None, "failure": kind, "error": str(err)}
    return {**obj, "correct": grade.correct, "extracted": grade.extracted}


def grade_stream(
    src: TextIO, dst: TextIO, grading_timeout_s: float = DEFAULT_GRADING_TIMEOUT_S
) -> tuple[int, int]:
    """Grade every non-blank line of `src` into `dst`; returns (graded, not graded)."""
    graded = errors = 0
    processes = _PoolThread(grading_timeout_s)
    with contextlib.ExitStack() as stack:
        stack.callback(processes.close)  # after the threads: none is left waiting on it
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=sandbox.MAX_CONCURRENT * 2))
        pending: list[Future[dict[str, Any]]] = []

        def flush(keep: int) -> None:
            nonlocal graded, errors
            while len(pending) > keep:
                out = pending.pop(0).result()
                ok = out.get("correct") is not None
                graded += ok
                errors += not ok
                dst.write(json.dumps(out) + "\n")

        for lineno, line in enumerate(src, start=1):
            if line.strip():
                pending.append(pool.submit(_grade_line, lineno, line, processes))
                # Bounded look-ahead: memory stays flat on big files, order is preserved.
                flush(keep=64)
        flush(keep=0)
    return graded, errors


def run(args: argparse.Namespace) -> int:
    if not args.grading_timeout_s > 0:
        raise UserError("--grading-timeout-s", f"must be above 0, got {args.grading_timeout_s:g}")
    not_an_input(args.out, "--out", args.file)
    with contextlib.ExitStack() as stack:
        # Files we open are closed on exit; stdin and stdout are left open for the caller.
        src, dst = sys.stdin, sys.stdout
        try:
            # A line that is not UTF-8 becomes that line's error; the rest are still graded.
            if args.file != "-":
                src = stack.enter_context(
                    open(args.file, encoding="utf-8", errors="surrogateescape")
                )
            elif hasattr(sys.stdin, "buffer"):
                src = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
                stack.callback(src.detach)  # leave stdin itself open
        except OSError as err:
            raise UserError("file", f"cannot read {args.file}: {err.strerror}") from None
        try:
            if args.out != "-":
                dst = stack.enter_context(open(args.out, "w", encoding="utf-8"))
        except OSError as err:
            raise UserError("--out", f"cannot write {args.out}: {err.strerror}") from None
        graded, errors = grade_stream(src, dst, args.grading_timeout_s)
    print(
        f"gemfinder grade: {graded} graded, {errors} malformed line(s) or grading failure(s)",
        file=sys.stderr,
    )
    return EXIT_UNGRADED_LINES if errors else 0
