"""`gemfinder demo`: generated model tree + simulated fleet + server + a real gRPC client.

No GPU, no network: see gemfinder.sim.demo for what is generated. Prints the budget up front, a live
progress bar, then the winner beside the most popular model, queries spent against exhaustive
evaluation, why part of the budget was not spent, and the server's metrics. Logs and data go to
a temporary directory that is removed at the end (kept, and named, if the demo fails), or to
--workdir DIR, which is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from gemfinder import report, report_html
from gemfinder.budget import DEFAULT_PER_MODEL, Budget
from gemfinder.candidates import Candidate, load_candidates
from gemfinder.cli._progress import progress
from gemfinder.cli.trees import check_tree_flags
from gemfinder.errors import UserError
from gemfinder.search.gem import most_downloaded
from gemfinder.search.spec import SearchSpec
from gemfinder.search.values import Progress, Result
from gemfinder.sim import demo
from gemfinder.tasks import Item, load_query_set

ID_WIDTH = 32  # model ids in the progress bar


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="end-to-end demo on generated data (no GPU)")
    parser.add_argument("--preset", default="qwen2.5-7b", help="model-tree preset")
    parser.add_argument("--models", type=int, default=300, help="pool size (fine-tunes + bases)")
    parser.add_argument("--items", type=int, default=1000, help="items before dropping MBPP")
    parser.add_argument(
        "--per-model", type=int, default=DEFAULT_PER_MODEL, help="query budget per model"
    )
    parser.add_argument("--endpoints", type=int, default=4, help="simulated TGI servers")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fleet median latency")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tree, items, fleet "
                        "and search (default %(default)s)")  # fmt: skip
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="write the tree, items, candidates, endpoints, logs and the search database here "
        "and keep them (default: a temporary directory, removed at the end)",
    )
    lm = parser.add_argument_group(
        "lm-eval task",
        "search on an lm-evaluation-harness task's documents instead of generated items: the "
        "server is registered to serve the task from these files and the client names it "
        "(query_set.lm_eval); --items caps the documents (the lm-eval extra)",
    )
    lm.add_argument("--lm-eval-task", metavar="NAME", help="e.g. gsm8k, arc_challenge")
    lm.add_argument(
        "--lm-eval-data",
        nargs="+",
        default=[],
        metavar="SPLIT=PATH",
        help="the task's local data files, one per split it reads",
    )
    lm.add_argument(
        "--lm-eval-include",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory of your own task YAML (docs/examples/lm-eval-custom/tasks)",
    )
    lm.add_argument("--num-fewshot", type=int, metavar="K", help="default: the task's own")
    parser.add_argument(
        "--report",
        metavar="FILE",
        help="also write the search's HTML report here (gemfinder report; needs matplotlib)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress on stderr (a live bar on a terminal, else a line per tenth spent)",
    )
    parser.set_defaults(handler=_demo)


def _check(args: argparse.Namespace) -> None:
    """Bad flags are one-line errors before anything starts."""
    check_tree_flags(args.preset, args.models, args.items, args.seed)
    Budget.of_per_model(args.per_model, args.models, "--per-model")  # its check, up front
    lows = [
        ("--endpoints", args.endpoints, 1),
        ("--latency-ms", args.latency_ms, 0),
    ]
    for flag, value, low in lows:
        if value < low:
            raise UserError(flag, f"must be at least {low}, got {value}")
    if not args.lm_eval_task:
        for flag in ("lm_eval_data", "lm_eval_include", "num_fewshot"):
            if getattr(args, flag) not in (None, []):
                raise UserError("--" + flag.replace("_", "-"), "needs --lm-eval-task")
    elif not args.lm_eval_data:
        raise UserError("--lm-eval-data", "needs the task's data files: SPLIT=PATH ...")
    if args.report:
        report_html.check_target(args.report, "--report")


def _demo(args: argparse.Namespace) -> int:
    _check(args)
    if args.workdir:
        workdir = Path(args.workdir)
        if workdir.exists() and not workdir.is_dir():
            raise UserError("--workdir", f"{workdir} is not a directory")
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError("--workdir", f"cannot create {workdir}: {err.strerror}") from None
        code = _run(args, workdir)
        print(f"logs and data kept in {workdir} (remove with: rm -r {workdir})")
        return code
    workdir = Path(tempfile.mkdtemp(prefix="gemfinder-demo-"))
    try:
        code = _run(args, workdir)
    except UserError:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    except BaseException:
        print(f"gemfinder demo: stopped early; logs and data are kept in {workdir}", flush=True)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    print("logs and data were in a temporary directory, now removed (--workdir DIR keeps them)")
    return code


def _lm_eval_world(args: argparse.Namespace, workdir: Path) -> demo.World:
    """The task's query set built here, as the server will build it from the same files."""
    from gemfinder.tasks.lmeval.build import build_query_set
    from gemfinder.tasks.lmeval.loading import include_paths, parse_data_files

    files = parse_data_files(args.lm_eval_data)
    args.lm_eval_include = include_paths(args.lm_eval_include, "--lm-eval-include")
    records = build_query_set(
        args.lm_eval_task,
        files,
        num_fewshot=args.num_fewshot,
        limit=args.items,
        include=args.lm_eval_include,
    )
    world = demo.build_lm_eval_world(workdir, args.preset, args.models, args.seed, records, files)
    shots = records[0]["lm_eval"]["num_fewshot"]
    print(
        f"model tree: {world.matrix.n_models} models ({args.preset} preset) answering "
        f"{len(records)} documents of lm-eval task {args.lm_eval_task} "
        f"({records[0]['output_type']}, {shots}-shot)",
        flush=True,
    )
    return world


