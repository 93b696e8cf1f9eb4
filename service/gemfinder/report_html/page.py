"""The report page: one self-contained static HTML file (inline CSS and SVG, no script, nothing
fetched), built from a search's Result and its stored spec.

Every string that comes from a search (model ids, task names, the query set's name) is written
through html.escape: model ids are chosen by whoever publishes a model, and the report is opened
in a browser. The SVG comes from matplotlib, which draws text as paths and escapes the text it
copies into comments; those comments are dropped, and a figure holding anything active is
refused (`_figure`), so a future matplotlib cannot turn a model id into markup unnoticed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from gemfinder import __version__
from gemfinder.cost import Cost
from gemfinder.report import VERDICTS, certificate_sentence
from gemfinder.report_html import figures
from gemfinder.report_html.rounds import queries_per_round
from gemfinder.search.values import Estimate, Incremental, Result

TOP_ROWS = 25  # rows of the ranking table
ACTIVE = re.compile(r"<\s*(script|foreignObject|iframe|object|embed|image)\b|\son\w+\s*=|"
                    r"javascript:|(?:href|src)\s*=\s*[\"'](?!#)", re.IGNORECASE)  # fmt: skip
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
HEADLINES = {
    "hidden_gem": "A hidden gem",
    "not_a_gem": "Not a hidden gem",
    "undetermined": "Undetermined: too little paired evidence either way",
    "no_popularity": "No verdict: no candidate has downloads",
}
CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;
 padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid
 #ddd}
.sub{color:#666}.verdict{padding:1em 1.2em;border-radius:6px;background:#f4f4f4;
 border-left:6px solid #888}.verdict.hidden_gem{border-color:#2ca02c;background:#eef8ee}
.verdict.not_a_gem{border-color:#d62728;background:#fbeeee}.verdict h2{border:0;margin:0 0 .3em}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}td,th{padding:.25em .7em;
 text-align:right;border-bottom:1px solid #eee}td.id,th.id{text-align:left;word-break:break-all}
tr.winner td{color:#d62728;font-weight:600}tr.popular td{color:#1f77b4;font-weight:600}
figure{margin:1em 0}figure svg{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}
.note{color:#666;font-size:.9em}
"""


def build_html(
    result: Result,
    spec: Mapping[str, Any] | None = None,
    *,
    search_id: str = "",
    per_task: Mapping[str, Sequence[Estimate]] | None = None,
    task_weights: Mapping[str, float] | None = None,
) -> str:
    """The report of one search. `spec`: its stored spec (SearchSpec.to_dict()), for the facts
    line; `per_task`: task -> that task's estimates, drawn as one panel each; by default the
    result's own per-task results (a mixed query set's, search.per_task) and their weights."""
    if per_task is None and result.per_task:
        per_task = {t.task: t.estimates for t in result.per_task}
        task_weights = task_weights or {t.task: t.weight for t in result.per_task}
    winner = result.winner.model_id or result.recommended_model_id
    popular = result.most_popular.model_id if result.most_popular else None
    parts = [
        f"<h1>gemfinder report{': ' + escape(search_id) if search_id else ''}</h1>",
        f'<p class="sub">{_facts(result, spec)}</p>',
        _verdict(result),
        "<h2>Estimated accuracy against downloads</h2>",
        _figure(
            figures.overview_svg(result.ranking, winner, popular),
            "Each candidate's estimated accuracy with its 95% (Wilson) interval, against its "
            "downloads on a log scale; candidates whose downloads are unknown sit in their own "
            "lane at the left. The winner is the red star, the most downloaded the blue diamond."
            + _unseen(result.ranking),
        ),
    ]
    if per_task:
        parts += [
            "<h2>Per task</h2>",
            _figure(
                figures.task_panels_svg(per_task, winner, popular, task_weights),
                "The same picture on each task's items alone; the overall winner and most "
                "downloaded model are marked in every panel.",
            ),
        ]
    parts += [_queries(result), _ranking(result)]
    body = "\n".join(parts)
    title = f"gemfinder report {search_id}".strip()
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n"
        f'<p class="note">gemfinder {escape(__version__)}</p>\n</body></html>\n'
    )


