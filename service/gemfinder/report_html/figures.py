"""The report's figures, drawn by matplotlib and returned as inline SVG text.

The paper's picture: each candidate's estimated accuracy with its 95% interval against its
downloads on a log axis (symlog, so that 0 downloads has a place), coloured by the round it was
eliminated in, the winner and the most downloaded model marked and labelled. Candidates whose
downloads are unknown get their own lane at the left, sharing the accuracy axis. The same panel
is drawn once per task for mixed query sets, and the queries spent per round as bars.

Text is drawn as paths (matplotlib's default), so the SVG needs no font and no fetch. Labels are
drawn with parse_math=False: a model id with `$` in it is text, not mathtext (which would fail
on, or typeset, whatever sits between two dollar signs). matplotlib escapes the text it copies
into SVG comments; page.py still checks the SVG holds no element it does not expect.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from gemfinder.report_html.rounds import Round  # noqa: E402
from gemfinder.search.values import Estimate  # noqa: E402

WINNER = "#d62728"
POPULAR = "#1f77b4"
SURVIVOR = "#2ca02c"
LABEL_CHARS = 40  # longer model ids are shortened in the plot (the tables keep them whole)
# No RDF block (creator URL, date): a report is the same bytes for the same search.
NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}
RC = {"svg.hashsalt": "gemfinder", "svg.fonttype": "path", "font.size": 9}


def short(model_id: str) -> str:
    if len(model_id) <= LABEL_CHARS:
        return model_id
    return model_id[: LABEL_CHARS - 1] + "…"


def _svg(fig: Figure) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata=NO_METADATA)
    plt.close(fig)
    text = out.getvalue()
    return text[text.index("<svg") :]  # no XML declaration or DOCTYPE inside HTML


def accuracy_panel(
    ax: Axes,
    lane: Axes,
    estimates: Sequence[Estimate],
    winner_id: str,
    popular_id: str | None,
    title: str,
) -> None:
    """One accuracy-versus-downloads panel on `ax`, with the unknown-downloads lane on `lane`."""
    seen = [e for e in estimates if e.items_seen]
    last = max((e.eliminated_in_round for e in seen), default=0)
    cmap = matplotlib.colormaps["viridis"]
    known = [e for e in seen if e.downloads is not None]
    # One errorbar call per (lane, round): a pool of thousands draws in about a second.
    groups: dict[tuple[bool, int], list[tuple[float, Estimate]]] = {}
    for e in seen:
        if e.model_id in (winner_id, popular_id):
            continue  # drawn last, on top
        x = _jitter(e.model_id) if e.downloads is None else e.downloads
        groups.setdefault((e.downloads is None, e.eliminated_in_round), []).append((x, e))
    for (in_lane, rnd), points in sorted(groups.items()):
        color = SURVIVOR if rnd == 0 else cmap(0.15 + 0.7 * (rnd - 1) / max(last - 1, 1))
        _points(lane if in_lane else ax, points, color, "o", 3.5, alpha=0.45)
    top = max((e.downloads or 0.0 for e in known), default=0.0)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(-0.3, max(top * 4, 10.0))  # 0 downloads just inside the frame, the top too
    marked = [(popular_id, POPULAR, "D", "most downloaded"), (winner_id, WINNER, "*", "winner")]
    for model_id, color, marker, role in marked:
        e = next((e for e in seen if e.model_id == model_id), None)
        if e is None:
            continue
        if e.downloads is None:
            axis, x, right = lane, _jitter(e.model_id), False
        else:  # in the right part of the axis the label goes to the left of its point
            axis, x = ax, e.downloads
            right = math.log10(1 + x) > 0.6 * math.log10(1 + ax.get_xlim()[1])
        _points(axis, [(x, e)], color, marker, 11 if marker == "*" else 7, alpha=1.0, label=role)
        axis.annotate(
            f"{role}: {short(e.model_id)}",
            (x, e.accuracy),
            xytext=(-8 if right else 8, 10 if role == "winner" else -14),
            textcoords="offset points",
            ha="right" if right else "left",
            color=color,
            fontweight="bold",
            parse_math=False,
            annotation_clip=False,
            zorder=10,
        )
    ax.set_facecolor("none")  # a label from the narrow lane may run on over this axis
    ax.set_xlabel("downloads (log scale; 0 at the left)")
    ax.set_title(title, loc="left", parse_math=False)
    ax.grid(alpha=0.3)
    lane.set_xlim(-1, 1)
    lane.set_xticks([0], ["unknown"])
    lane.set_ylabel("estimated accuracy (95% interval)")
    lane.grid(axis="y", alpha=0.3)
    lane.set_ylim(_ylim(seen))


def _points(
    axis: Axes, points: list[tuple[float, Estimate]], color, marker: str, size: float, **kw
) -> None:
    """Estimates at their x, with their intervals as vertical bars."""
    acc = [e.accuracy for _, e in points]
    below = [max(e.accuracy - e.lower, 0.0) for _, e in points]
    above = [max(e.upper - e.accuracy, 0.0) for _, e in points]
    axis.errorbar(
        [x for x, _ in points],
        acc,
        yerr=[below, above],
        fmt=marker,
        color=color,
        markersize=size,
        elinewidth=0.6,
        capsize=0,
        **kw,
    )


def _jitter(model_id: str) -> float:
    """A spread in the unknown lane that does not change between renders (no random state)."""
    return (sum(map(ord, model_id)) % 97) / 97 * 1.2 - 0.6


def _ylim(seen: Sequence[Estimate]) -> tuple[float, float]:
    if not seen:
        return 0.0, 1.0
    low = min(e.lower for e in seen)
    high = max(e.upper for e in seen)
    pad = max((high - low) * 0.08, 0.02)
    return max(low - pad, 0.0), min(high + pad, 1.0)


def _panel_axes(fig: Figure, spec) -> tuple[Axes, Axes]:
    inner = spec.subgridspec(1, 2, width_ratios=[1, 9], wspace=0.04)
    lane = fig.add_subplot(inner[0])
    ax = fig.add_subplot(inner[1], sharey=lane)
    ax.tick_params(labelleft=False)
    return ax, lane


def overview_svg(estimates: Sequence[Estimate], winner_id: str, popular_id: str | None) -> str:
    with plt.rc_context(RC):
        fig = plt.figure(figsize=(10, 5.2))
        ax, lane = _panel_axes(fig, fig.add_gridspec(1, 1)[0])
        accuracy_panel(ax, lane, estimates, winner_id, popular_id, "every candidate")
        _legend(ax, lane, estimates)
        return _svg(fig)


def _legend(ax: Axes, lane: Axes, estimates: Sequence[Estimate]) -> None:
    last = max((e.eliminated_in_round for e in estimates), default=0)
    if last:
        ax.text(
            0.99,
            0.02,
            f"colour: round eliminated (dark 1 ... light {last}); green: survived",
            transform=ax.transAxes,
            ha="right",
            fontsize=8,
            color="#555555",
        )
    handles, labels = ax.get_legend_handles_labels()
    more = lane.get_legend_handles_labels()  # the winner may sit in the unknown lane
    if labels or more[1]:
        ax.legend(handles + more[0], labels + more[1], loc="upper left", fontsize=8)


def task_panels_svg(
    per_task: Mapping[str, Sequence[Estimate]],
    winner_id: str,
    popular_id: str | None,
    weights: Mapping[str, float] | None = None,
) -> str:
    """One panel per task (a grid, two across), the overall winner and most downloaded marked
    in each."""
    tasks = list(per_task)
    cols = 2 if len(tasks) > 1 else 1
    rows = math.ceil(len(tasks) / cols)
    with plt.rc_context(RC):
        fig = plt.figure(figsize=(5.6 * cols, 3.9 * rows))
        grid = fig.add_gridspec(rows, cols, hspace=0.45, wspace=0.15)
        for k, task in enumerate(tasks):
            ax, lane = _panel_axes(fig, grid[k // cols, k % cols])
            weight = f" (weight {weights[task]:.3g})" if weights and task in weights else ""
            accuracy_panel(ax, lane, per_task[task], winner_id, popular_id, short(task) + weight)
        return _svg(fig)


def rounds_svg(rounds: Sequence[Round], gem_check: int) -> str:
    """Queries per round (and the gem check's), each bar labelled with its survivors."""
    labels = [f"round {r.label}" for r in rounds] + (["gem check"] if gem_check else [])
    values = [r.queries for r in rounds] + ([gem_check] if gem_check else [])
    colors = ["#4c72b0"] * len(rounds) + (["#dd8452"] if gem_check else [])
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(max(4.0, 0.75 * len(values) + 1.5), 3.0))
        bars = ax.bar(range(len(values)), values, color=colors)
        notes = [f"{r.survivors} models" for r in rounds] + ([""] if gem_check else [])
        ax.bar_label(bars, labels=notes, fontsize=7, padding=2)
        ax.set_xticks(range(len(values)), labels, rotation=30, ha="right")
        ax.set_ylabel("graded queries")
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
        return _svg(fig)
