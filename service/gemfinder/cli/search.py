"""`gemfinder search`: run one search locally, without a server, and print the ranking.

Live mode sends queries to the candidates' endpoints; `--matrix` answers them from a correctness
matrix instead (offline, no endpoint is contacted). The search runs through the same
SearchManager as the server, so `--store PATH` caches every graded query and an interrupted
search resumes when the same command runs again.

Exit status: 0 with a recommendation; 1 when the search failed (e.g. every endpoint down: no
meaningful recommendation, the reason on stderr); 2 for bad input, including an endpoint that
does not answer before the search (unless --allow-unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace

from tqdm import tqdm

from gemfinder import _core, report
from gemfinder.budget import DEFAULT_PER_MODEL, Budget
from gemfinder.candidates import Candidate, load_candidates
from gemfinder.cli._args import numbers_by_name, subcommand
from gemfinder.errors import UserError
from gemfinder.oracles import InferenceOracle, Oracle, ReplayOracle, load_endpoint_configs
from gemfinder.oracles.allowlist import ANY_ENDPOINT
from gemfinder.outputs import not_an_input
from gemfinder.report_html import check_target, write_report
from gemfinder.search import SearchSpec, gpu_budget
from gemfinder.search.incremental import DEFAULT_INCUMBENTS, check_incumbents
from gemfinder.search.manager import FINISHED, SearchManager
from gemfinder.search.spec import (
    DEFAULT_DELTA,
    GEM_CHECK_SHARE,
    PRIOR_STRENGTH,
    IncrementalAsk,
    default_algorithm,
)
from gemfinder.sim.matrix import CorrectnessMatrix, load_matrix
from gemfinder.store import Store, open_store
from gemfinder.tasks import Item, load_query_set

MATRIX_ENDPOINT = "http://matrix.invalid"  # never contacted: the ReplayOracle answers


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subcommand(subparsers, "search", "run a search locally (no server) and print the "
                   "ranking and gem report", __doc__, run)  # fmt: skip
    p.add_argument("--candidates", help="candidates .json list or .jsonl (default with --matrix: "
                   "every row of the matrix)")  # fmt: skip
    p.add_argument("--query-set", required=True, help="query set .jsonl (id, task, fields)")
    p.add_argument("--matrix", help="answer from this correctness matrix instead of endpoints")
    p.add_argument("--endpoints", help="endpoint settings JSON (tokens, adapters, concurrency)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-per-model", type=int, help=f"default {DEFAULT_PER_MODEL}")
    budget.add_argument("--budget", type=int, help="total queries for the whole search")
    p.add_argument("--algorithm", help=f"default: {_core.DEFAULT_ALGORITHM} (bayes_elim when "
                   "every candidate has a prior score)")  # fmt: skip
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="algorithm "
                   "parameter, repeatable (e.g. first_cut=50)")  # fmt: skip
    add_shape_flags(p)
    p.add_argument("--allow-unreachable", action="store_true", help="search even when a "
                   "candidate's endpoint does not answer the pre-search check (default: "
                   "refuse)")  # fmt: skip
    add_task_weight_flag(p)
    p.add_argument("--epsilon", type=float, help="fixed confidence: stop once the winner is "
                   "certified within this accuracy gap (a share: 0.01 = 1 point) of every model; "
                   "the budget is then the most to spend (docs/search.md)")  # fmt: skip
    p.add_argument("--delta", type=float, help="with --epsilon: the error probability "
                   f"(default {DEFAULT_DELTA})")  # fmt: skip
    p.add_argument("--gpu-seconds", type=float, help="cap the search's GPU time (queries and "
                   "loads, from the endpoints' cost models and measured response times): the "
                   "query budget is planned down to what it buys, and the search stops once the "
                   "next query would pass it (docs/service.md)")  # fmt: skip
    p.add_argument(
        "--store",
        help="SQLite file (or postgresql:// URL) caching answers; rerun the command to resume",
    )
    p.add_argument(
        "--incremental-from",
        metavar="SEARCH_ID",
        help="incremental search: challenge the top models of this earlier search of --store "
        "('latest': its newest succeeded search) with the candidates it did not have; "
        "--candidates is the current tree, --budget-per-model is per newcomer (docs/search.md)",
    )
    p.add_argument(
        "--incumbents",
        type=int,
        help="with --incremental-from: how many of the earlier search's top models to keep "
        f"(default {DEFAULT_INCUMBENTS})",
    )
    p.add_argument("--top", type=int, default=10, help="rows of the ranking to print "
                   "(default %(default)s)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--report", metavar="FILE", help="also write the HTML report here "
                   "(gemfinder report; needs matplotlib)")  # fmt: skip


def add_shape_flags(p: argparse.ArgumentParser) -> None:
    """The flags shaping a search that `gemfinder plan` takes too, with the same help."""
    p.add_argument("--seed", type=int, default=0, help="seed of the search's item order and "
                   "tie-breaks (default %(default)s; the same seed gives the same "
                   "search)")  # fmt: skip
    p.add_argument("--system-prompt", choices=("none", "system"), default="none",
                   help="chat backends: the task's instruction as a system turn (system) or at the "
                   "start of the user turn (none, the default); docs/grading.md")  # fmt: skip
    p.add_argument("--prior-strength", type=float, default=PRIOR_STRENGTH, help="weight in "
                   "items of the candidates' prior_score, when they have one (default "
                   "%(default)s)")  # fmt: skip
    p.add_argument("--gem-check-share", type=float, default=GEM_CHECK_SHARE, help="share of "
                   "the budget kept back to compare the winner with the most downloaded 1%% on "
                   "its items (0 turns it off; default %(default)s)")  # fmt: skip


def add_task_weight_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task-weight", action="append", default=[], metavar="TASK=W", help="weight "
                   "of a task of a mixed query set in the overall ranking, repeatable (a task "
                   "not named weighs 1; none given: each task weighs its share of the "
                   "items)")  # fmt: skip


def matrix_candidates(matrix: CorrectnessMatrix) -> list[Candidate]:
    """Every row as a candidate; rows are told apart by adapter id on one placeholder URL."""
    return [
        Candidate(
            model_id=name,
            endpoint=MATRIX_ENDPOINT,
            adapter_id=name,
            downloads=None if matrix.downloads is None else float(matrix.downloads[k]),
            official=False if matrix.is_base is None else bool(matrix.is_base[k]),
        )
        for k, name in enumerate(matrix.models)
    ]


# The spec's fields that one flag sets (SearchSpec.validate names the field, prefix "search").
SPEC_FLAGS = {
    "search.seed": "--seed",
    "search.algorithm": "--algorithm",
    "search.prior_strength": "--prior-strength",
    "search.gem_check_share": "--gem-check-share",
    "search.query_set": "--query-set",
    "search.epsilon": "--epsilon",
    "search.delta": "--delta",
    "search.gpu_seconds": "--gpu-seconds",
    "search.candidates": "--candidates",  # the whole list: too few, too many
}


# The spec's fields that the start (search.incremental.narrow) names, by the flag that sets them.
START_FLAGS = {
    "spec.parent_search_id": "--incremental-from",
    "spec.seed": "--seed",
    "spec.gpu_seconds": "--gpu-seconds",
}


def build(args: argparse.Namespace) -> tuple[SearchSpec, Oracle]:
    """The validated spec and the oracle answering it; bad input is a UserError."""
    items: list[Item] = load_query_set(args.query_set)
    matrix = load_matrix(args.matrix, field="--matrix") if args.matrix else None
    if args.candidates:
        candidates = load_candidates(args.candidates)
    elif matrix is not None:
        candidates = matrix_candidates(matrix)
    else:
        raise UserError("--candidates", "required (or --matrix to search its rows offline)")
    algorithm = args.algorithm or default_algorithm(candidates)
    if algorithm not in _core.ALGORITHMS:
        raise UserError("--algorithm", f"unknown; known: {', '.join(_core.ALGORITHMS)}")
    share = "--gem-check-share"
    if args.budget is not None:
        budget = Budget.of_total(args.budget, "--budget", share)
    else:  # unset: the default, said as if sent (the flag's help names it)
        n = len(candidates)
        budget = Budget.of_per_model(args.budget_per_model, n, "--budget-per-model", share)
    spec = SearchSpec(
        candidates=candidates,
        items=items,
        budget=budget.total,
        algorithm=algorithm,
        params=numbers_by_name(args.param, "--param", "name"),
        seed=args.seed,
        system_prompt=args.system_prompt == "system",
        gem_check_share=args.gem_check_share,
        prior_strength=args.prior_strength,
        allow_unreachable=args.allow_unreachable,
        task_weights=numbers_by_name(args.task_weight, "--task-weight", "task"),
        epsilon=args.epsilon,
        gpu_seconds=args.gpu_seconds,
    )
    if args.delta is not None:
        if args.epsilon is None:
            raise UserError("--delta", "applies to fixed-confidence searches: give --epsilon")
        spec.delta = args.delta
    if args.incremental_from is not None:
        spec.ask = _incremental_ask(args)
    elif args.incumbents is not None:
        raise UserError("--incumbents", "only with --incremental-from")
    try:
        spec.validate(prefix="search", asked=budget.asked)
    except UserError as err:  # a value a flag set: name the flag
        if err.field.startswith("search.params."):
            name = err.field.removeprefix("search.params.")
            raise UserError(f"--param {name}", err.reason) from None
        if err.field.startswith("search.task_weights["):
            name = err.field.removeprefix("search.task_weights[")[:-1]
            raise UserError(f"--task-weight {name}", err.reason) from None
        if err.field in SPEC_FLAGS:
            raise UserError(SPEC_FLAGS[err.field], err.reason) from None
        raise  # a field of a file's line (search.candidates[3].endpoint) names the line
    if matrix is not None:
        missing = sorted({it.id for it in items} - set(matrix.items))
        if missing:
            raise UserError("--query-set", f"items not in the matrix: {', '.join(missing[:5])}")
        oracle: Oracle = ReplayOracle(matrix)
    else:
        endpoints = load_endpoint_configs(args.endpoints) if args.endpoints else []
        oracle = InferenceOracle(endpoints)
    return spec, oracle


def planned(spec: SearchSpec, oracle: Oracle) -> SearchSpec | None:
    """`spec` with the query budget its GPU-second cap buys (search.gpu_budget, up to a second
    of replays), made once here and handed to the start, which would otherwise replay it again;
    a cap too small is refused naming the flag, before anything is stored. None without a cap,
    and for an incremental search: its start plans the narrowed pool, which needs the store."""
    if spec.gpu_seconds is None or spec.ask is not None:
        return None
    try:
        return gpu_budget.planned(spec, getattr(oracle, "configs", {}))
    except UserError as err:
        raise UserError("--gpu-seconds", err.reason) from None


def _incremental_ask(args: argparse.Namespace) -> IncrementalAsk:
    if not args.store:
        raise UserError("--incremental-from", "needs --store: the earlier search lives there")
    k = DEFAULT_INCUMBENTS if args.incumbents is None else args.incumbents
    per_newcomer = None if args.budget is not None else args.budget_per_model or DEFAULT_PER_MODEL
    return IncrementalAsk(args.incremental_from, check_incumbents(k, "--incumbents"), per_newcomer)


def resolve_parent(spec: SearchSpec, store: Store) -> None:
    """`--incremental-from latest`: the store's newest succeeded search, resolved before the
    search's key is made, so that tomorrow's run is a new search and not today's again."""
    if spec.ask is None or spec.ask.parent_search_id != "latest":
        return
    newest = store.list_searches(1, state="succeeded")
    if not newest:
        raise UserError("--incremental-from", "latest: --store holds no succeeded search")
    spec.ask = replace(spec.ask, parent_search_id=newest[0].id)


