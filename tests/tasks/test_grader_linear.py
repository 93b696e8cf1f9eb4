"""The built-in graders take time linear in the answer, so they may grade in the server process.

Task.grading_bounded says they do: their answers are graded inline (oracles.inference), with no
time limit, and an endpoint - which gemfinder does not trust - chooses the answer, up to
--max-answer-bytes (1 MiB). Python's `re` holds the interpreter lock for a whole match, so one
superlinear pattern on a long answer stops every RPC. Three did, before: the multiple-choice
grader's "answer is X" rule (22 s on "answer" and 1,000 spaces: cubic), the MBPP grader's
fence rule (a line of backticks) and its definition test (a run of blank lines), both
quadratic (6 s on 16,000 characters).

Each probe runs in a child process killed after a deadline, so a superlinear grader fails the
test instead of hanging it.
"""

from __future__ import annotations

import multiprocessing
import time

from gemfinder.tasks import Item, get_task
from gemfinder.tasks.mbpp import extract_code

N = 200_000  # characters: a linear grader takes milliseconds; the old ones, hours to years
DEADLINE_S = 20.0  # every probe of one grader together, on a loaded 2-core machine

MC = Item("mc/0", "arc_challenge", {"question": "q", "choices": ["alpha", "beta", "gamma",
          "delta"], "answer": "A"})  # fmt: skip
GSM = Item("gsm/0", "gsm8k", {"question": "q", "answer": "#### 5"})


def _probes(n: int) -> list[str]:
    """Answers that make backtracking work hardest: long runs, repeated keywords and fences."""
    return [
        "answer" + " " * n + "!", "Answer is" + " \t" * (n // 2) + "letter" + " " * n,
        "answer " * (n // 7), " " * n + "A" + " " * n + "x", "(" * n + "A" + ")" * n + "x",
        "(A" * (n // 2), "alph" * (n // 4), "$" * n + "x", "#### " * (n // 5), "1," * (n // 2),
        "-" * n, "```" * (n // 3), "```\n" + "\n" * n, "```\n" + " \n" * (n // 2) + "```",
        "[PYTHON]" * (n // 8), "[BEGIN]" + "\n" * n + "[DONE]", "\n" * n + "def",
    ]  # fmt: skip


def _grade_all(which: str, n: int) -> None:
    for text in _probes(n):
        if which == "mbpp":
            extract_code(text)  # the grader's own work; the program run is the sandbox's
        else:
            item = MC if which == "multiple_choice" else GSM
            get_task(item.task).grade(item, text)


def _run(which: str) -> float:
    proc = multiprocessing.get_context("fork").Process(target=_grade_all, args=(which, N))
    t0 = time.perf_counter()
    proc.start()
    proc.join(DEADLINE_S)
    took = time.perf_counter() - t0
    if proc.is_alive():
        proc.kill()
        proc.join()
    assert proc.exitcode == 0, f"{which}: not done after {took:.1f} s (exit {proc.exitcode})"
    return took


def test_builtin_graders_are_linear_on_hostile_answers():
    for which in ("multiple_choice", "gsm8k", "mbpp"):
        _run(which)


def test_builtin_graders_say_they_are_bounded_and_lm_eval_items_say_when_not():
    import pytest

    for item in (MC, GSM):
        assert get_task(item.task).grading_bounded(item, "answer" + " " * N)
    pytest.importorskip("lm_eval")
    lm = get_task("lm_eval")

    def item(steps: list, kwargs: dict | None = None) -> Item:
        return Item("t/0", "lm_eval", {
            "output_type": "generate_until", "doc": {"choices": ["a", "b"]},
            "metric": {"name": "exact_match", "kwargs": kwargs or {}},
            "filter": {"name": "f", "steps": steps}})  # fmt: skip

    shipped = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"  # gsm8k flexible-extract
    short, long = "The answer is 42.", " " * 1_001
    for answer in (short, long):
        assert lm.grading_bounded(item([["regex", {"regex_pattern": shipped}]]), answer)
        assert lm.grading_bounded(item([["regex", None], ["take_first", None]]), answer)
        assert not lm.grading_bounded(item([["regex", {"regex_pattern": r"(x+)+y"}]]), answer)
        ignore = item([["take_first", None]], {"regexes_to_ignore": ["(x+)+y"]})
        assert not lm.grading_bounded(ignore, answer)
        assert not lm.grading_bounded(item([["multi_choice_regex", None]]), answer)
    # lm-eval's quadratic patterns (gsm8k's exact_match ignores `(?s).*#### `): in-process for
    # an answer of up to 1,000 characters (~30 ms at worst), in a grading process beyond.
    gsm = item([["regex", {"regex_pattern": shipped}]], {"regexes_to_ignore": ["(?s).*#### "]})
    assert lm.grading_bounded(gsm, short) and not lm.grading_bounded(gsm, long)
    ja = item([["regex", {"regex_pattern": r"\s+$"}]])
    assert lm.grading_bounded(ja, short) and not lm.grading_bounded(ja, long)
    mc = Item("t/1", "lm_eval", {"output_type": "multiple_choice"})
    assert lm.grading_bounded(mc, "[-1.5, -2.0]")  # log-likelihood arithmetic
