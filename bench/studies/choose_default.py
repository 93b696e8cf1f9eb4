"""Choose the default search algorithm by evidence (issue 16), with paired tests and Holm.

    python -m bench.studies.choose_default [--trials 300] [--large 1000] [--markdown OUT] [--smoke]
        [--gem-variants] [--screened] [--select-only] [--margin POINTS] [--pools LABEL-PART ...]

Candidates: the classical set - gem as the service runs it (f = 0.2, first cut a fifth of the
pool and at least 200), gem with the published cut m = 100 (the reference), correlated SH
without a cut, and successive rejects. Pools, split so that the choice is not tuned to the
pools that confirm it:

- select: the four presets at native size, generator seeds 5 and 6, and resized to `--large`
  models, seed 5;
- confirm: the same presets at seeds 3 and 4, resized at seed 3, and the two real pools
  (opencompass-12, routerdc-mistral7; read in place from ../shared/data/matrices).

Every (pool, N) cell, N in {5, 10, 25, 50, 100} queries per model, runs every candidate on the
same `--trials` trials: trial t draws the same item permutation and tie-break stream for every
algorithm (the simulator's common random numbers), so per-trial losses are paired. The test:
for each cell, candidate and competitor, a one-sided paired z-test of the per-trial loss
difference, H0 "not worse than that competitor"; p-values are Holm-corrected over all (cell,
competitor) pairs of a set, per candidate, and a cell is "significantly worse" when some pair
of it has a corrected p below 0.05. (The first study tested only against the cell's best by
mean loss, chosen after the fact, with Holm over the cells: that leaves the choice among three
competitors uncorrected; it is printed beside for comparison, `pairwise_worse` says why.)
The default is the candidate with the fewest significantly worse cells on the select pools
and, among those, the lowest mean excess loss over the cell's best (points); the confirm pools
then show whether it holds. The oracle row (the true top k = min(20, max(2, K // 4)) models
handed over free with the whole budget, best of uniform / correlated SH / SR in that cell)
shows how far any search rule is from what it could reach; it is not a candidate.

Non-inferiority margins, for the product owner's call when no candidate passes: per set and
candidate, the smallest margin delta (points) at which the same test, shifted to H0 "worse by
at most delta", flags no cell (*tolerated*), and the smallest delta at which the reverse test
shows the candidate within delta of every competitor in every cell (*proven*); `--margin`
also lists the cells significantly worse by more than that margin.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np
from gemfinder import _core
from gemfinder.loss import HALF_POINT, cost_to_confidence, trial_losses
from gemfinder.sim.trees import PRESETS, generate

from bench.common.real_pools import REAL_MATRICES, load_real_pools

CANDIDATES = {
    "gem": ("gem", None),
    "gem m=100": ("gem", {"first_cut": 100.0}),
    "sh_correlated": ("sh_correlated", None),
    "sr": ("sr", None),
}
# `--gem-variants`: gem with a first cut that is a share of the pool (`cut_share` x K models,
# resolved per pool) and a larger first-round share than plain SH gives round 1 (1/ceil(log2 K),
# 0.1 at 1,000 models): more evidence before the first cut, or a deeper cut, the gem variants
# issue 16 names. Measured on the select pools only (docs/results.md).
GEM_VARIANTS = {
    "gem f=0.15 m=K/2": ("gem", {"first_round_share": 0.15, "cut_share": 0.5}),
    "gem f=0.2 m=K/2": ("gem", {"first_round_share": 0.2, "cut_share": 0.5}),
    "gem f=0.2 m=K/4": ("gem", {"first_round_share": 0.2, "cut_share": 0.25}),
    "gem f=0.3 m=K/4": ("gem", {"first_round_share": 0.3, "cut_share": 0.25}),
}
# `--screened`: the gem variants that passed bench/studies/screen_gem_grid.py (a grid of 42
# first-round shares x first cuts on the cells where every candidate above fails) and so go
# through the full study, select and confirm pools.
SCREENED = {"gem f=0.15 m=K/3": ("gem", {"first_round_share": 0.15, "cut_share": 1 / 3})}
ORACLE = "oracle top-k"
ORACLE_ALGORITHMS = ("uniform", "sh_correlated", "sr")
BUDGETS = (5.0, 10.0, 25.0, 50.0, 100.0)
ALPHA = 0.05
EPS = 1e-9


def pools(args) -> list[tuple[str, str, int, object]]:
    """(set, label, seed, matrix) for every pool; real pools use simulator seed 0."""
    out = []
    for group, seeds, large_seeds in (
        ("select", args.select_seeds, args.select_large_seeds),
        ("confirm", args.confirm_seeds, args.confirm_large_seeds),
    ):
        for preset in args.presets:
            out += [(group, f"{preset}/s{s}", s, generate(preset, s).matrix) for s in seeds]
            if args.large:
                for s in large_seeds:
                    matrix = generate(preset, s, models=args.large).matrix
                    out.append((group, f"{preset}@{args.large}/s{s}", s, matrix))
    if args.real:
        out += [("confirm", name, 0, m) for name, m in load_real_pools(REAL_MATRICES).items()]
    if args.pools:  # exploration: only the pools whose label contains one of these
        out = [p for p in out if any(part in p[1] for part in args.pools)]
    return out


def run(correct, rows, name, params, budget, seed, trials) -> np.ndarray:
    """Per-trial picks of one algorithm on `correct`, as rows of the whole pool (`rows`)."""
    picks, _ = _core.simulate_trials(correct, name, budget, seed, 0, trials, params)
    return rows[picks].astype(np.uint32)


def resolve(params: dict | None, n_models: int) -> dict | None:
    """The core's parameters: a `cut_share` of the pool becomes a first cut in models."""
    if params is None or "cut_share" not in params:
        return params
    out = {k: v for k, v in params.items() if k != "cut_share"}
    out["first_cut"] = float(max(1, round(params["cut_share"] * n_models)))
    return out