def search_key(spec: SearchSpec) -> str:
    """Same spec, same key: the request id that lets a rerun find (and resume) its search."""
    return "cli-" + spec.digest()[:32]


# The local CLI's leases (docs/service.md, Replicas): short, so that a rerun after a killed run
# resumes within seconds.
CLI_LEASE_S = 3.0


async def run_search(
    spec: SearchSpec,
    oracle: Oracle,
    store: Store,
    progress: bool = True,
    planned: SearchSpec | None = None,
):
    """Start (or resume, or fetch) the search of `spec` in `store`; returns its final row.
    `planned`: its budget planned from its GPU-second cap already (`planned`), not replayed
    again at start."""
    # The user of the local CLI is the operator: the candidates file's endpoints are theirs, so
    # no allowlist (the server's is the endpoints file; docs/service.md).
    manager = SearchManager(
        store, oracle, max_active=1, allowlist=ANY_ENDPOINT, lease_s=CLI_LEASE_S
    )
    try:
        key = search_key(spec)
        row = store.find_request(key)
        if row is not None and row.state not in FINISHED:
            # A run killed before (no release) holds the search until its lease expires; a run
            # still going holds it for as long as it goes: wait for the lease either way.
            while not await manager.resume(row):
                row = store.get_search(row.id)
                if row is None or row.state in FINISHED:
                    break
                await asyncio.sleep(manager.tick_s)
        elif row is not None and row.state != "succeeded":
            # a failed run is retried; its answers stay cached
            row = await manager.start(spec, planned=planned)
        else:
            row = await manager.start(spec, key, planned=planned)
        if progress:
            await _follow(manager, row.id)
        return await manager.wait(row.id)
    finally:
        await manager.close()  # on Ctrl-C: stops without marking cancelled, so it resumes
        await oracle.aclose()


