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
from dataclasses import replace

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


def _ranked(estimates: list[Estimate], search_rank: dict[str, int]) -> tuple[Estimate, ...]:
    order = sorted(
        estimates,
        key=lambda e: (-e.lower, -e.accuracy, search_rank.get(e.model_id, 0), e.model_id),
    )
    return tuple(replace(e, rank=k) for k, e in enumerate(order, 1))


def _counted(base: Estimate, rewards: list[int]) -> Estimate:
    n, hits = len(rewards), sum(rewards)
    lower, upper = _core.wilson_interval(hits, n)
    return replace(
        base,
        accuracy=hits / n if n else 0.0,
        lower=lower,
        upper=upper,
        items_seen=n,
        successes=hits,
    )


def _weighted(base: Estimate, answers: list[tuple[float, int]]) -> Estimate:
    """`answers`: (weight, reward) of every item the model was graded on; items of a task
    weighing 0 do not count (nor in items_seen)."""
    answers = [(w, r) for w, r in answers if w > 0]
    weights = {w for w, _ in answers}
    if len(weights) <= 1:  # equal weights: the plain count, bit for bit
        return _counted(base, [r for _, r in answers])
    total = sum(w for w, _ in answers)
    n_eff = total * total / sum(w * w for w, _ in answers)
    acc = sum(w * r for w, r in answers) / total
    lower, upper = wilson(acc, n_eff)
    hits = sum(r for _, r in answers)
    return replace(
        base,
        accuracy=acc,
        lower=lower,
        upper=upper,
        items_seen=len(answers),
        successes=hits,
    )


def per_task(
    spec: SearchSpec, ranking: tuple[Estimate, ...], pulls: dict[int, dict[int, int]]
) -> tuple[tuple[TaskResult, ...], tuple[Estimate, ...]]:
    """(per-task results, overall ranking under the task weights) from `pulls`
    ({model: {item: reward}} of every graded answer of the search) and the search's ranking;
    both empty unless the query set has two tasks or more."""
    labels = [task_label(it) for it in spec.items]
    counts = spec.task_items()
    if len(counts) < 2:
        return (), ()
    shares = spec.task_shares()
    by_id = {e.model_id: e for e in ranking}
    search_rank = {e.model_id: e.rank for e in ranking}
    # Unnormalised (the mean is scale-free): by default each item weighs exactly 1.
    raw = {t: float(spec.task_weights.get(t, 1.0)) if spec.task_weights else n
           for t, n in counts.items()}  # fmt: skip
    item_weight = [raw[t] / counts[t] for t in labels]
    per: dict[str, list[Estimate]] = defaultdict(list)
    overall = []
    for model, cand in enumerate(spec.candidates):
        base = by_id.get(cand.model_id) or Estimate(
            cand.model_id, downloads=cand.downloads, official=cand.official
        )
        answered = pulls.get(model, {})
        by_task: dict[str, list[int]] = defaultdict(list)
        for item, reward in sorted(answered.items()):
            by_task[labels[item]].append(reward)
        for task, rewards in by_task.items():
            per[task].append(_counted(base, rewards))
        weighted = [(item_weight[i], r) for i, r in sorted(answered.items())]
        overall.append(_weighted(base, weighted))
    results = tuple(
        TaskResult(
            task=task,
            weight=shares[task],
            items=counts[task],
            estimates=_ranked(per[task], search_rank)[:MAX_PER_TASK],
        )
        for task in counts
    )
    return results, _ranked(overall, search_rank)
