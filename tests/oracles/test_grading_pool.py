"""Grading processes with a time limit (gemfinder.oracles.grading_pool): the same grades as
in-process; an answer past the limit kills its process, which is replaced, and the query fails
as `grading_timeout` (never a wrong answer); a grader that raises is a `grading` failure; a
pull cancelled mid-grade does not leave its stale reply for the next answer; no process outlives
the pool or the process that started it.

The end-to-end attack (a real server, a registered task, a fleet model's pathological answer)
is tests/server/test_grading_timeout.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from gemfinder.backends.base import Completion
from gemfinder.candidates import Candidate
from gemfinder.oracles import FailureKind, InferenceOracle, grading_pool
from gemfinder.oracles.grading_pool import GradingError, GradingPool, GradingTimeout
from gemfinder.tasks import get_task, parse_item

pytest.importorskip("lm_eval")

QUADRATIC = r"\s+$|(-?[0-9]+)"  # `\s+$`, shipped by lm-eval, rescans a run of spaces
HOSTILE = " " * 200_000 + "x"  # minutes of `re` under QUADRATIC


def _item(pattern: str, target: str = "42", **kwargs):
    fields = {
        "output_type": "generate_until", "lm_eval": {"task": "t"}, "doc": {},
        "metric": {"name": "exact_match", "kwargs": kwargs}, "prompt": "p", "until": ["\n\n"],
        "max_gen_toks": 16, "target": target, "multiple_target": False,
        "filter": {"name": "f", "steps": [["regex", {"regex_pattern": pattern, "group_select": 0}],
                                          ["take_first", None]]},
    }  # fmt: skip
    return parse_item(json.dumps(fields | {"id": "t/0", "task": "lm_eval"}), "test")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def _gone(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while _alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return not _alive(pid)


async def test_the_pool_grades_as_in_process_and_kills_what_runs_past_its_limit():
    item = _item(QUADRATIC)
    assert not get_task("lm_eval").grading_bounded(item, "42")
    pool = GradingPool(size=2, timeout_s=1.0)
    try:
        for reply in ("It is 42.\n\nQuestion: more", "41", "I cannot tell."):
            assert await pool.grade(item, reply) == get_task("lm_eval").grade(item, reply)
        before = set(pool.pids)
        assert len(before) == 2
        t0 = time.perf_counter()
        with pytest.raises(GradingTimeout, match="longer than 1 s"):
            await pool.grade(item, HOSTILE)
        assert time.perf_counter() - t0 < 3.0
        assert pool.killed == 1
        # The killed process is gone and another takes its place; grading goes on.
        killed = before - set(pool.pids)
        assert len(killed) == 1
        assert await _gone(killed.pop())
        assert (await pool.grade(item, "42")).correct
        for _ in range(100):
            if len(pool.pids) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(pool.pids) == 2 and set(pool.pids) != before
        # Both processes busy past their limit at once: each killed, each replaced.
        results = await asyncio.gather(
            pool.grade(item, HOSTILE), pool.grade(item, HOSTILE), return_exceptions=True
        )
        assert all(isinstance(r, GradingTimeout) for r in results), results
        assert (await pool.grade(item, "42")).correct
    finally:
        pids = pool.pids
        await pool.aclose()
    assert not any(_alive(p) for p in pids)


async def test_a_cancelled_grade_does_not_hand_its_reply_to_the_next():
    slow, quick = _item(QUADRATIC), _item(QUADRATIC, target="7")
    pool = GradingPool(size=1, timeout_s=30.0)
    try:
        await pool.grade(quick, "7")  # started
        task = asyncio.ensure_future(pool.grade(slow, " " * 20_000 + "x"))  # ~3 s of `re`
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        grade = await pool.grade(quick, "7")  # a fresh process: its own answer, not the stale one
        assert grade.correct and grade.extracted == "7"
    finally:
        await pool.aclose()


async def test_the_oracle_records_a_timeout_and_a_grader_error_as_failures_not_answers():
    oracle = InferenceOracle(grading_timeout_s=1.0, grading_workers=1)
    cand = Candidate("org/m", "http://127.0.0.1:9")
    try:
        hostile = await oracle._grade(cand, _item(QUADRATIC), Completion(HOSTILE, None, None), 1, 0)
        assert hostile.reward is None and hostile.failure is FailureKind.GRADING_TIMEOUT
        assert "longer than 1 s" in hostile.error
        assert hostile.response == HOSTILE  # kept as evidence, never graded
        # gsm8k's own exact_match ignores `(?s).*#### ` (lm-eval ships it; quadratic): a short
        # answer is graded in-process, a long one in a grading process - here past its limit.
        gsm = _item("", target="42", regexes_to_ignore=[",", "(?s).*#### "])
        gsm.fields["filter"]["steps"] = [["take_first", None]]  # the whole reply reaches `re`
        quick = await oracle._grade(cand, gsm, Completion("#### 42", None, None), 1, 0)
        assert quick.reward == 1 and oracle.grading.killed == 1
        slow = await oracle._grade(cand, gsm, Completion("#" * 200_000, None, None), 1, 0)
        assert slow.failure is FailureKind.GRADING_TIMEOUT and oracle.grading.killed == 2
        # lm-eval's filter raises on a group past the matches: the grader's failure, not a 0.
        broken = _item(QUADRATIC)
        broken.fields["filter"]["steps"][0][1]["group_select"] = 5
        failed = await oracle._grade(cand, broken, Completion("1 2", None, None), 1, 0)
        assert failed.reward is None and failed.failure is FailureKind.GRADING, failed
        # A known-linear pattern (gsm8k's flexible-extract) is graded without the pool.
        linear = _item(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
        assert get_task("lm_eval").grading_bounded(linear, "so 42")
        done = await oracle._grade(cand, linear, Completion("so 42", None, None), 1, 0)
        assert done.reward == 1
    finally:
        await oracle.aclose()
    assert oracle.grading.killed == 2


@pytest.mark.parametrize(
    "command",
    [[sys.executable, "-c", "import sys; sys.exit(3)"], ["/nonexistent/python"]],
    ids=["exits-at-start", "cannot-run"],
)
async def test_a_start_that_fails_fails_the_answer_fast_and_is_retried(monkeypatch, command):
    """Grading processes that cannot start: an answer fails at once as a `grading` failure
    naming why (not after START_TIMEOUT_S), the starts back off instead of spinning, and once
    a start works again the pool grades again without any process having been killed."""
    item = _item(QUADRATIC)
    monkeypatch.setattr(grading_pool, "WORKER_COMMAND", command)
    pool = GradingPool(size=2, timeout_s=5.0)
    try:
        t0 = time.perf_counter()
        with pytest.raises(GradingError, match="no grading process could start") as err:
            await pool.grade(item, "42")
        assert time.perf_counter() - t0 < 3.0
        assert ("status 3" if len(command) > 1 else "cannot run /nonexistent/python") in str(err)
        t0 = time.perf_counter()
        with pytest.raises(GradingError, match="could start"):
            await pool.grade(item, "42")  # during the back-off: no wait at all
        assert time.perf_counter() - t0 < 0.1
        # Two processes' starts over ~2 s of back-off (0.5, 1, 2 s...): a few, not a spin.
        await asyncio.sleep(2.0)
        assert 2 <= pool.start_failures <= 8, pool.start_failures
        assert pool.pids == []
        monkeypatch.setattr(grading_pool, "WORKER_COMMAND", grading_pool.DEFAULT_WORKER_COMMAND)
        t0 = time.perf_counter()
        while True:  # the next start (within the back-off, here <= 4 s) brings the pool back
            try:
                grade = await pool.grade(item, "It is 42.")
                break
            except GradingError:
                assert time.perf_counter() - t0 < 10.0
                await asyncio.sleep(0.2)
        assert grade.correct and pool.killed == 0
        with pytest.raises(GradingTimeout):  # and it still enforces its limit
            await pool.grade(item, HOSTILE)
    finally:
        await pool.aclose()


def test_grading_processes_die_with_their_parent(tmp_path):
    """The parent is killed (-9) while its grading process is inside a long match: the kernel
    ends it (PR_SET_PDEATHSIG), instead of it running for minutes as an orphan."""
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_grading_pool import _item, QUADRATIC, HOSTILE
        from gemfinder.oracles.grading_pool import GradingPool

        async def main():
            pool = GradingPool(size=1, timeout_s=600.0)
            await pool.grade(_item(QUADRATIC), "42")
            print(pool.pids[0], flush=True)
            await pool.grade(_item(QUADRATIC), HOSTILE)

        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())
        time.sleep(0.5)
        assert _alive(worker)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)
