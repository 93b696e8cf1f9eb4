"""Human-readable reports of a search result (search.values.Result): the ranking table, the
gem report (queries, serving cost, certificate), the per-task report of a mixed query set and
the incremental report of an incremental search; `text_report` puts them together. A result
received as a message reads through server.convert.result_from_proto.
"""

from __future__ import annotations

from gemfinder.cost import Cost
from gemfinder.search.values import Certificate, Estimate, Result

VERDICTS = {
    "hidden_gem": "the winner is a hidden gem: not among the most downloaded 1% and "
    "significantly better than each of them on the items both answered",
    "not_a_gem": "not a hidden gem: the winner is among the most downloaded 1%, or one of "
    "them is significantly better on the items both answered",
    "undetermined": "undetermined: on the items both answered, the winner is not "
    "significantly better than each of the most downloaded 1%, nor one of them than the winner",
}


def _downloads(est: Estimate) -> str:
    return "-" if est.downloads is None else f"{est.downloads:,.0f}"


def _accuracy(est: Estimate) -> str:
    """'0.750' or '-' for a model without a graded answer (whose accuracy 0 means nothing)."""
    return f"{est.accuracy:.3f}" if est.items_seen else "-"


def ranking_table(result: Result, top: int = 10) -> str:
    lines = [f"{'rank':>4}  {'model':<48} {'acc':>6} {'95% interval':>15} {'seen':>5} downloads"]
    for est in result.ranking[:top]:
        interval = f"[{est.lower:.3f}, {est.upper:.3f}]" if est.items_seen else "-"
        lines.append(
            f"{est.rank:>4}  {est.model_id[:48]:<48} {_accuracy(est):>6} {interval:>15} "
            f"{est.items_seen:>5} {_downloads(est)}"
        )
    return "\n".join(lines)


def gem_report(result: Result, true_accuracy: dict[str, float] | None = None) -> str:
    popular = result.most_popular
    rows = [("winner", result.winner)] + (
        [("most popular", popular)] if popular is not None else []
    )
    lines = []
    for label, est in rows:
        truth = ""
        if true_accuracy and est.model_id in true_accuracy:
            truth = f"  (true accuracy {true_accuracy[est.model_id]:.3f})"
        lines.append(
            f"{label:<13} {est.model_id}  estimated {_accuracy(est)} "
            f"on {est.items_seen} items, downloads {_downloads(est)}{truth}"
        )
    if popular is not None:
        lines.append(f"verdict       {VERDICTS.get(result.gem_verdict, 'no verdict')}")
        for pair in result.gem_evidence:
            lines.append(
                f"  vs {pair.model_id}: {pair.shared_items} shared items, "
                f"winner alone right on {pair.winner_only_correct}, it alone on "
                f"{pair.other_only_correct} (sign test p = {pair.p_value:.2g})"
            )
    spent, exhaustive = result.queries_spent, result.exhaustive_queries
    checked = result.gem_check_queries
    check = f", {checked:,} for the gem check" if checked else ""
    ratio = saving(spent, exhaustive)
    lines.append(
        f"cost          {spent:,} queries ({result.queries_failed:,} failed, "
        f"{result.queries_cached:,} from cache{check}) vs {exhaustive:,} for "
        f"exhaustive evaluation{ratio}"
    )
    if result.cost is not None:
        lines.append(serving_line(result.cost))
    if result.certificate is not None:
        lines.append(certificate_line(result.certificate))
    return "\n".join(lines)


def text_report(result: Result, top: int = 10, search_id: str = "") -> str:
    """What `gemfinder search` and `gemfinder report` print: the ranking, the gem report (with
    the serving cost and the certificate when the result has them), the search id when given,
    then the per-task and incremental reports when they apply."""
    parts = [ranking_table(result, top=top), "", gem_report(result)]
    if search_id:
        parts.append(f"search id     {search_id}")  # for `gemfinder export` (with --store)
    for extra in (per_task_report(result), incremental_report(result)):
        if extra:
            parts += ["", extra]
    return "\n".join(parts)


def serving_line(cost: Cost) -> str:
    """The serving cost next to the queries: GPU-seconds (of which loads), loads, wall time."""
    return (
        f"serving       {cost.gpu_seconds:,.1f} GPU-seconds ({cost.load_gpu_seconds:,.1f} "
        f"loading: {cost.model_loads:,} model loads, {cost.adapter_loads:,} adapter loads, "
        f"{cost.swaps:,} slot swaps) for {cost.queries:,} queries sent; wall "
        f"{cost.wall_s:,.1f} s (accounted)" + _measured(cost) + _cap(cost)
    )


def _measured(cost: Cost) -> str:
    """Which endpoints' query time was measured from responses rather than configured."""
    measured = [e for e in cost.endpoints if e.query_s_measured]
    if not measured:
        return ""
    shown = ", ".join(f"{e.url} {e.query_s:.3f} s" for e in measured[:3])
    more = f" and {len(measured) - 3} more" if len(measured) > 3 else ""
    return f"; query time measured from responses at {shown}{more}"