def _figure(svg: str, caption: str) -> str:
    # matplotlib copies each label into a comment beside its paths: of no use here, and the
    # one place a model id would sit in the SVG as text.
    svg = COMMENT.sub("", svg)
    if ACTIVE.search(svg):
        raise RuntimeError("the plotting library wrote active content into a figure")
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _facts(result: Result, spec: Mapping[str, Any] | None) -> str:
    facts = [f"{len(result.ranking):,} candidates"]
    if spec:
        items = spec.get("items") or []
        tasks = Counter(str(it.get("task", "")) for it in items)
        shown = ", ".join(f"{escape(t)} {n:,}" for t, n in tasks.most_common(6))
        more = f", {len(tasks) - 6} more tasks" if len(tasks) > 6 else ""
        named = f" from {escape(str(spec['query_set']))}" if spec.get("query_set") else ""
        facts += [
            f"{len(items):,} items{named} ({shown}{more})" if items else "no items stored",
            f"algorithm {escape(str(spec.get('algorithm', '?')))}",
            f"budget {int(spec.get('budget', 0)):,} queries",
            f"seed {escape(str(spec.get('seed', 0)))}",
        ]
    return " · ".join(facts)


def _acc(e: Estimate) -> str:
    if not e.items_seen:
        return "not graded"
    return f"{e.accuracy:.3f} [{e.lower:.3f}, {e.upper:.3f}] on {e.items_seen:,} items"


def _downloads(e: Estimate) -> str:
    return "unknown" if e.downloads is None else f"{e.downloads:,.0f}"


def _verdict(result: Result) -> str:
    verdict = result.gem_verdict or ("no_popularity" if result.most_popular is None else "")
    win = result.winner
    lines = [
        f'<div class="verdict {escape(verdict)}">',
        f"<h2>{escape(HEADLINES.get(verdict, 'No verdict recorded'))}</h2>",
        f"<p>Winner: <b>{escape(win.model_id)}</b>, estimated accuracy {_acc(win)}, "
        f"downloads {_downloads(win)}.</p>",
    ]
    pop = result.most_popular
    if pop is not None:
        lines.append(
            f"<p>Most downloaded: <b>{escape(pop.model_id)}</b>, estimated accuracy "
            f"{_acc(pop)}, downloads {_downloads(pop)}.</p>"
        )
    if verdict in VERDICTS:
        lines.append(f"<p>{escape(VERDICTS[verdict][0].upper() + VERDICTS[verdict][1:])}.</p>")
    if result.gem_evidence:
        lines.append(_evidence(result))
    if result.certificate is not None:
        sentence = certificate_sentence(result.certificate)
        lines.append(f"<p>Certificate: {escape(sentence)}.</p>")
    if result.incremental is not None:
        lines.append(_incremental(result.incremental, result.recommended_model_id))
    lines.append("</div>")
    return "\n".join(lines)


def _incremental(inc: Incremental, winner: str) -> str:
    """The parent an incremental search challenged, and whether its winner held."""
    parent = f"<b>{escape(inc.parent_search_id)}</b>"
    if inc.winner_changed:
        held = (
            f"the winner changed: <b>{escape(inc.parent_winner_model_id)}</b> before, "
            f"<b>{escape(winner)}</b> now"
        )
    else:
        held = f"the winner is unchanged (<b>{escape(winner)}</b>)"
    return (
        f"<p>Incremental search from {parent}: {held}; {len(inc.incumbents):,} incumbents, "
        f"{len(inc.newcomers):,} newcomers.</p>"
    )


def _evidence(result: Result) -> str:
    rows = [
        "<table><tr><th class=id>winner against</th><th>shared items</th>"
        "<th>only the winner right</th><th>only it right</th><th>sign test p</th></tr>"
    ]
    for p in result.gem_evidence:
        rows.append(
            f"<tr><td class=id>{escape(p.model_id)}</td><td>{p.shared_items:,}</td>"
            f"<td>{p.winner_only_correct:,}</td><td>{p.other_only_correct:,}</td>"
            f"<td>{p.p_value:.2g}</td></tr>"
        )
    rows.append("</table>")
    return (
        "<p>Paired evidence: on the items both models answered, where exactly one of them was "
        "right (one-sided exact sign test that the winner is better, at 5%):</p>" + "".join(rows)
    )