async def _follow(manager: SearchManager, search_id: str) -> None:
    bar = tqdm(total=1, unit="q", desc="searching", file=sys.stderr, disable=None, leave=False)
    with bar:
        async for event in manager.watch(search_id):
            p = event.progress
            if p is None:
                continue
            bar.total, bar.n = max(p.budget, 1), p.spent
            if p.certificate is not None:  # fixed confidence: no planned rounds
                stage = f"certified within {100 * p.certificate.epsilon_reached:.2f} pt"
            else:
                stage = f"round {p.round}/{p.total_rounds}" if p.total_rounds else "done"
            bar.set_postfix_str(f"{stage}, {p.survivors} left, spent {p.spent:,}")


def run(args: argparse.Namespace) -> int:
    if args.report:
        check_target(args.report, "--report")  # before the search, not after it
        inputs = (args.candidates, args.query_set, args.endpoints, args.matrix, args.store)
        not_an_input(args.report, "--report", *inputs)
    spec, oracle = build(args)
    if args.top < 0:
        raise UserError("--top", f"must be 0 or more rows, got {args.top}")
    run_spec = planned(spec, oracle)
    store = open_store(args.store or ":memory:", option="--store")
    try:
        resolve_parent(spec, store)
        found = run_search(spec, oracle, store, progress=not args.json, planned=run_spec)
        row = asyncio.run(found)
    except UserError as err:
        # The start checks the parent against the store, and plans an incremental search's
        # cap on the pool it narrows to, naming the spec's field, which a CLI user never
        # typed: name the flag.
        if err.field not in START_FLAGS:
            raise
        raise UserError(START_FLAGS[err.field], err.reason) from None
    finally:
        store.close()
    if row.state != "succeeded" or row.result is None:
        print(f"gemfinder search: search {row.state}: {row.error or ''}", file=sys.stderr)
        return 1
    if args.report:
        write_report(args.report, row.result, spec.to_dict(), "--report", search_id=row.id)
    if args.json:
        json.dump(row.result.to_json(), sys.stdout, indent=1, allow_nan=False)  # strict JSON
        print()
        return 0
    print(report.text_report(row.result, top=args.top, search_id=row.id))
    return 0
