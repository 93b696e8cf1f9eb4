"""What a caller puts in an inline lm_eval item cannot make grading freeze or blow up.

The gRPC attack itself (a real server, a catastrophic regex) is tests/server/test_regex_redos.py;
here: which patterns the service lets through, measured; and the two places where grading's cost
grew faster than the reply (stop strings, multiple golds), graded as lm-eval grades them.
"""

from __future__ import annotations

import re
import time
import tracemalloc

import pytest

pytest.importorskip("lm_eval")
from gemfinder.tasks.lmeval import patterns  # noqa: E402
from gemfinder.tasks.lmeval.grading import cut_at_until, score_generation  # noqa: E402


def _probes(n: int) -> list[str]:
    """Replies that make a backtracking pattern work hardest: long runs of one class."""
    return [" " * n + "x", "\n" * n + "x", "a" * n, "1" * n + "x", "1," * (n // 2) + "x",
            "#" * n, "( " * (n // 2) + "x", "The answer is " * (n // 14)]  # fmt: skip


def _cost(rx: re.Pattern, n: int) -> float:
    """CPU time of this thread, not wall time: on a loaded machine a descheduled probe would
    look quadratic (the ratio test below failed that way under load)."""
    t0 = time.thread_time()
    for text in _probes(n):
        rx.findall(text)  # the regex filters
        rx.sub("", text)  # regexes_to_ignore
    return time.thread_time() - t0


def test_inline_items_get_lm_evals_shipped_patterns_but_the_quadratic_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMFINDER_CACHE_DIR", str(tmp_path))
    patterns._memo.clear()
    shipped = patterns.scan(patterns._roots(()))
    allowed = patterns.allowed(())
    assert r"(-?[$0-9.,]{2,})|(-?[0-9]+)" in allowed  # gsm8k flexible-extract
    assert r"#### (\-?[0-9\.\,]+)" in allowed  # gsm8k strict-match
    assert patterns.SUPERLINEAR <= shipped and not patterns.SUPERLINEAR & allowed
    assert allowed == shipped - patterns.SUPERLINEAR
    assert list(tmp_path.glob("lm-eval-patterns-*.json"))  # a second process reads this
    patterns._memo.clear()
    assert patterns.allowed(()) == allowed
    # Four times the reply: a linear pattern costs ~4x, a quadratic one ~16x. Every allowed
    # pattern stays near linear on the probes; each left-out one is quadratic.
    for pattern in sorted(shipped):
        rx = re.compile(pattern)
        small = min(_cost(rx, 2000) for _ in range(5))
        large = min(_cost(rx, 8000) for _ in range(5))
        if pattern in patterns.SUPERLINEAR:
            assert large > 9 * small, (pattern, small, large)
        else:
            assert large < 9 * small + 0.005, (pattern, small, large)
    patterns._memo.clear()


def test_check_names_each_place_a_pattern_reaches_re() -> None:
    ok = frozenset({"#### (\\d+)"})

    def fields(steps, kwargs=None):
        return {"metric": {"name": "exact_match", "kwargs": kwargs or {}},
                "filter": {"name": "f", "steps": steps}}  # fmt: skip

    assert patterns.check(fields([["regex", {"regex_pattern": "#### (\\d+)"}]]), ok) is None
    assert patterns.check(fields([["regex", None], ["take_first", None]]), ok) is None
    assert patterns.check(fields([["take_first", None]], {"ignore_case": True}), ok) is None
    for flt, kwargs, where in [
        ([["take_first", None], ["regex", {"regex_pattern": "(a+)+$"}]], None,
         "filter.steps[1][1].regex_pattern"),
        ([["regex", {"regex_pattern": ["#### (\\d+)"]}]], None, "filter.steps[0][1].regex_pattern"),
        ([["multi_choice_regex", {"regexes_to_ignore": "x*"}]], None,
         "filter.steps[0][1].regexes_to_ignore"),
        ([["take_first", None]], {"regexes_to_ignore": ["#### (\\d+)", 7]},
         "metric.kwargs.regexes_to_ignore[1]"),
    ]:  # fmt: skip
        where_, why = patterns.check(fields(flt, kwargs), ok)
        assert where_ == where
        assert "--lm-eval-include" in why or "list of regular expressions" in why


def test_stop_strings_cut_as_lm_eval_cuts_without_a_list_of_every_piece() -> None:
    for text, until in [("a\n\nb\n\nc", ["\n\n"]), ("abc", ["x"]), ("Q: 1 A: 2", ["A:", "Q:"]),
                        ("", ["a"]), ("xyz", ["", "z"]), ("aaa", ["a"])]:  # fmt: skip
        expected = text
        for term in until:  # lm-eval's HF model and TemplateAPI
            if term:
                expected = expected.split(term)[0]
        assert cut_at_until(text, until) == expected
    tracemalloc.start()
    cut_at_until("x" + "a" * 1_000_000, ["a"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5_000_000, peak  # split: a list of a million strings, ~60 MB


def test_many_golds_score_as_lm_eval_without_a_copy_of_the_reply_per_gold() -> None:
    from lm_eval.api.metrics import exact_match_hf_evaluate

    def both(filtered, golds, **kwargs):
        fields = {"metric": {"name": "exact_match", "kwargs": kwargs}, "target": golds,
                  "multiple_target": True}  # fmt: skip
        ref = exact_match_hf_evaluate(
            references=golds, predictions=[filtered] * len(golds), **kwargs
        )["exact_match"]
        return score_generation(fields, filtered), 1.0 if ref > 0 else 0.0

    for filtered, golds, kwargs in [
        ("Paris", ["paris", "Paris"], {}),
        ("PARIS.", ["paris"], {"ignore_case": True, "ignore_punctuation": True}),
        ("1,000", ["1000"], {"regexes_to_ignore": [","]}),
        ("nope", ["a", "b"], {}),
        ("a\x00", ["a"], {}),  # numpy's string arrays drop trailing NULs, one gold or many
        ("7", [7, "8"], {}),  # not all strings: lm-eval's own single call
    ]:
        mine, ref = both(filtered, golds, **kwargs)
        assert mine == ref, (filtered, golds, kwargs)

    golds = [f"alias {i}" for i in range(2000)] + ["a" * 10]
    fields = {"metric": {"name": "exact_match", "kwargs": {}}, "target": golds,
              "multiple_target": True}  # fmt: skip
    tracemalloc.start()
    assert score_generation(fields, "a" * 200_000) == 0.0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20_000_000, peak  # in one call: 2,001 x 200,000 x 4 bytes = 1.6 GB


def test_the_operators_include_yaml_adds_its_patterns(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GEMFINDER_CACHE_DIR", str(tmp_path / "cache"))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    mine = r"Result: (\d+) units"
    (tasks / "units.yaml").write_text(
        "task: units\ndoc_to_text: !function utils.doc_to_text\nfilter_list:\n"
        "  - name: get\n    filter:\n      - function: regex\n"
        f"        regex_pattern: '{mine}'\n      - function: take_first\n"
    )
    patterns._memo.clear()
    try:
        include = (str(tasks),)
        assert mine in patterns.allowed(include) and mine not in patterns.allowed(())
        # an edited YAML is a new cache key: read again, in a process that has not seen it
        (tasks / "units.yaml").write_text("task: units\n")
        patterns._memo.clear()
        assert mine not in patterns.allowed(include)
    finally:
        patterns._memo.clear()
