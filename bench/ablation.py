"""Ablation of the ideas for beating the reference method (issue 6, design/search.md).

    python bench/ablation.py [--seeds 3 4] [--budgets 5 10 25 50 100] [--trials 500]
        [--presets ...] [--no-real] [--markdown OUT]

Every idea is a variant of the reference method (gem search: correlated SH, first round spends
f = 0.2 of the budget on every model and keeps m = 100) written here in NumPy, so that ideas
that did not earn a place in the Rust core can still be measured. All variants run on the same
trials (common random numbers: trial t has one item order and one tie-break stream for every
variant). The NumPy reference is checked against the Rust core's gem on the same pools (its
mean rank is printed beside it). Pools are the synthetic presets at generator seeds held out
from every fit and choice (3, 4 by default) and the small real pools.

Prints, per pool and budget, the mean rank of every variant, then one summary row per variant:
geometric mean of its mean rank over the reference's across all cases, the worst such ratio,
and how many cases it is significantly better or worse in (95% interval of the paired
per-trial rank difference excludes 0), and its mean loss over the cases (accuracy points between
the returned model and the best) beside the reference's.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gemfinder.loss import trial_losses
from gemfinder.sim.simulation import simulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from held_out import add_pool_arguments, held_out_pools  # noqa: E402


@dataclass(frozen=True)
class Variant:
    """A correlated round-based search; the defaults are the reference method."""

    name: str
    idea: str
    first_round_share: float = 0.2
    first_cut: int = 100
    keep: float = 0.5  # share of survivors a halving round keeps
    growth: float = 1.0  # weight of round i+1 over round i (after the first cut)
    tie_cut: bool = False  # first cut keeps every model tied with the m-th
    early_z: float | None = None  # paired early elimination threshold (McNemar z)
    endgame: int = 0  # stop eliminating at this many survivors; spend the rest evenly
    probe_q: float | None = None  # disagreement-focused items: sampling prob. when probes agree


VARIANTS = [
    Variant("reference", "gem f=0.2, m=100 (published m; f that fits the published ranks)"),
    Variant("old default", "gem as the default was before issue 16: m=200", first_cut=200),
    Variant("no cut", "plain correlated SH (m = K)", first_cut=1 << 30),
    Variant("tie cut", "m from the data: keep all tied with the m-th", tie_cut=True),
    Variant("paired z=2", "paired early elimination, McNemar z > 2 vs leader", early_z=2.0),
    Variant("paired z=3", "paired early elimination, McNemar z > 3 vs leader", early_z=3.0),
    Variant("probes q=.35", "items where survivors disagree (2 probes, IS weights)", probe_q=0.35),
    Variant("probes q=.6", "items where survivors disagree (2 probes, IS weights)", probe_q=0.6),
    Variant("endgame 4", "last 4 share the rest of the budget evenly", endgame=4),
    Variant("keep 1/3", "round shape: keep a third per round", keep=1 / 3),
    Variant("keep 2/3", "round shape: keep two thirds per round", keep=2 / 3),
    Variant("later x1.5", "round shape: each round 1.5x the budget of the one before", growth=1.5),
    Variant("later x0.7", "round shape: each round 0.7x the budget of the one before", growth=0.7),
]


def halving_steps(alive: int, keep: float) -> list[int]:
    """Survivors after each halving round from `alive` down to 1."""
    steps = []
    while alive > 1:
        alive = max(1, min(alive - 1, math.ceil(alive * keep)))
        steps.append(alive)
    return steps


def ranked(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions of `scores` best first, ties in random order."""
    return np.lexsort((rng.random(len(scores)), -scores))


def paired_survivors(correct, alive, items, z: float) -> np.ndarray:
    """Drop every survivor the leader (alive[0]) beats on their shared items with McNemar
    z > `z`; keeps the order of `alive`."""
    answers = correct[np.ix_(alive, items)].astype(np.int8)
    lead = answers[0]
    b = ((lead == 1) & (answers == 0)).sum(1)
    c = ((lead == 0) & (answers == 1)).sum(1)
    stat = (b - c) / np.sqrt(np.maximum(b + c, 1))
    return alive[stat <= z]