def _cap(cost: Cost) -> str:
    """The GPU-second cap, on a line of its own under the serving line."""
    if cost.gpu_seconds_cap is None:
        return ""
    said = "the search stopped on it (ranking as reached)" if cost.stopped_by_cap else "not reached"
    return f"\n              GPU-second cap {cost.gpu_seconds_cap:,.1f}: {said}"


def _row(est: Estimate) -> str:
    interval = f"[{est.lower:.3f}, {est.upper:.3f}]" if est.items_seen else "-"
    name = est.model_id[:48]
    return f"{est.rank:>4}  {name:<48} {_accuracy(est):>6} {interval:>15} {est.items_seen:>5}"


def per_task_report(result: Result, top: int = 3) -> str:
    """Each task's leaders and where the recommended model stands, then, when the caller set
    task weights, the overall ranking under them (search.per_task); "" for a result without
    per-task results."""
    if not result.per_task:
        return ""
    winner = result.recommended_model_id
    header = f"{'rank':>4}  {'model':<48} {'acc':>6} {'95% interval':>15} {'seen':>5}"
    lines = []
    for task in result.per_task:
        lines.append(f"task {task.task}: {task.items:,} items, weight {task.weight:.3f}")
        lines.append(header)
        shown = list(task.estimates[:top])
        mine = next((e for e in task.estimates if e.model_id == winner), None)
        lines += [_row(e) for e in shown]
        if mine is not None and mine not in shown:
            lines.append(_row(mine))
        lines.append("")
    if not custom_weights(result):
        # Each task weighing its share of the items: the overall accuracies are the ranking's
        # own, and its order by interval would only rank models graded on fewer items (the
        # popular ones' gem-check items) above the search's pick.
        return "\n".join(lines).rstrip()
    lines.append("overall, tasks weighted as above (each item weighs its task's weight over "
                 "its task's items)")  # fmt: skip
    lines.append(header)
    lines += [_row(e) for e in result.overall[:top]]
    leader = result.overall[0].model_id if result.overall else winner
    if leader != winner:
        lines.append(
            f"{leader} leads this ranking; the recommendation ({winner}) is the search's own "
            "pick (its elimination order, on items drawn without regard to task)"
        )
    return "\n".join(lines)


def custom_weights(result: Result) -> bool:
    """Whether the caller's task weights differ from each task's share of the items."""
    total = sum(t.items for t in result.per_task)
    return total > 0 and any(abs(t.weight - t.items / total) > 1e-9 for t in result.per_task)


def incremental_report(result: Result) -> str:
    """What an incremental search found against its parent ("" for any other search)."""
    inc = result.incremental
    if inc is None:
        return ""
    verdict = (
        f"winner changed: {inc.parent_winner_model_id} -> {result.recommended_model_id}"
        if inc.winner_changed
        else f"winner unchanged: {result.recommended_model_id}"
    )
    lines = [
        f"incremental search from {inc.parent_search_id}: {verdict}",
        f"  {len(inc.incumbents)} incumbents, {len(inc.newcomers)} newcomers, "
        f"{inc.left_out} candidates left out (ranked below the incumbents before); "
        f"{result.queries_spent - result.queries_cached:,} new queries, "
        f"{result.queries_cached:,} answers from the cache",
    ]
    if inc.removed:
        lines.append(f"  dropped (no longer in the tree): {', '.join(inc.removed)}")
    return "\n".join(lines)


def saving(spent: int, exhaustive: int) -> str:
    """How much cheaper than asking every model every item; a large budget on a small pool
    read "1x cheaper" for 7,200 queries against 8,400, so below 10x it keeps a decimal."""
    if not spent:
        return ""
    ratio = exhaustive / spent
    if ratio < 1.05:
        return ": no cheaper (the budget covered about every model on every item)"
    return f": {ratio:.1f}x cheaper" if ratio < 10 else f": {ratio:.0f}x cheaper"


def certificate_line(cert: Certificate) -> str:
    """The certificate as one line of the gem report (points, as the tables)."""
    return f"certificate: {certificate_sentence(cert)}"


# Above this a fixed-budget certificate says nothing a user could act on: ten accuracy points
# is wider than the gaps between a tree's fine-tunes that a search is run to tell apart (the
# fixed-confidence targets documented are 0.5 and 2 points). SH drops models after a few items,
# so its certificate, which bounds the dropped models too, is often near 100 points.
USEFUL_EPSILON = 0.10


def certificate_sentence(cert: Certificate) -> str:
    """What the certificate says, and for a fixed-confidence search whether its target was
    reached; for a fixed-budget one too wide to be of use, that it certifies nothing useful and
    how to get a guarantee. The HTML report writes the same words."""
    reached = 100 * cert.epsilon_reached
    bound = (
        f"the winner is within {reached:.2f} accuracy points of every model with "
        f"probability at least {1 - cert.delta:g}"
    )
    if cert.epsilon is not None:
        outcome = "certified" if cert.certified else "not reached within the budget"
        return f"{bound} (target {100 * cert.epsilon:g} points: {outcome})"
    if cert.epsilon_reached > USEFUL_EPSILON:
        return (
            f"{bound}, which certifies nothing useful (this budget compared some models on a "
            "few items only); for a guarantee, search with --epsilon (and --delta)"
        )
    return bound