def _run(args: argparse.Namespace, workdir: Path) -> int:
    start = time.monotonic()
    if args.lm_eval_task:
        world = _lm_eval_world(args, workdir)
    else:
        world = demo.build_world(workdir, args.preset, args.models, args.items, args.seed)
        print(
            f"model tree: {world.matrix.n_models} models ({args.preset} preset), "
            f"{world.matrix.n_items} generated items",
            flush=True,
        )
    m = world.matrix
    procs = demo.Processes()
    try:
        candidates, endpoints = demo.start_fleet(
            procs, world, workdir, args.endpoints, args.latency_ms
        )
        metrics_port = demo.free_port()
        extra = []
        if world.lm_eval_tasks is not None:
            extra = ["--lm-eval-tasks", str(world.lm_eval_tasks)]
            if args.lm_eval_include:
                extra += ["--lm-eval-include", ",".join(args.lm_eval_include)]
        port, _ = demo.start_server(procs, workdir, endpoints, metrics_port, extra)
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        print(f"fleet: {args.endpoints} simulated TGI endpoints; server: 127.0.0.1:{port}")
        print(f"metrics: {url} (until the demo ends)")
        records = load_candidates(candidates)
        items = load_query_set(world.items_path)
        budget = Budget.of_per_model(args.per_model, len(records), "--per-model")
        spec = SearchSpec(candidates=records, items=items, budget=budget.total)
        spec.validate(prefix="demo", asked=budget.asked)
        print(budget_line(spec, args.per_model), flush=True)
        if args.lm_eval_task:
            print(
                f"query set: the client names lm-eval task {args.lm_eval_task}; the server "
                "builds it from its registered data (the first call indexes lm-eval's tasks)",
                flush=True,
            )
        result = asyncio.run(_client(port, records, items, args))
        truth = dict(zip(m.models, m.accuracies().tolist(), strict=True))
        print()
        print(report.ranking_table(result, top=5))
        print()
        print(report.gem_report(result, truth))
        best = max(truth.values())
        winner_truth = truth[result.winner.model_id]
        rank = 1 + sum(v > winner_truth for v in truth.values())
        print(
            f"truth         the winner is rank {rank} of {m.n_models} by exhaustive accuracy "
            f"(best {best:.3f})"
        )
        print(unspent_text(spec, result))
        print(f"metrics       at the end of the run: {_sample(url)}")
        if args.report:
            report_html.write_report(args.report, result, spec.to_dict(), "--report")
            print(f"report        {args.report}")
        if result.per_task:  # the demo's query set mixes tasks (docs/results-export.md)
            print()
            print(report.per_task_report(result))
    finally:
        procs.close()
    print(f"done in {time.monotonic() - start:.0f}s; the fleet and the server have stopped")
    return 0


def budget_line(spec: SearchSpec, per_model: int) -> str:
    """The total budget, what evaluating everything would cost, and how the budget is split
    between the search and the gem check (two lines when part is kept back)."""
    line = (
        f"budget: {spec.budget:,} queries ({per_model} per model x {len(spec.candidates)} "
        f"models; evaluating every model on every item would take {spec.exhaustive:,})"
    )
    reserve = spec.gem_check_reserve
    if not reserve:
        return line
    return (
        f"{line}\n        {spec.search_budget:,} for the search, {reserve:,} "
        f"({spec.gem_check_share:.0%}) kept back for the gem check: the most downloaded models "
        "answer the winner's items"
    )