def search(v: Variant, correct: np.ndarray, budget: int, perm, rng) -> int:
    """One trial of variant `v`; returns the recommended model."""
    k, n = correct.shape
    alive = np.arange(k)
    score = np.zeros(k)  # estimated number of correct answers over the items seen (sum)
    pos, remaining, first = 0, budget, True
    while len(alive) > 1 and pos < n and remaining >= len(alive):
        a = len(alive)
        cut = first and a > v.first_cut
        if v.endgame and a <= v.endgame:
            share, target = remaining, 1
        elif cut:
            share, target = int(remaining * v.first_round_share), v.first_cut
        else:
            steps = halving_steps(a, v.keep)
            weights = [v.growth**i for i in range(len(steps))]
            share = remaining if len(steps) == 1 else int(remaining * weights[0] / sum(weights))
            target = steps[0]
        # Reserve one item per survivor of every later round, as the core's budget rule does.
        later = halving_steps(target, v.keep)
        reserve = (target if target > 1 else 0) + sum(later[:-1])
        share = max(a, min(share, remaining - reserve))
        if v.probe_q is not None and not first and a > 2:
            spent, used = probed_round(v.probe_q, correct, alive, perm[pos:], share, score, rng)
        else:
            t = min(share // a, n - pos)
            used = t
            score[alive] += correct[np.ix_(alive, perm[pos : pos + t])].sum(1, dtype=np.int64)
            spent = t * a
        pos += used
        remaining -= spent
        alive = alive[ranked(score[alive], rng)]
        if cut and v.tie_cut:
            alive = alive[score[alive] >= score[alive[target - 1]]]
        else:
            alive = alive[:target]
        if v.early_z is not None and len(alive) > 1:
            alive = paired_survivors(correct, alive, perm[:pos], v.early_z)
        first = False
    return int(alive[ranked(score[alive], rng)[0]])


def probed_round(q, correct, alive, fresh, share, score, rng) -> tuple[int, int]:
    """A round that spends queries where survivors disagree. Each fresh item goes first to the
    two current leaders (probes); the other survivors answer it when the probes disagree, or
    with probability q when they agree, their deviation from the probes' common answer then
    weighted 1/q, so every survivor's score stays an unbiased estimate of its correct count."""
    probes, others = alive[:2], alive[2:]
    m = min(len(fresh), share)
    items = fresh[:m]
    probe_answers = correct[np.ix_(probes, items)]
    agree = probe_answers[0] == probe_answers[1]
    asked = ~agree | (rng.random(m) < q)
    cost = np.cumsum(2 + len(others) * asked)
    used = max(1, int(np.searchsorted(cost, share, side="right")))
    items, agree, asked = items[:used], agree[:used], asked[:used]
    common = probe_answers[0, :used].astype(float)
    answers = correct[np.ix_(others, items)].astype(float)
    weight = np.where(agree, 1.0 / q, 1.0)
    estimate = np.where(asked, common + (answers - common) * weight, common)
    score[probes] += probe_answers[:, :used].sum(1)
    score[others] += estimate.sum(1)
    return int(cost[used - 1]), used


def true_ranks(acc: np.ndarray) -> np.ndarray:
    """Rank 1 = best; average rank for ties."""
    order = np.sort(acc)
    above = len(acc) - np.searchsorted(order, acc, side="right")
    ties = np.searchsorted(order, acc, side="right") - np.searchsorted(order, acc, side="left")
    return 1 + above + (ties - 1) / 2


def run_case(correct, n_avg, trials, seed) -> dict[str, np.ndarray]:
    """Per-trial true rank of every variant's pick, on common random numbers."""
    ranks = true_ranks(correct.mean(1))
    return {name: ranks[picks] for name, picks in run_picks(correct, n_avg, trials, seed).items()}


def run_picks(correct, n_avg, trials, seed) -> dict[str, np.ndarray]:
    """Per-trial pick (model row) of every variant, on common random numbers."""
    k, n = correct.shape
    budget = int(round(n_avg * k))
    out = {v.name: np.empty(trials, dtype=np.int64) for v in VARIANTS}
    for t in range(trials):
        trial_rng = np.random.default_rng([seed, t])
        perm = trial_rng.permutation(n)
        tie_seed = int(trial_rng.integers(1 << 62))
        for v in VARIANTS:
            pick = search(v, correct, budget, perm, np.random.default_rng(tie_seed))
            out[v.name][t] = pick
    return out


def summary(cases: list[dict[str, np.ndarray]]) -> list[tuple[str, float, float, int, int]]:
    rows = []
    for v in VARIANTS:
        ratios, better, worse = [], 0, 0
        for case in cases:
            ref, got = case["reference"], case[v.name]
            ratios.append(got.mean() / ref.mean())
            diff = got - ref
            half = 1.96 * diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else 0.0
            better += diff.mean() + half < 0
            worse += diff.mean() - half > 0
        geo = float(np.exp(np.mean(np.log(ratios))))
        rows.append((v.name, geo, max(ratios), better, worse))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_pool_arguments(parser)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--no-real", action="store_true", help="skip the small real pools")
    parser.add_argument("--markdown", type=Path, help="also write the summary table here")
    args = parser.parse_args()

    pools = held_out_pools(args, real=not args.no_real)
    names = [v.name for v in VARIANTS]
    print(f"mean rank, {args.trials} paired trials; rust = the core's gem f=0.2 m=100")
    print(f"{'pool':<18}{'N':>5} {'rust':>7} " + " ".join(f"{n[:12]:>12}" for n in names))
    cases, losses, start = [], {n: [] for n in names}, time.time()
    for label, _, matrix in pools:
        acc = matrix.accuracies()
        ranks = true_ranks(acc)
        for n_avg in args.budgets:
            picks = run_picks(matrix.correct, n_avg, args.trials, seed=0)
            case = {name: ranks[p] for name, p in picks.items()}
            for name, p in picks.items():
                losses[name].append(trial_losses(acc, p).mean())
            rust = simulate(matrix, "gem", n_avg, args.trials, 0, {"first_cut": 100.0})
            cases.append(case)
            cells = " ".join(f"{case[n].mean():12.2f}" for n in names)
            print(f"{label:<18}{n_avg:>5g} {rust['mean_rank']:7.2f} {cells}", flush=True)
    print(f"\n{len(cases)} cases in {time.time() - start:.0f} s")
    lines = [
        "| variant | idea | mean rank / reference (geo. mean) | worst case | better | worse "
        "| loss, points (mean over cases) |",
        "|---|---|---|---|---|---|---|",
    ]
    ideas = {v.name: v.idea for v in VARIANTS}
    for name, geo, worst, better, worse in summary(cases):
        loss = float(np.mean(losses[name]))
        lines.append(
            f"| {name} | {ideas[name]} | {geo:.3f} | {worst:.2f} | {better} | {worse} "
            f"| {loss:.3f} |"
        )
    print("\n".join(lines))
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
