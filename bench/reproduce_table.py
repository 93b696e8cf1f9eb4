"""Reproduce the published results table (design/search.md) on the synthetic model trees.

    python bench/reproduce_table.py [--presets ...] [--algorithms ...] [--budgets 10 50]
        [--trials 1000] [--slow-trials 1000] [--seed 0] [--json OUT] [--markdown OUT]
    python bench/reproduce_table.py --real      # the small real pools, no published numbers

Each preset's pool is gemfinder.sim.trees.generate(preset, seed). Every algorithm runs on the same
trials (common random numbers: trial t has one item order for all algorithms), through
gemfinder.sim.simulation.simulate. Rows give mean rank and mean accuracy of the returned model with
95% intervals beside the published numbers (bench/published_table.py), the loss (accuracy
points below the best; mean and 90th percentile), P(best) and P(within 0.5
points). Slow sequential algorithms (TTTS, UCB, UCB-E) can be limited to the first
`--slow-trials` of the same trials (default: all 1,000, about 7 minutes on 2 cores); the output
says so per row when the limit applies.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.sim.simulation import algorithm_name, simulate
from gemfinder.sim.trees import generate
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from published_table import PRESETS, REFERENCE_PARAMS, REPETITIONS, published  # noqa: E402
from real_pools import REAL_MATRICES, load_real_pools  # noqa: E402

ALGORITHMS = (
    "random",
    "best_base",
    "uniform",
    "sh",
    "ttts",
    "sr",
    "bayes_elim",
    "ucb_e",
    "reference",
    "default",
    "sh_correlated",
)
SLOW = frozenset({"ttts", "ucb", "ucb_e"})  # sequential: one decision per pull, cost ~ B x K
NO_QUERIES = frozenset({"random", "best_base"})  # the budget does not matter: run them once


def plan_algorithms(requested: Sequence[str], matrix: CorrectnessMatrix) -> list[str]:
    """The requested names minus duplicates (`default` when its algorithm is named too) and
    impossible rows."""
    out: list[str] = []
    seen: set[str] = set()
    for name in requested:
        resolved, params = resolve(name)
        key = f"{resolved} {params}"
        if key in seen or (resolved == "best_base" and matrix.downloads is None):
            continue
        seen.add(key)
        out.append(name)
    return out


def resolve(name: str) -> tuple[str, dict[str, float] | None]:
    """`reference` is gem with the reference method's parameters; other names as the CLI's."""
    if name == "reference":
        return "gem", REFERENCE_PARAMS
    return algorithm_name(name), None


def trials_for(algorithm: str, trials: int, slow_trials: int) -> int:
    """The documented rule: slow sequential algorithms get the first `slow_trials` trials."""
    return min(trials, slow_trials) if resolve(algorithm)[0] in SLOW else trials


def run_table(
    pools: dict[str, CorrectnessMatrix],
    algorithms: Sequence[str],
    budgets: Sequence[float],
    trials: int,
    slow_trials: int,
    seed: int,
    on_progress: Callable[[str, int], None] | None = None,
) -> list[dict]:
    """One row per (pool, algorithm, budget): the simulator's summary, published figures, time."""
    rows = []
    for pool, matrix in pools.items():
        acc = matrix.accuracies()
        for name in plan_algorithms(algorithms, matrix):
            resolved, params = resolve(name)
            n_trials = trials_for(name, trials, slow_trials)
            for n_avg in budgets[:1] if resolved in NO_QUERIES else budgets:
                label = f"{pool} {name} N={n_avg:g}"
                tick = None if on_progress is None else (lambda k, lb=label: on_progress(lb, k))
                if tick is not None:
                    tick(0)  # show the label while a slow row runs
                start = time.perf_counter()
                row = simulate(matrix, resolved, n_avg, n_trials, seed, params, tick)
                row["requested"] = name
                pub = published(pool, name if name == "reference" else resolved, n_avg)
                row.update(
                    pool=pool,
                    n_models=matrix.n_models,
                    n_items=matrix.n_items,
                    best_accuracy=float(acc.max()),
                    budget_free=resolved in NO_QUERIES,
                    slow_rule=n_trials < trials,
                    published_rank=None if pub is None else pub[0],
                    published_accuracy=None if pub is None else pub[1],
                    seconds=time.perf_counter() - start,
                )
                rows.append(row)
    return rows


def total_trials(pools, algorithms, budgets, trials, slow_trials) -> int:
    """Trials `run_table` will run (for the progress bar)."""
    total = 0
    for matrix in pools.values():
        for name in plan_algorithms(algorithms, matrix):
            reps = 1 if resolve(name)[0] in NO_QUERIES else len(budgets)
            total += reps * trials_for(name, trials, slow_trials)
    return total


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cells(r: dict) -> list[str]:
    lo, hi = r["mean_rank_ci"]
    alo, ahi = r["mean_accuracy_ci"]
    name = (
        r["requested"] if r["requested"] == r["algorithm"] else f"{r['requested']}={r['algorithm']}"
    )
    return [
        name,
        "any" if r["budget_free"] else f"{r['budget_per_model']:g}",
        f"{r['trials']}" + ("*" if r["slow_rule"] else ""),
        f"{r['mean_rank']:.1f} [{lo:.1f}, {hi:.1f}]",
        _fmt(r["published_rank"], 1),
        f"{r['mean_accuracy']:.4f} [{alo:.4f}, {ahi:.4f}]",
        _fmt(r["published_accuracy"], 3),
        f"{r['loss_mean']:.2f} ({r['loss_p90']:.2f})",
        f"{r['p_best']:.3f}",
        f"{r['p_within_half_point']:.3f}",
        f"{r['seconds']:.1f}",
    ]


