"""Per-task results of a mixed query set, and the overall ranking under task weights.

An item's task is the one its results are reported under (tasks.task_label: the built-in task's
name, or an lm_eval record's own lm-eval task). Both are computed from every graded answer of
the search (the gem check's included, as the search's own estimates are), after it ends; they
re-read the answers and never change what the search picked.

Per task: each model graded on at least one item of the task, estimated on those items alone
(accuracy, 95% Wilson interval), ranked by the interval's lower end, then accuracy, then the
search's own rank. The lower end and not the mean, because the search spends unevenly: a model
eliminated after 3 lucky answers on a task has a wide interval and does not outrank one
measured on 40 of its items with a slightly lower mean. At most MAX_PER_TASK models per task.

Overall, under task weights w_t (the caller's `task_weights` normalised to sum to 1; by default
each task's share of the query set's items, n_t / N): each item a model was graded on weighs
w_t / n_t, and the model's weighted accuracy is the weighted mean over its graded items (a
self-normalised, Hajek, estimator). Why this one:
- with the default weights every item weighs 1 / N, so the weighted accuracy is the plain one,
  exactly what the search reports (same successes, same items, same interval);
- the search draws items uniformly, so it estimates sum_t w_t * accuracy_t, the accuracy on a
  query set in which task t counts for w_t;
- a task a model never saw simply adds nothing (a mean of per-task means would be undefined).
Its interval is Wilson's at the effective sample size (sum w)^2 / sum w^2 (Kish), which is the
item count when weights are equal. The overall ranking lists every candidate, ranked like a
task's.
"""

from __future__ import annotations

import math
from collections import defaultdict

from gemfinder import _core
from gemfinder.search.spec import SearchSpec
from gemfinder.search.values import Estimate, TaskResult
from gemfinder.tasks import task_label

MAX_PER_TASK = 500  # models listed per task: bounds the stored result and the message
Z95 = 1.959_963_984_540_054  # the core's (core_rs/src/ranking.rs)


def wilson(p: float, n: float) -> tuple[float, float]:
    """The 95% Wilson interval of a proportion `p` over `n` (possibly fractional) trials."""
    if n <= 0:
        return 0.0, 1.0
    z2 = Z95 * Z95
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = Z95 * math.sqrt(max(p * (1.0 - p), 0.0) / n + z2 / (4.0 * n * n)) / denom
    lower = 0.0 if p <= 0.0 else max(centre - half, 0.0)
    upper = 1.0 if p >= 1.0 else min(centre + half, 1.0)
    return lower, upper


def _ranked(
    estimates: list[Estimate], search_rank: dict[str, int], limit: int | None = None
) -> tuple[Estimate, ...]:
    order = sorted(
        estimates,
        key=lambda e: (-e.lower, -e.accuracy, search_rank.get(e.model_id, 0), e.model_id),
    )[:limit]
    return tuple(_with(e, k, e.accuracy, e.lower, e.upper, e.items_seen, e.successes)
                 for k, e in enumerate(order, 1))  # fmt: skip


def _with(
    base: Estimate, rank: int, acc: float, lower: float, upper: float, n: int, hits: int
) -> Estimate:
    """`base` with these figures (built directly: dataclasses.replace is 5x slower, and a
    result of 5,000 models makes 40,000 of these)."""
    return Estimate(
        base.model_id, rank, acc, lower, upper, n, hits, base.eliminated_in_round,
        base.downloads, base.official,
    )  # fmt: skip


Counts = dict[int, dict[int, tuple[int, int]]]  # {model: {task index: (graded, successes)}}


def item_tasks(spec: SearchSpec) -> tuple[list[str], list[int]]:
    """(the tasks of the query set by name, each item's index into them)."""
    tasks = list(spec.task_items())
    index = {t: k for k, t in enumerate(tasks)}
    return tasks, [index[task_label(it)] for it in spec.items]


def counts_of(spec: SearchSpec, pulls: dict[int, dict[int, int]]) -> Counts:
    """Counts from {model: {item: reward}} (the stores count in SQL: Store.task_counts)."""
    _, of_item = item_tasks(spec)
    out: Counts = {}
    for model, answered in pulls.items():
        mine: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for item, reward in answered.items():
            mine[of_item[item]][0] += 1
            mine[of_item[item]][1] += reward
        out[model] = {t: (n, hits) for t, (n, hits) in mine.items()}
    return out


def _counted(base: Estimate, n: int, hits: int) -> Estimate:
    lower, upper = _core.wilson_interval(hits, n)
    return _with(base, base.rank, hits / n if n else 0.0, lower, upper, n, hits)


def _weighted(base: Estimate, answered: list[tuple[float, int, int]]) -> Estimate:
    """`answered`: (weight of each of its items, graded, successes) of each task the model
    was graded on; tasks weighing 0 do not count (nor in items_seen)."""
    answered = [(w, n, hits) for w, n, hits in answered if w > 0 and n > 0]
    n = sum(n for _, n, _ in answered)
    hits = sum(h for _, _, h in answered)
    if len({w for w, _, _ in answered}) <= 1:  # equal weights: the plain count, bit for bit
        return _counted(base, n, hits)
    total = sum(w * k for w, k, _ in answered)
    n_eff = total * total / sum(w * w * k for w, k, _ in answered)
    acc = sum(w * h for w, _, h in answered) / total
    lower, upper = wilson(acc, n_eff)
    return _with(base, base.rank, acc, lower, upper, n, hits)


def per_task(
    spec: SearchSpec, ranking: tuple[Estimate, ...], counts: Counts
) -> tuple[tuple[TaskResult, ...], tuple[Estimate, ...]]:
    """(per-task results, overall ranking under the task weights) from `counts` (graded
    answers and successes of each model on each task, every answer of the search) and the
    search's ranking; both empty unless the query set has two tasks or more."""
    items = spec.task_items()
    if len(items) < 2:
        return (), ()
    tasks = list(items)
    shares = spec.task_shares()
    by_id = {e.model_id: e for e in ranking}
    search_rank = {e.model_id: e.rank for e in ranking}
    # Unnormalised (the mean is scale-free): by default each item weighs exactly 1.
    raw = [float(spec.task_weights.get(t, 1.0)) if spec.task_weights else items[t] for t in tasks]
    item_weight = [raw[k] / items[t] for k, t in enumerate(tasks)]
    per: dict[int, list[Estimate]] = defaultdict(list)
    overall = []
    for model, cand in enumerate(spec.candidates):
        base = by_id.get(cand.model_id) or Estimate(
            cand.model_id, downloads=cand.downloads, official=cand.official
        )
        mine = counts.get(model, {})
        for task, (n, hits) in sorted(mine.items()):
            if n:
                per[task].append(_counted(base, n, hits))
        weighted = [(item_weight[t], n, hits) for t, (n, hits) in sorted(mine.items())]
        overall.append(_weighted(base, weighted))
    results = tuple(
        TaskResult(
            task=task,
            weight=shares[task],
            items=items[task],
            estimates=_ranked(per[k], search_rank, MAX_PER_TASK),
        )
        for k, task in enumerate(tasks)
    )
    return results, _ranked(overall, search_rank)
