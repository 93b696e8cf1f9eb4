"""`gemfinder simulate`: replay a correctness matrix through search algorithms, many trials."""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from gemfinder.errors import UserError
from gemfinder.sim.matrix import load_matrix
from gemfinder.sim.simulation import parse_algorithm, simulate_grid


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="replay a correctness matrix through search algorithms",
        description="Replay a models x items 0/1 matrix (.npy, .npz or .csv) through search "
        "algorithms; trial t shares its item order across algorithms (paired comparisons).",
    )
    parser.add_argument("--matrix", required=True, help="correctness matrix file")
    parser.add_argument(
        "--algorithms",
        nargs="+",
        default=["default"],
        metavar="A",
        help="'default' or names, with parameters as name:key=value,... (gem:first_cut=50)",
    )
    parser.add_argument(
        "--budget-per-model",
        nargs="+",
        type=float,
        required=True,
        metavar="N",
        help="queries per model on average (total budget = N x models)",
    )
    parser.add_argument("--trials", type=int, default=1000, help="simulated searches per "
                        "algorithm and budget (default %(default)s)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the trials' item "
                        "orders and tie-breaks (default %(default)s)")  # fmt: skip
    parser.add_argument(
        "--epsilon",
        type=float,
        help="also run fixed-confidence searches certifying the pick within this accuracy gap "
        "(a share, 0.01 = 1 point), the budget their maximum",
    )
    parser.add_argument(
        "--delta", type=float, default=0.05, help="with --epsilon: the error probability"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.set_defaults(handler=run)


# The simulator (gemfinder.sim.simulation) names its Python arguments in its errors; the user of
# this command typed flags. An error already filed under a flag (`--algorithms gem:first_cut`)
# passes as it is.
FLAGS = {
    "matrix": "--matrix",
    "algorithms": "--algorithms",
    "budget_per_model": "--budget-per-model",
    "trials": "--trials",
    "seed": "--seed",
}


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UserError as err:
        flag = FLAGS.get(err.field)
        if flag is None:
            raise
        # A budget error's advice names its field again ("raise budget_per_model to 2").
        reason = err.reason.replace("budget_per_model", FLAGS["budget_per_model"])
        raise UserError(flag, reason) from None


def _run(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix)
    for spec in args.algorithms:
        parse_algorithm(spec)
    target = None if args.epsilon is None else (args.epsilon, args.delta)
    runs = len(args.algorithms) + (target is not None)
    total = args.trials * runs * len(args.budget_per_model)
    with tqdm(
        total=total,
        unit="trial",
        file=sys.stderr,
        disable=None,
        leave=False,
        desc=f"{matrix.n_models} models x {matrix.n_items} items",
    ) as bar:
        rows = simulate_grid(
            matrix,
            args.algorithms,
            args.budget_per_model,
            args.trials,
            args.seed,
            bar.update,
            target,
        )
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        print(format_table(rows, best=float(matrix.accuracies().max())))
    return 0


def format_table(rows: list[dict], best: float) -> str:
    labels = [r["requested"] if r.get("params") else r["algorithm"] for r in rows]
    width = max(14, *(len(label) + 2 for label in labels))
    header = (
        f"{'algorithm':<{width}}{'N/model':>8}{'loss':>7}{'loss p90':>9}{'P(<=0.5pt)':>11}"
        f"{'P(best)':>9}{'mean rank':>21}{'accuracy':>10}{'queries':>10}"
    )
    lines = [header, "-" * len(header)]
    for label, r in zip(labels, rows, strict=True):
        lo, hi = r["mean_rank_ci"]
        rank = f"{r['mean_rank']:.2f} [{lo:.1f},{hi:.1f}]"
        lines.append(
            f"{label:<{width}}{r['budget_per_model']:>8g}{r['loss_mean']:>7.2f}"
            f"{r['loss_p90']:>9.2f}{r['p_within_half_point']:>11.3f}{r['p_best']:>9.3f}"
            f"{rank:>21}{r['mean_accuracy']:>10.4f}{r['queries_spent']:>10.0f}"
        )
    costs = {label: r["cost_to_confidence"] for label, r in zip(labels, rows, strict=True)}
    shown = ", ".join(f"{k} {'-' if v is None else f'{v:.3g}'}" for k, v in costs.items())
    lines.append(f"cost to confidence (N/model for P(<=0.5pt) >= 0.9 on this grid): {shown}")
    for r in rows:
        if r["algorithm"] == "certified":
            saved = r["budget_saved_at_equal_p"]
            lines.append(
                f"certified at N/model {r['budget_per_model']:g} (eps {r['epsilon']:g}, delta "
                f"{r['delta']:g}): {r['certified_fraction']:.3f} of trials certified, "
                f"P(loss > eps) {r['error_rate']:.4f} (upper 95% {r['error_rate_upper95']:.4f}), "
                f"budget saved {r['budget_saved']:.3f}, at equal P(loss <= eps) "
                f"{'-' if saved is None else f'{saved:.3f}'}"
            )
    lines.append(f"best model accuracy: {best:.4f}; loss in accuracy points; intervals are 95%")
    return "\n".join(lines)
