"""Human-readable reports of a search result: ranking table and the gem report.

Works on the result dict of gemfinder.search.result and on the SearchResult proto alike.
"""

from __future__ import annotations

from typing import Any

VERDICTS = {
    "hidden_gem": "the winner is a hidden gem: not among the most downloaded 1% and "
    "significantly better than each of them on the items both answered",
    "not_a_gem": "not a hidden gem: the winner is among the most downloaded 1%, or one of "
    "them is significantly better on the items both answered",
    "undetermined": "undetermined: on the items both answered, the winner is not "
    "significantly better than each of the most downloaded 1%, nor one of them than the winner",
}


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key)


def _downloads(est: Any) -> str:
    value = _get(est, "downloads")
    if value is None or (not isinstance(est, dict) and not est.HasField("downloads")):
        return "-"
    return f"{value:,.0f}"


def _verdict(result: Any) -> str:
    value = _get(result, "gem_verdict")
    if isinstance(value, int):  # the proto enum: GEM_VERDICT_HIDDEN_GEM -> hidden_gem
        from gemfinder.v1 import gemfinder_pb2 as pb

        return pb.GemVerdict.Name(value).removeprefix("GEM_VERDICT_").lower()
    return value or ""


def _accuracy(est: Any) -> str:
    """'0.750' or '-' for a model without a graded answer (whose accuracy 0 means nothing)."""
    return f"{_get(est, 'accuracy'):.3f}" if _get(est, "items_seen") else "-"


def ranking_table(result: Any, top: int = 10) -> str:
    lines = [f"{'rank':>4}  {'model':<48} {'acc':>6} {'95% interval':>15} {'seen':>5} downloads"]
    for est in list(_get(result, "ranking"))[:top]:
        interval = f"[{_get(est, 'lower'):.3f}, {_get(est, 'upper'):.3f}]"
        if not _get(est, "items_seen"):
            interval = "-"
        lines.append(
            f"{_get(est, 'rank'):>4}  {_get(est, 'model_id')[:48]:<48} "
            f"{_accuracy(est):>6} {interval:>15} "
            f"{_get(est, 'items_seen'):>5} {_downloads(est)}"
        )
    return "\n".join(lines)


def gem_report(result: Any, true_accuracy: dict[str, float] | None = None) -> str:
    winner = _get(result, "winner")
    popular = _get(result, "most_popular")
    has_popular = popular is not None and (
        isinstance(result, dict) or result.HasField("most_popular")
    )
    rows = [("winner", winner)] + ([("most popular", popular)] if has_popular else [])
    lines = []
    for label, est in rows:
        name = _get(est, "model_id")
        truth = ""
        if true_accuracy and name in true_accuracy:
            truth = f"  (true accuracy {true_accuracy[name]:.3f})"
        lines.append(
            f"{label:<13} {name}  estimated {_accuracy(est)} "
            f"on {_get(est, 'items_seen')} items, downloads {_downloads(est)}{truth}"
        )
    if has_popular:
        lines.append(f"verdict       {VERDICTS.get(_verdict(result), 'no verdict')}")
        for pair in _get(result, "gem_evidence") or []:
            lines.append(
                f"  vs {_get(pair, 'model_id')}: {_get(pair, 'shared_items')} shared items, "
                f"winner alone right on {_get(pair, 'winner_only_correct')}, it alone on "
                f"{_get(pair, 'other_only_correct')} (sign test p = {_get(pair, 'p_value'):.2g})"
            )
    spent = int(_get(result, "queries_spent"))
    exhaustive = int(_get(result, "exhaustive_queries"))
    checked = int(_get(result, "gem_check_queries") or 0)
    check = f", {checked:,} for the gem check" if checked else ""
    ratio = f": {exhaustive / spent:.0f}x cheaper" if spent else ""
    lines.append(
        f"cost          {spent:,} queries ({int(_get(result, 'queries_failed')):,} failed, "
        f"{int(_get(result, 'queries_cached')):,} from cache{check}) vs {exhaustive:,} for "
        f"exhaustive evaluation{ratio}"
    )
    return "\n".join(lines)