def cell(
    matrix, seed: int, n_avg: float, trials: int, candidates: dict = CANDIDATES
) -> dict[str, np.ndarray]:
    """{method: per-trial picks (rows of the whole pool)} for the candidates and the oracle."""
    correct, acc = matrix.correct, matrix.accuracies()
    budget = int(round(n_avg * matrix.n_models))  # as gemfinder simulate rounds it
    everyone = np.arange(matrix.n_models)
    out = {
        label: run(correct, everyone, name, resolve(params, matrix.n_models), budget, seed, trials)
        for label, (name, params) in candidates.items()
    }
    top = min(20, max(2, matrix.n_models // 4))
    order = np.argsort(-acc, kind="stable")[:top]
    sub = np.ascontiguousarray(correct[order])
    best_loss, budget = math.inf, min(budget, sub.size)  # the whole budget, capped at all cells
    for name in ORACLE_ALGORITHMS:
        picks = run(sub, order, name, None, budget, seed, trials)
        loss = trial_losses(acc, picks).mean()
        if loss < best_loss:
            best_loss, out[ORACLE] = loss, picks
    return out


def figures(acc: np.ndarray, picks: np.ndarray) -> dict:
    losses = trial_losses(acc, picks)
    ranks = _core.summarize(acc, picks, np.zeros(len(picks), np.uint64))
    return {
        "losses": losses,
        "loss_mean": float(losses.mean()),
        "loss_p90": float(np.quantile(losses, 0.9)),
        "p_half": float((losses <= HALF_POINT + EPS).mean()),
        "p_best": float((losses <= EPS).mean()),
        "mean_rank": ranks["mean_rank"],
    }


def p_worse(diff: np.ndarray) -> float:
    """One-sided paired z-test, H0: mean difference <= 0 (with >= 100 trials the normal
    approximation of the t statistic is accurate to well within the Holm threshold)."""
    mean, sd = diff.mean(), diff.std(ddof=1)
    if sd == 0:
        return 0.0 if mean > EPS else 1.0
    z = mean / (sd / math.sqrt(len(diff)))
    return 0.5 * math.erfc(z / math.sqrt(2))


def holm(pvalues: list[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order."""
    order = sorted(range(len(pvalues)), key=pvalues.__getitem__)
    adjusted, running = [0.0] * len(pvalues), 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - i) * pvalues[j]))
        adjusted[j] = running
    return adjusted


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def tables(results: dict, methods: list[str]) -> list[str]:
    """Markdown: loss mean (p90), P(<=0.5 pt) / P(best), mean rank per cell; cost to
    confidence per pool."""
    head = "| pool | N | " + " | ".join(methods) + " |"
    rule = "|---|---|" + "---|" * len(methods)
    out = []
    for title, cell_text in (
        (
            "loss, points: mean (90th percentile)",
            lambda f: f"{f['loss_mean']:.2f} ({f['loss_p90']:.2f})",
        ),
        ("P(loss <= 0.5 pt) / P(best)", lambda f: f"{f['p_half']:.3f} / {f['p_best']:.3f}"),
        ("mean rank", lambda f: f"{f['mean_rank']:.2f}"),
    ):
        out += ["", f"**{title}**", "", head, rule]
        for (label, n_avg), row in results.items():
            cells = " | ".join(cell_text(row[m]) for m in methods)
            out.append(f"| {label} | {n_avg:g} | {cells} |")
    out += [
        "",
        "**cost to confidence** (N per model for P(loss <= 0.5 pt) >= 0.9; "
        "interpolated between grid points, `-` not reached by N = 100)",
        "",
        "| pool | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for label in dict.fromkeys(lab for lab, _ in results):
        cells = []
        for m in methods:
            grid = [(n, row[m]["p_half"]) for (lab, n), row in results.items() if lab == label]
            cells.append(fmt(cost_to_confidence(*zip(*grid, strict=True)), ".3g"))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def names(row: dict) -> list[str]:
    """The candidates of a cell's results (every method but the oracle row)."""
    return [m for m in row if m != ORACLE]


def pairs_of(results: dict, keys: list, m: str) -> list[tuple[tuple, str, np.ndarray]]:
    """(cell, competitor, per-trial loss difference m - competitor) for every pair of a set."""
    out = []
    for k in keys:
        row = results[k]
        out += [(k, c, row[m]["losses"] - row[c]["losses"]) for c in names(row) if c != m]
    return out


def pairwise_worse(results: dict, keys: list, m: str, delta: float = 0.0) -> dict:
    """Cells where `m` is significantly worse than some other candidate by more than `delta`
    points (0: worse at all): one one-sided paired test per (cell, competitor), H0 "m's mean
    loss exceeds c's by at most delta", Holm over all of them. {cell: [(competitor, mean
    excess, adjusted p), ...]} for the rejected pairs.

    "Worse than the cell's best" is the hypothesis H0: mean(m) <= mean(c) for every competitor
    c, an intersection of per-competitor hypotheses, so the family that Holm must control is the
    (cell, competitor) pairs. Testing only against the competitor that looks best after the
    fact picks one of three comparisons by the data and leaves the choice uncorrected."""
    pairs = pairs_of(results, keys, m)
    out: dict = {}
    adjusted = holm([p_worse(diff - delta) for _, _, diff in pairs])
    for (k, c, diff), p in zip(pairs, adjusted, strict=True):
        if p < ALPHA:
            out.setdefault(k, []).append((c, float(diff.mean()), p))
    return {k: out[k] for k in keys if k in out}


def tolerated_margin(results: dict, keys: list, m: str) -> tuple[float, tuple | None]:
    """The smallest margin delta >= 0 (points) at which `pairwise_worse(..., delta)` flags no
    cell, and the (cell, competitor) pair that sets it (None when delta is 0).

    Holm rejects nothing exactly when its smallest raw p-value times the number of pairs n is
    at least alpha, and a pair's p-value at delta is Q((mean - delta) / se): so delta is the
    largest of mean - z se over the pairs, z the normal quantile of 1 - alpha / n (a pair whose
    difference does not vary is flagged while its mean exceeds delta)."""
    pairs = pairs_of(results, keys, m)
    if not pairs:
        return 0.0, None
    z = NormalDist().inv_cdf(1 - ALPHA / len(pairs))
    best, at = 0.0, None
    for k, c, diff in pairs:
        sd = diff.std(ddof=1)
        bound = diff.mean() - (z * sd / math.sqrt(len(diff)) if sd > 0 else 0.0)
        if bound > best:
            best, at = float(bound), (k, c)
    return best, at


def within_p(results: dict, keys: list, m: str, delta: float) -> list[tuple[tuple, str, float]]:
    """(cell, competitor, Holm-adjusted p) of the non-inferiority test at `delta`: H0 "m's
    mean loss exceeds c's by delta or more", one-sided paired, per (cell, competitor) pair."""
    pairs = pairs_of(results, keys, m)
    adjusted = holm([p_worse(delta - diff) for _, _, diff in pairs])
    return [(k, c, p) for (k, c, _), p in zip(pairs, adjusted, strict=True)]


def shown_within(results: dict, keys: list, m: str, delta: float) -> bool:
    """Whether `m` is shown within `delta` of every competitor in every cell: the
    non-inferiority test rejected for every pair after Holm."""
    return all(p < ALPHA for _, _, p in within_p(results, keys, m, delta))


def proven_margin(
    results: dict, keys: list, m: str, tol: float = 1e-4
) -> tuple[float, tuple | None]:
    """The smallest delta (points, to `tol`) at which `shown_within` holds - the margin the
    data certify, at familywise level alpha, in every cell at once - and the (cell, competitor)
    pair that sets it (the last one shown, just below). Bisection: the test's p-values fall as
    delta grows, and so do Holm's."""
    pairs = pairs_of(results, keys, m)
    if not pairs:
        return 0.0, None
    lo = max([0.0] + [float(d.mean()) for _, _, d in pairs])  # no pair is shown within its mean
    hi = max(lo, 1.0)
    while not shown_within(results, keys, m, hi):
        hi *= 2
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if shown_within(results, keys, m, mid) else (mid, hi)
    k, c, _ = max(within_p(results, keys, m, lo), key=lambda x: x[2])
    return hi, (k, c)


def best_only_worse(results: dict, keys: list, m: str) -> list:
    """The test of the first study (kept for comparison): against the cell's best candidate by
    mean loss, chosen after the fact, Holm over the cells only."""
    raw = []
    for k in keys:
        row = results[k]
        best = min(names(row), key=lambda c: row[c]["loss_mean"])
        raw.append(p_worse(row[m]["losses"] - row[best]["losses"]))
    return [k for k, p in zip(keys, holm(raw), strict=True) if p < ALPHA]


def verdicts(results: dict, group_of: dict[str, str]) -> dict:
    """Per (set, candidate): significantly worse cells (the pairwise test, and the first
    study's test for comparison) and the mean excess loss over each cell's best."""
    out = {}
    for group in ("select", "confirm"):
        keys = [k for k in results if group_of[k[0]] == group]
        if not keys:
            continue
        methods = names(results[keys[0]])
        for m in methods:
            excess = [
                results[k][m]["loss_mean"] - min(results[k][c]["loss_mean"] for c in methods)
                for k in keys
            ]
            rank_ratio = np.exp(
                np.mean(
                    [
                        math.log(results[k][m]["mean_rank"] / results[k]["gem"]["mean_rank"])
                        for k in keys
                    ]
                )
            )
            worse = pairwise_worse(results, keys, m)
            out[(group, m)] = {
                "cells": len(keys),
                "worse": list(worse),
                "against": worse,
                "worse_best_only": best_only_worse(results, keys, m),
                "excess": float(np.mean(excess)),
                "rank_vs_gem": float(rank_ratio),
                "best_in": sum(
                    min(methods, key=lambda c: results[k][c]["loss_mean"]) == m for k in keys
                ),
            }
    return out


def cells_text(cells) -> str:
    return ", ".join(f"{lab} N={n:g}" for lab, n in cells) or "none"


def verdict_lines(verdict: dict, chosen: str | None, trials: int) -> list[str]:
    """Markdown: the verdict table and, for the chosen candidate, each significantly worse
    cell with the competitors that beat it, the loss gap and the adjusted p."""
    lines = [
        "",
        f"**paired tests** ({trials} trials per cell; one-sided paired z-test of the per-trial "
        "loss against each other candidate, Holm over the (cell, competitor) pairs of a set, "
        "alpha 0.05; the first study's test, against the cell's best candidate only with Holm "
        "over the cells, beside it)",
        "",
        "| set | candidate | cells | best in | significantly worse (Holm over cells x "
        "competitors) | first study's test | mean excess loss, points | "
        "mean rank / gem's (geo. mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (group, m), v in verdict.items():
        lines.append(
            f"| {group} | {m} | {v['cells']} | {v['best_in']} | {len(v['worse'])}: "
            f"{cells_text(v['worse'])} | {len(v['worse_best_only'])}: "
            f"{cells_text(v['worse_best_only'])} | {v['excess']:.3f} | "
            f"{v['rank_vs_gem']:.3f} |"
        )
    lines += ["", f"chosen on the select pools: **{chosen or 'none (no select pools)'}**"]
    for group in ("select", "confirm"):
        if (group, chosen) not in verdict:
            continue
        v = verdict[(group, chosen)]
        lines.append(
            f"{group} pools: significantly worse than another candidate in "
            f"{len(v['worse'])} of {v['cells']} cells" + ("" if v["worse"] else " (none)")
        )
        for (lab, n), against in v["against"].items():
            beaten = "; ".join(
                f"{c} by {gap:.3f} points (adjusted p {p:.1e})" for c, gap, p in against
            )
            lines.append(f"- {lab} N={n:g}: {beaten}")
    return lines


def pair_text(pair: tuple | None) -> str:
    return "-" if pair is None else f"{pair[1]} on {pair[0][0]} N={pair[0][1]:g}"


def margin_lines(results: dict, group_of: dict[str, str], margin: float | None) -> list[str]:
    """Markdown: per (set, candidate), the non-inferiority margins - the smallest delta at which
    no cell is significantly worse by more than delta (the acceptance's test, shifted by delta)
    and the smallest delta the data prove in every cell - and, with `--margin`, the cells
    significantly worse by more than that margin."""
    lines = [
        "",
        '**non-inferiority margins** (points; the pairwise test shifted by delta: H0 "the '
        "candidate's mean loss exceeds the competitor's by at most delta\", one-sided paired, "
        "Holm over the (cell, competitor) pairs of a set, alpha 0.05. *tolerated*: the smallest "
        "delta at which no cell is significantly worse by more than delta; *proven*: the "
        'smallest delta at which the reverse test, H0 "exceeds by delta or more", is '
        "rejected for every pair, i.e. the candidate is shown within delta of every competitor "
        "in every cell at once)",
        "",
        "| set | candidate | tolerated delta | set by | proven delta | set by |"
        + (f" significantly worse by more than {margin:g} |" if margin is not None else ""),
        "|---|---|---|---|---|---|" + ("---|" if margin is not None else ""),
    ]
    for group in ("select", "confirm"):
        keys = [k for k in results if group_of[k[0]] == group]
        for m in names(results[keys[0]]) if keys else []:
            delta, at = tolerated_margin(results, keys, m)
            proven, proven_at = proven_margin(results, keys, m)
            row = (
                f"| {group} | {m} | {delta:.3f} | {pair_text(at)} | {proven:.3f} | "
                f"{pair_text(proven_at)} |"
            )
            if margin is not None:
                worse = pairwise_worse(results, keys, m, margin)
                row += f" {len(worse)}: {cells_text(worse)} |"
            lines.append(row)
    return lines


def size_class(label: str) -> str:
    """The pool-size class of a pool label: resized ("@1000"), native preset, or real."""
    if "@" in label:
        return "@" + label.split("@")[1].split("/")[0]
    return "native" if "/s" in label else "real"


def rule_lines(verdict: dict, results: dict) -> list[str]:
    """Markdown: per (pool-size class, N), the candidates with no significantly worse cell there
    on either set. A rule by pool size and budget can pass only if no entry is empty."""
    methods = list(dict.fromkeys(m for _, m in verdict))
    bad = {m: {k for (_, c), v in verdict.items() if c == m for k in v["worse"]} for m in methods}
    groups: dict = {}
    for lab, n in results:
        groups.setdefault((size_class(lab), n), []).append((lab, n))
    lines = [
        "",
        "**a rule by pool size and N?** candidates with no significantly worse cell in the "
        "group (either set)",
        "",
        "| pools | N | cells | candidates never significantly worse there |",
        "|---|---|---|---|",
    ]
    for (size, n), cells in groups.items():
        fine = [m for m in methods if not bad[m] & set(cells)]
        lines.append(f"| {size} | {n:g} | {len(cells)} | {', '.join(fine) or '**none**'} |")
    return lines


def choose(verdict: dict) -> str | None:
    """Fewest significantly worse select cells, then the lowest mean excess loss (None when
    the run has no select pools, e.g. `--pools` kept only confirm pools)."""
    select = [m for group, m in verdict if group == "select"]
    if not select:
        return None
    return min(
        select,
        key=lambda m: (len(verdict[("select", m)]["worse"]), verdict[("select", m)]["excess"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=[p for p in PRESETS if p != "gsm8k"])
    parser.add_argument("--select-seeds", nargs="+", type=int, default=[5, 6])
    parser.add_argument("--confirm-seeds", nargs="+", type=int, default=[3, 4])
    parser.add_argument("--select-large-seeds", nargs="+", type=int, default=[5])
    parser.add_argument("--confirm-large-seeds", nargs="+", type=int, default=[3])
    parser.add_argument("--large", type=int, default=1000, help="resized pools (0: none)")
    parser.add_argument("--budgets", nargs="+", type=float, default=list(BUDGETS))
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--no-real", dest="real", action="store_false")
    parser.add_argument(
        "--pools", nargs="+", help="only pools whose label contains one of these (exploring)"
    )
    parser.add_argument(
        "--gem-variants", action="store_true", help="add the gem variants to the candidates"
    )
    parser.add_argument(
        "--screened", action="store_true", help="add the variants that passed screen_gem_grid"
    )
    parser.add_argument(
        "--select-only", action="store_true", help="only the select pools (no confirm pools)"
    )
    parser.add_argument(
        "--margin",
        type=float,
        help="also list, per candidate, the cells significantly worse by more than this many "
        "points (the margins themselves are always printed)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument("--smoke", action="store_true", help="a tiny run for the doc tests")
    args = parser.parse_args()
    if args.smoke:
        args.presets, args.select_seeds, args.confirm_seeds = ["mistral-7b"], [5], [3]
        args.large, args.budgets, args.trials = 0, [5.0, 50.0], 40
    candidates = CANDIDATES | (GEM_VARIANTS if args.gem_variants else {})
    candidates |= SCREENED if args.screened else {}
    started = time.monotonic()
    results, group_of = {}, {}
    for group, label, seed, matrix in pools(args):
        if args.select_only and group != "select":
            continue
        acc = matrix.accuracies()
        group_of[label] = group
        for n_avg in args.budgets:
            picks = cell(matrix, seed, n_avg, args.trials, candidates)
            results[(label, n_avg)] = {m: figures(acc, p) for m, p in picks.items()}
        print(
            f"{group:<8}{label:<26}{matrix.n_models:>6} models  "
            f"{time.monotonic() - started:6.0f} s",
            file=sys.stderr,
            flush=True,
        )
    methods = [*candidates, ORACLE]
    lines = tables(results, methods)
    verdict = verdicts(results, group_of)
    chosen = choose(verdict)
    lines += verdict_lines(verdict, chosen, args.trials)
    lines += rule_lines(verdict, results)
    lines += margin_lines(results, group_of, args.margin)
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
