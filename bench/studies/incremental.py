"""Incremental search against a full re-search when a tree grows (issue 16, item 4).

    python -m bench.studies.incremental [--presets ...] [--trials 500] [--incumbents 2 4 8 16]

For every preset (native size, generator seed 3), share of new models (5% and 20%, drawn at
random per trial from the same generated tree) and budget per model (10 and 50): the parent
search on the old models, then per number of incumbents k the incremental search (the parent's
top k challenged by the newcomers, the parent's answers free; gemfinder.sim.incremental) and a
full re-search of the grown tree, on the same trials. Columns: queries paid by the incremental
search (pulls the parent had not answered), by the full re-search with the parent's cache and
without it, the incremental's share of each; loss in accuracy points (mean, p90) of the
incremental search, the full re-search and of keeping the parent's winner (stale);
P(loss <= 0.5 pt) of both; P(same winner as the full re-search); P(winner changed).
"""

from __future__ import annotations

import argparse

from gemfinder import _core
from gemfinder.sim.incremental import simulate_incremental
from gemfinder.sim.trees import PRESETS, generate

SHARES = [0.05, 0.2]
BUDGETS = [10, 50]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=[p for p in PRESETS if p != "gsm8k"])
    parser.add_argument("--seed", type=int, default=3, help="generator seed of the trees")
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--incumbents", nargs="+", type=int, default=[2, 4, 8, 16])
    parser.add_argument("--budgets", nargs="+", type=float, default=BUDGETS)
    parser.add_argument("--algorithm", default=_core.DEFAULT_ALGORITHM)
    parser.add_argument(
        "--warm",
        action="store_true",
        help="warm start: the incremental search ranks by posterior mean with each incumbent's "
        "parent answers as its prior (measured worse; docs/search.md)",
    )
    args = parser.parse_args()
    warm = ", warm start" if args.warm else ""
    print(f"{args.algorithm}{warm}, {args.trials} trials per row\n")
    print(
        "| pool | new | N | k | paid | full paid (cache) | full spent | paid / full cache "
        "| paid / full | loss inc / full / stale | p90 inc / full | P(loss<=0.5) inc / full "
        "| same winner | winner changed |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        matrix = generate(preset, args.seed).matrix
        for share in SHARES:
            for n_avg in args.budgets:
                for k in args.incumbents:
                    r = simulate_incremental(
                        matrix,
                        share,
                        n_avg,
                        args.trials,
                        1,
                        k,
                        algorithm=args.algorithm,
                        warm=args.warm,
                    )
                    print(
                        f"| {preset} ({r['models']}) | {share:.0%} ({r['new']}) | {n_avg:g} "
                        f"| {k} | {r['paid_mean']:.0f} | {r['full_paid_mean']:.0f} "
                        f"| {r['full_spent_mean']:.0f} "
                        f"| {r['paid_mean'] / r['full_paid_mean']:.2f} "
                        f"| {r['paid_mean'] / r['full_spent_mean']:.2f} "
                        f"| {r['loss_mean']:.3f} / {r['full_loss_mean']:.3f} "
                        f"/ {r['stale_loss_mean']:.3f} "
                        f"| {r['loss_p90']:.2f} / {r['full_loss_p90']:.2f} "
                        f"| {r['p_within_half_point']:.3f} / {r['full_p_within_half_point']:.3f} "
                        f"| {r['same_as_full']:.2f} | {r['winner_changed']:.2f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