def unspent_text(spec: SearchSpec, result: Result) -> str:
    """Why `queries_spent` is below the budget: what the search and the gem check each left,
    and why (the rules are in docs/search.md and docs/service.md "The gem check")."""
    spent, checked = result.queries_spent, result.gem_check_queries
    left = spec.budget - spent
    if left <= 0:
        return f"unspent       none: all {spec.budget:,} queries spent"
    searched = spent - checked
    parts = [f"the search spent all of its {spec.search_budget:,}"]
    if searched < spec.search_budget:
        n_items = len(spec.items)
        if result.winner.items_seen >= n_items:
            why = (
                f"its last round could afford all {n_items:,} items for every model still in "
                "the race, so it evaluated them exhaustively (the answer among them is exact) "
                "and had nothing left to ask"
            )
        else:
            why = (
                "each round gives a model at most the items it has left, and skipped or "
                "failed queries are not spent (docs/search.md)"
            )
        parts = [f"the search spent {searched:,} of its {spec.search_budget:,}: {why}"]
    reserve = spec.gem_check_reserve
    if reserve and checked < reserve:
        popular = most_downloaded(spec)
        winner = result.winner.model_id
        if any(spec.candidates[i].model_id == winner for i in popular):
            why = "the winner is itself among the most downloaded 1%, so there was nothing to check"
        else:
            others = [i for i in popular if spec.candidates[i].model_id != winner]
            who = (
                f"each of the {len(others)} most downloaded models"
                if len(others) > 1
                else "the most downloaded model"
            )
            why = (
                f"{who} was to answer up to {reserve // max(len(others), 1):,} of the winner's "
                "items, and those it had already answered in the search cost nothing"
            )
        parts.append(f"the gem check spent {checked:,} of its {reserve:,}: {why}")
    lines = [
        f"unspent       {left:,} of the {spec.budget:,} queries ({spent:,} spent, "
        f"{spent / spec.budget:.0%})"
    ]
    return "\n".join(lines + [f"  {part}" for part in parts])


def short_id(model_id: str, width: int = ID_WIDTH) -> str:
    """`org/name` in at most `width` characters: the name whole and the start of the org when
    they fit (`vector-coll…/Qwen2.5-7B-reasoning`), else both ends of the id."""
    if len(model_id) <= width:
        return model_id
    org, slash, name = model_id.rpartition("/")
    room = width - len(name) - 2  # the ellipsis and the slash
    if slash and room >= 3:
        return f"{org[:room]}…/{name}"
    head = (width - 1) // 2
    return f"{model_id[:head]}…{model_id[-(width - 1 - head) :]}"


def progress_text(p: Progress, n_candidates: int, seen_rounds: bool) -> str:
    """The bar's postfix for one progress event: round, survivors and the leader once every
    candidate could have been graded (before that the leader is an unseen or 0-of-1 model)."""
    if p.total_rounds:
        stage = f"round {p.round}/{p.total_rounds}, {p.survivors} left"
    elif seen_rounds:
        stage = "search done, gem check"
    else:
        stage = f"{p.survivors} left"
    if p.spent == 0:
        return f"{stage}, waiting for the first answers"
    if p.spent < n_candidates:
        return f"{stage}, first answers"
    return f"{stage}, leader {short_id(p.leader_model_id)} {p.leader_accuracy:.3f}"


def _sample(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
        text = resp.read().decode()
    wanted = ("gemfinder_budget_spent_total ", "gemfinder_searches_finished_total{")
    return "; ".join(line for line in text.splitlines() if line.startswith(wanted))


async def _client(port: int, candidates: list[Candidate], items: list[Item], args) -> Result:
    import grpc

    from gemfinder.server.convert import result_from_proto, spec_to_proto
    from gemfinder.v1 import gemfinder_pb2 as pb
    from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

    spec = spec_to_proto(candidates, items, args.per_model, args.seed)
    if args.lm_eval_task:  # the task by name: the server builds the same items itself
        ask = pb.LmEvalQuerySet(task=args.lm_eval_task, limit=len(items))
        if args.num_fewshot is not None:
            ask.num_fewshot = args.num_fewshot
        spec.query_set.CopyFrom(pb.QuerySet(lm_eval=ask))
    request_id = uuid.uuid4().hex
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ModelSearchServiceStub(channel)
        call = stub.SelectBestModel(pb.SelectBestModelRequest(spec=spec, request_id=request_id))
        if not args.no_progress:
            budget = args.per_model * len(candidates)
            await _watch(stub, request_id, call, pb, budget, len(candidates))
        response = await call
    return result_from_proto(response.search.result)


async def _watch(stub, request_id: str, call, pb, budget: int, n_candidates: int) -> None:
    """Find the search by its request id, then follow WatchSearch with a progress bar (plain
    lines when stderr is not a terminal, so logs hold no carriage-return redraws)."""
    from gemfinder.server.convert import progress_from_proto

    bar = progress("searching", budget, "q")
    search_id = ""
    while not search_id and not call.done():
        listed = await stub.ListSearches(pb.ListSearchesRequest(request_id=request_id))
        search_id = listed.searches[0].search_id if listed.searches else ""
        await asyncio.sleep(0.1)
    seen_rounds = False
    if search_id:
        async for event in stub.WatchSearch(pb.WatchSearchRequest(search_id=search_id)):
            p = progress_from_proto(event.progress)
            seen_rounds = seen_rounds or p.total_rounds > 0
            bar.update(p.spent, p.budget, progress_text(p, n_candidates, seen_rounds))
    bar.close()
