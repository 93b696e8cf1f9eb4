"""The text report's per-task section: the overall ranking appears only under the caller's
task weights (with each task weighing its share of the items it would repeat the ranking)."""

from __future__ import annotations

from gemfinder.report import per_task_report
from gemfinder.search.values import Estimate, Result, TaskResult


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