HEADER = [
    "algorithm",
    "N",
    "trials",
    "mean rank [95%]",
    "pub rank",
    "accuracy [95%]",
    "pub acc",
    "loss, pt (p90)",
    "P(best)",
    "P(<=0.5pt)",
    "s",
]


def _pool_title(r: dict) -> str:
    pub = published(r["pool"], "best", None)
    best = f"best {r['best_accuracy']:.3f}" + ("" if pub is None else f" (published {pub[1]:.3f})")
    return f"{r['pool']}: {r['n_models']} models x {r['n_items']} items, {best}"


def _by_pool(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["pool"], []).append(r)
    return out


def footnote(slow_trials: int) -> str:
    return (
        f"* slow sequential algorithm ({', '.join(sorted(SLOW))}): only the first {slow_trials} "
        f"of the paired trials (--slow-trials; the published means use {REPETITIONS})."
    )


def format_text(rows: list[dict], slow_trials: int) -> str:
    """Plain-text tables, one per pool."""
    out = []
    for pool_rows in _by_pool(rows).values():
        table = [HEADER] + [_cells(r) for r in pool_rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
        out.append(_pool_title(pool_rows[0]))
        for line in table:
            out.append(
                "  ".join(
                    c.rjust(w) if i else c.ljust(w)
                    for i, (c, w) in enumerate(zip(line, widths, strict=True))
                )
            )
        out.append("")
    if any(r["slow_rule"] for r in rows):
        out.append(footnote(slow_trials))
    return "\n".join(out)


def format_markdown(rows: list[dict], slow_trials: int, command: str) -> str:
    """The summary (mean rank, ours vs published, pools as columns) and one table per pool."""
    pools = _by_pool(rows)
    out = [f"Command: `{command}`", ""]
    keys = list(
        dict.fromkeys((r["requested"], r["budget_free"], r["budget_per_model"]) for r in rows)
    )
    out.append("| algorithm | N | " + " | ".join(pools) + " |")
    out.append("|---|---|" + "---|" * len(pools))
    for name, free, n_avg in keys:
        cells = []
        for pool_rows in pools.values():
            hit = [
                r
                for r in pool_rows
                if (r["requested"], r["budget_free"], r["budget_per_model"]) == (name, free, n_avg)
            ]
            if not hit:
                cells.append("")
                continue
            r = hit[0]
            pub = "" if r["published_rank"] is None else f" ({r['published_rank']:.1f})"
            cells.append(f"{r['mean_rank']:.1f}{pub}")
        n = "any" if free else f"{n_avg:g}"
        out.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    out += ["", "Mean rank of the returned model; the published figure in brackets.", ""]
    for pool_rows in pools.values():
        out += [f"#### {_pool_title(pool_rows[0])}", ""]
        out.append("| " + " | ".join(HEADER) + " |")
        out.append("|" + "---|" * len(HEADER))
        out += ["| " + " | ".join(_cells(r)) + " |" for r in pool_rows]
        out.append("")
    if any(r["slow_rule"] for r in rows):
        out.append(footnote(slow_trials))
    return "\n".join(out) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), metavar="P")
    ap.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), metavar="A")
    ap.add_argument("--budgets", nargs="+", type=float, default=[10, 50], metavar="N")
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument(
        "--slow-trials",
        type=int,
        default=1000,
        help="trials for ttts/ucb/ucb_e (the first ones of the same paired trials)",
    )
    ap.add_argument("--seed", type=int, default=0, help="generator seed and simulator seed")
    ap.add_argument("--real", action="store_true", help="the real pools in shared/data/matrices")
    ap.add_argument("--matrices", type=Path, default=REAL_MATRICES, help="with --real")
    ap.add_argument("--json", type=Path, metavar="OUT")
    ap.add_argument("--markdown", type=Path, metavar="OUT")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for name in args.algorithms:  # fail on a typo before generating anything
        resolve(name)
    if args.real:
        pools = load_real_pools(args.matrices, option="--matrices DIR (its data/matrices)")
    else:
        pools = {p: generate(p, args.seed).matrix for p in args.presets}
    total = total_trials(pools, args.algorithms, args.budgets, args.trials, args.slow_trials)
    start = time.perf_counter()
    with tqdm(total=total, unit="trial", file=sys.stderr, leave=False) as bar:

        def tick(label: str, k: int) -> None:
            bar.set_description(label, refresh=k == 0)
            bar.update(k)

        rows = run_table(
            pools, args.algorithms, args.budgets, args.trials, args.slow_trials, args.seed, tick
        )
    elapsed = time.perf_counter() - start
    command = "python bench/reproduce_table.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(format_text(rows, args.slow_trials))
    print(f"total {elapsed:.0f} s")
    if args.json:
        meta = {"command": command.strip(), "seconds": elapsed, "slow_trials": args.slow_trials}
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(format_markdown(rows, args.slow_trials, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