def _queries(result: Result) -> str:
    spent, exhaustive = result.queries_spent, result.exhaustive_queries
    ratio = f", {exhaustive / spent:.0f}x fewer" if spent else ""
    check = f", {result.gem_check_queries:,} of them for the gem check" if (
        result.gem_check_queries) else ""  # fmt: skip
    parts = [
        "<h2>Queries</h2>",
        f"<p>{spent:,} queries spent{check} ({result.queries_failed:,} failed, "
        f"{result.queries_cached:,} answered from the cache), against {exhaustive:,} to "
        f"evaluate every candidate on every item{ratio}.</p>",
    ]
    cost = result.cost
    if cost is not None:  # gemfinder.cost: accounted from the endpoints' cost models
        parts.append(
            f"<p>Serving cost: {cost.gpu_seconds:,.1f} GPU-seconds ({cost.load_gpu_seconds:,.1f} "
            f"of them loading: {cost.model_loads:,} model loads, {cost.adapter_loads:,} adapter "
            f"loads, {cost.swaps:,} slot swaps) for {cost.queries:,} queries sent to endpoints; "
            f"wall time {cost.wall_s:,.1f} s ({_cost_source(cost)}).{_cap(cost)}</p>"
        )
    rounds = queries_per_round(result)
    if not rounds:
        parts.append(
            "<p>This search has no rounds (its algorithm chooses one query at a time), so "
            "there is no per-round split.</p>"
        )
        return "\n".join(parts)
    parts.append(
        _figure(
            figures.rounds_svg(rounds, result.gem_check_queries),
            "Graded queries per round, each bar labelled with the models graded in it.",
        )
    )
    rows = "".join(
        f"<tr><td class=id>round {r.label}</td><td>{r.survivors:,}</td><td>{r.queries:,}</td></tr>"
        for r in rounds
    )
    parts.append(
        "<table><tr><th class=id>round</th><th>models</th><th>graded queries</th></tr>"
        f"{rows}</table>"
        '<p class="note">The store keeps no per-round log: these counts are derived from each '
        "candidate's graded items and the round it was eliminated in. They add up to the "
        "search's graded answers; failed queries and the gem check are not split by round.</p>"
    )
    return "\n".join(parts)


def _unseen(ranking: Sequence[Estimate]) -> str:
    n = sum(1 for e in ranking if not e.items_seen)
    if not n:
        return ""
    return f" {n:,} {'candidate was' if n == 1 else 'candidates were'} never queried (not drawn)."


def _ranking(result: Result) -> str:
    winner = result.winner.model_id
    popular = result.most_popular.model_id if result.most_popular else None
    rows = []
    for e in result.ranking[:TOP_ROWS]:
        cls = " class=winner" if e.model_id == winner else (
            " class=popular" if e.model_id == popular else "")  # fmt: skip
        acc = f"{e.accuracy:.3f}" if e.items_seen else "-"
        interval = f"[{e.lower:.3f}, {e.upper:.3f}]" if e.items_seen else "-"
        out = f"round {e.eliminated_in_round}" if e.eliminated_in_round else "survived"
        rows.append(
            f"<tr{cls}><td>{e.rank}</td><td class=id>{escape(e.model_id)}</td><td>{acc}</td>"
            f"<td>{interval}</td><td>{e.items_seen:,}</td><td>{_downloads(e)}</td>"
            f"<td>{out}</td></tr>"
        )
    more = len(result.ranking) - TOP_ROWS
    tail = f'<p class="note">{more:,} more candidates not listed.</p>' if more > 0 else ""
    return (
        f"<h2>Ranking (top {min(TOP_ROWS, len(result.ranking))})</h2><table><tr><th>rank</th>"
        "<th class=id>model</th><th>accuracy</th><th>95% interval</th><th>items</th>"
        f"<th>downloads</th><th>eliminated</th></tr>{''.join(rows)}</table>{tail}"
    )


def _cost_source(cost: Cost) -> str:
    """How the serving figures were had: configured, or query time measured at some endpoints."""
    measured = sum(1 for e in cost.endpoints if e.query_s_measured)
    if not measured:
        return "accounted from each endpoint's cost model, not measured"
    return (
        f"loads from each endpoint's cost model; query time measured from the responses at "
        f"{measured:,} of {len(cost.endpoints):,} endpoints"
    )


def _cap(cost: Cost) -> str:
    if cost.gpu_seconds_cap is None:
        return ""
    if cost.stopped_by_cap:
        return (
            f" The search stopped on its cap of {cost.gpu_seconds_cap:,.1f} GPU-seconds: the "
            "ranking is the one reached then."
        )
    return f" Its cap of {cost.gpu_seconds_cap:,.1f} GPU-seconds was not reached."
