"""Issue 6's acceptance check for a candidate default against the reference method.

    python bench/acceptance.py [--candidate default]
        [--reference gem:first_round_share=0.2,first_cut=100]
        [--seeds 3 4] [--budgets 5 10 25 50 100] [--trials 1000] [--real] [--markdown OUT]

Specs are `algorithm[:param=value,...]`, as `gemfinder simulate --algorithms` takes them. For
every preset (generator seeds held out from any tuning), every budget and the small real pools
(`--real`), prints the mean rank of both with 95% intervals, their ratio, the mean loss
(accuracy points below the best model), P(within 0.5 points), and the three checks: mean rank
at N=10 at most half the reference's; P(within 0.5 points) >= 0.9 at N=50; never worse than
the reference beyond the 95% interval. Both run on the same trials (common random numbers).
`--markdown OUT` also writes the full table (loss mean and 90th percentile, P(within 0.5
points), P(best), mean rank, accuracy of both, and the checks) as Markdown.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gemfinder.sim.simulation import parse_algorithm, simulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from held_out import add_pool_arguments, held_out_pools  # noqa: E402
from published_table import REFERENCE_PARAMS  # noqa: E402

# The reference method as bench/published_table.py reads it (published m, best-fitting f).
REFERENCE = "gem:" + ",".join(f"{k}={v:g}" for k, v in REFERENCE_PARAMS.items())


def compare(matrix, candidate, reference, budgets, trials, seed) -> list[dict]:
    rows = []
    for n_avg in budgets:
        out = {"budget_per_model": n_avg}
        for role, (name, params) in (("cand", candidate), ("ref", reference)):
            out[role] = simulate(matrix, name, n_avg, trials, seed, params or None)
        rows.append(out)
    return rows


def verdicts(row: dict) -> list[str]:
    cand, ref = row["cand"], row["ref"]
    flags = []
    if row["budget_per_model"] == 10:
        flags.append("half" if cand["mean_rank"] <= ref["mean_rank"] / 2 else "NOT-half")
    if row["budget_per_model"] == 50:
        ok = cand["p_within_half_point"] >= 0.9
        flags.append("p0.5>=.9" if ok else "p0.5<.9")
    if cand["mean_rank_ci"][0] > ref["mean_rank_ci"][1]:
        flags.append("WORSE")
    return flags


def rank_with_interval(row: dict) -> str:
    lo, hi = row["mean_rank_ci"]
    return f"{row['mean_rank']:7.2f} [{lo:6.1f},{hi:6.1f}]"


def print_rows(label: str, rows: list[dict]) -> None:
    for row in rows:
        cand, ref = row["cand"], row["ref"]
        print(
            f"{label:<18}{row['budget_per_model']:>5g}  {rank_with_interval(cand)}"
            f"  {rank_with_interval(ref)}  {cand['mean_rank'] / ref['mean_rank']:6.2f}"
            f"  {cand['loss_mean']:5.2f} {ref['loss_mean']:5.2f}"
            f"  {cand['p_within_half_point']:6.3f} {ref['p_within_half_point']:6.3f}"
            f"  {' '.join(verdicts(row))}"
        )


MARKDOWN_HEADER = [
    "| pool | N | loss, points (ref) | loss p90 (ref) | P(<=0.5 pt) (ref) | P(best) (ref) "
    "| mean rank (ref) | accuracy (ref) | checks |",
    "|---|---|---|---|---|---|---|---|---|",
]


def markdown_rows(label: str, rows: list[dict]) -> list[str]:
    lines = []
    for row in rows:
        cand, ref = row["cand"], row["ref"]
        cells = [
            f"{cand['loss_mean']:.2f} ({ref['loss_mean']:.2f})",
            f"{cand['loss_p90']:.2f} ({ref['loss_p90']:.2f})",
            f"{cand['p_within_half_point']:.3f} ({ref['p_within_half_point']:.3f})",
            f"{cand['p_best']:.3f} ({ref['p_best']:.3f})",
            f"{cand['mean_rank']:.2f} ({ref['mean_rank']:.2f})",
            f"{cand['mean_accuracy']:.4f} ({ref['mean_accuracy']:.4f})",
        ]
        checks = " ".join(verdicts(row)) or "-"
        budget = f"{row['budget_per_model']:g}"
        lines.append(f"| {label} | {budget} | " + " | ".join(cells) + f" | {checks} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidate", default="default")
    parser.add_argument("--reference", default=REFERENCE)
    add_pool_arguments(parser)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--real", action="store_true", help="also the small real pools")
    parser.add_argument("--markdown", type=Path, help="also write the full table here")
    args = parser.parse_args()
    candidate, reference = parse_algorithm(args.candidate), parse_algorithm(args.reference)
    pools = held_out_pools(args, args.real)
    print(f"candidate {args.candidate} vs reference {args.reference}, {args.trials} trials")
    print(
        f"{'pool':<18}{'N':>5}  {'candidate rank [95%]':>25}  {'reference rank [95%]':>25}"
        f"  {'ratio':>6}  {'loss':>5} {'ref':>5}  {'P<=.5 cand':>6} {'ref':>6}  checks"
    )
    markdown = list(MARKDOWN_HEADER)
    for label, seed, matrix in pools:
        rows = compare(matrix, candidate, reference, args.budgets, args.trials, seed)
        print_rows(label, rows)
        markdown += markdown_rows(label, rows)
    if args.markdown:
        args.markdown.write_text("\n".join(markdown) + "\n")


if __name__ == "__main__":
    main()
