"""`gemfinder plan`: what a search would spend and how well it would choose, without a query.

From a candidates file, the endpoints file (its `cost` blocks) and a budget, with the options a
search takes: the predicted queries, tokens, model and adapter loads, GPU-seconds and wall time
(mean and 10th-90th percentiles over simulated searches), and the expected loss and P(best),
from simulating the algorithm on a synthetic tree of the same size (gemfinder.search.plan;
docs/service.md "Planning a search"). Connects to no endpoint.

Exit status: 0 with a plan; 2 for bad input (the flag or the file's line named).
"""

from __future__ import annotations

import argparse
import json
import sys

from gemfinder import _core
from gemfinder.budget import DEFAULT_PER_MODEL
from gemfinder.cli import search
from gemfinder.cli._args import subcommand
from gemfinder.errors import UserError
from gemfinder.oracles import load_endpoint_configs
from gemfinder.search import plan, plan_incremental
from gemfinder.search.plan import Plan
from gemfinder.search.spec import SearchSpec
from gemfinder.store import open_store


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subcommand(subparsers, "plan", "predict a search's queries, tokens, loads, GPU-seconds, "
                   "wall time and quality (a dry run: no query is sent)", __doc__, run)  # fmt: skip
    p.add_argument("--candidates", required=True, help="candidates .json list or .jsonl")
    p.add_argument("--query-set", required=True, help="query set .jsonl (id, task, fields)")
    p.add_argument("--endpoints", help="endpoint settings JSON; its `cost` blocks price the "
                   "queries (without: queries and tokens only)")  # fmt: skip
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-per-model", type=int, help=f"default {DEFAULT_PER_MODEL}")
    budget.add_argument("--budget", type=int, help="total queries for the whole search")
    p.add_argument("--algorithm", help=f"default: {_core.DEFAULT_ALGORITHM} (bayes_elim when "
                   "every candidate has a prior score)")  # fmt: skip
    p.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="algorithm parameter, repeatable")  # fmt: skip
    search.add_shape_flags(p)
    search.add_task_weight_flag(p)
    p.add_argument("--gpu-seconds", type=float, help="plan the search under this GPU-second "
                   "cap: its query budget planned from it, each simulated search stopped where "
                   "the cap would stop it")  # fmt: skip
    p.add_argument("--epsilon", type=float, help="plan a fixed-confidence search")
    p.add_argument("--delta", type=float, help="with --epsilon: the error probability")
    p.add_argument("--trials", type=int, default=plan.DEFAULT_TRIALS, help="simulated "
                   f"searches behind the cost figures, 1-{plan.MAX_TRIALS} (default "
                   "%(default)s; fewer when trials x budget passes "
                   f"{plan.MAX_PULLS:,} queries)")  # fmt: skip
    p.add_argument("--store", help="with --incremental-from: the store holding that search")
    p.add_argument(
        "--incremental-from",
        metavar="SEARCH_ID",
        help="plan an incremental "
        "search of this earlier search of --store ('latest': its newest succeeded "
        "one), as `gemfinder search` takes it; its parent's answers cached are free",
    )
    p.add_argument("--incumbents", type=int, help="with --incremental-from: the earlier "
                   "search's top models kept (default 8)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    # What `gemfinder search` would read too, fixed for a plan (search.build reads them).
    p.set_defaults(matrix=None, allow_unreachable=True)


# An incremental spec's narrowing (search.incremental.narrow) names the spec's fields.
NARROW_FLAGS = {
    "spec.parent_search_id": "--incremental-from",
    "spec.seed": "--seed",
    "spec.candidates": "--candidates",
}


def make(args: argparse.Namespace) -> Plan:
    """The plan of the command line's search; bad input is a UserError naming the flag."""
    spec, oracle = search.build(args)  # validated as `gemfinder search` validates it
    if spec.ask is None:
        return _made(args, spec)
    store = open_store(args.store, option="--store")  # build refused it missing
    try:  # the pool its start narrows it to, and the parent's answers in the cache
        search.resolve_parent(spec, store)
        try:
            spec, cached = plan_incremental.narrowed(store, spec, oracle)
        except UserError as err:
            if err.field not in NARROW_FLAGS:
                raise
            raise type(err)(NARROW_FLAGS[err.field], err.reason) from None
        return _made(args, spec, cached)  # (it looks the cache up as it simulates)
    finally:
        store.close()


def _made(args: argparse.Namespace, spec: SearchSpec, cached: plan.Cached | None = None) -> Plan:
    configs = load_endpoint_configs(args.endpoints) if args.endpoints else []
    by_url = {c.key: c for c in configs}
    plan.check_offline(spec, by_url, prefix="search")
    budget_flag = "--budget" if args.budget is not None else "--budget-per-model"
    plan.check_size(spec, args.trials, "--trials", budget_flag)
    try:  # a cap too small is refused as `gemfinder search` refuses it, naming the flag
        return plan.plan(spec, by_url, args.trials, cached)
    except UserError as err:
        if err.field != "spec.gpu_seconds":
            raise
        raise UserError("--gpu-seconds", err.reason) from None


def text(found: Plan) -> str:
    rows = [
        ("queries", found.queries, "{:,.0f}"),
        ("prompt tokens", found.prompt_tokens, "{:,.0f}"),
        ("generated tokens", found.generated_tokens, "{:,.0f}"),
        ("model loads", found.model_loads, "{:,.1f}"),
        ("adapter loads", found.adapter_loads, "{:,.1f}"),
        ("GPU slot swaps", found.swaps, "{:,.1f}"),
        ("GPU-seconds", found.gpu_seconds, "{:,.0f}"),
        ("  of which loads", found.load_gpu_seconds, "{:,.0f}"),
        ("wall time (s)", found.wall_s, "{:,.0f}"),
    ]
    lines = [
        f"plan: {found.algorithm}, {found.models} models, budget {found.budget:,}; "
        f"{found.trials} simulated searches on a synthetic tree of {found.items} items",
        f"{'':<18}{'mean':>12}{'p10':>12}{'p90':>12}",
    ]
    for name, s, fmt in rows:
        lines.append(
            f"{name:<18}{fmt.format(s.mean):>12}{fmt.format(s.p10):>12}{fmt.format(s.p90):>12}"
        )
    if found.gpu_seconds_cap is not None:
        lines.append(
            f"GPU-second cap {found.gpu_seconds_cap:,.1f}: query budget planned to "
            f"{found.planned_budget:,}; it stops {100 * found.capped:.0f}% of the simulated "
            "searches before their algorithm finishes (the figures above are under it)"
        )
    if found.cached.mean:
        lines.append(
            f"{found.cached.mean:,.0f} more pulls answered from the evaluation cache (the "
            "parent's answers): free, not in the figures above"
        )
    if not found.accounted:
        lines.append("(no candidate's endpoint has a cost model: loads and seconds are 0)")
    lines.append(f"tokens: {found.token_source}")
    lines.append(
        f"quality ({found.quality_trials} simulated searches): loss {found.loss_mean:.2f} "
        f"accuracy points on average, {found.loss_p90:.2f} at the 90th percentile; "
        f"P(best) {found.p_best:.2f}"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    found = make(args)
    if args.json:
        json.dump(found.to_json(), sys.stdout, indent=1, allow_nan=False)
        print()
    else:
        print(text(found))
    return 0
