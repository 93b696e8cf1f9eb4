"""The text report's per-task section: the overall ranking appears only under the caller's
task weights (with each task weighing its share of the items it would repeat the ranking)."""

from __future__ import annotations

from gemfinder.report import certificate_line, per_task_report, saving
from gemfinder.search.values import Certificate, Estimate, Result, TaskResult


def _result(weights: tuple[float, float]) -> Result:
    win = Estimate("win", rank=1, accuracy=0.79, lower=0.76, upper=0.82, items_seen=867)
    lucky = Estimate("popular", rank=1, accuracy=0.83, lower=0.79, upper=0.86, items_seen=503)
    tasks = (
        TaskResult("arc_challenge", weights[0], 200, (lucky, win)),
        TaskResult("gsm8k", weights[1], 600, (win, lucky)),
    )
    return Result(recommended_model_id="win", ranking=(win, lucky), per_task=tasks,
                  overall=(lucky, win))  # fmt: skip


def test_default_weights_print_no_overall_ranking():
    text = per_task_report(_result((0.25, 0.75)))  # each task's share of the 800 items
    assert "task arc_challenge" in text and "task gsm8k" in text
    assert "overall" not in text and "leads this ranking" not in text


def test_the_callers_weights_print_the_overall_ranking_and_who_leads_it():
    text = per_task_report(_result((0.5, 0.5)))
    assert "overall, tasks weighted as above" in text
    assert "popular leads this ranking" in text


def test_an_informative_certificate_reads_as_a_bound():
    line = certificate_line(Certificate(epsilon_reached=0.0173, delta=0.05))
    assert line == (
        "certificate: the winner is within 1.73 accuracy points of every model with "
        "probability at least 0.95"
    )


def test_a_wide_fixed_budget_certificate_says_it_certifies_nothing_useful():
    """SH drops models after a few items: the bound over them is near 100 points, valid and of
    no use; the line says so and how to get a guarantee (the values stay as they are)."""
    wide = Certificate(epsilon_reached=0.9924, delta=0.05)
    assert certificate_line(wide) == (
        "certificate: the winner is within 99.24 accuracy points of every model with "
        "probability at least 0.95, which certifies nothing useful (this budget compared some "
        "models on a few items only); for a guarantee, search with --epsilon (and --delta)"
    )
    # just inside the threshold it is a plain bound; a fixed-confidence one keeps its target
    assert "nothing useful" not in certificate_line(Certificate(0.10, 0.05))
    missed = Certificate(epsilon_reached=0.9924, delta=0.05, epsilon=0.02, certified=False)
    assert certificate_line(missed).endswith("(target 2 points: not reached within the budget)")


def test_the_saving_keeps_a_decimal_below_10x_and_says_when_there_is_none():
    # 7,200 queries against 8,400 for exhaustive evaluation read "1x cheaper".
    assert saving(7_200, 8_400) == ": 1.2x cheaper"
    assert saving(14_981, 260_100) == ": 17x cheaper"
    assert saving(8_400, 8_400).startswith(": no cheaper")
    assert saving(0, 8_400) == ""
