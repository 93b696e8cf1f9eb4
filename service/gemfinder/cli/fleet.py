"""`gemfinder fleet`: run a simulated TGI fleet, or write its config or a synthetic query set.

gemfinder fleet items --matrix tree.npz --out items.jsonl   # the matrix's items (or --per-task 50)
gemfinder fleet config --matrix tree.npz --endpoints 3 --out fleet.json
gemfinder fleet serve --config fleet.json --query-set items.jsonl \
    --candidates-out candidates.jsonl --endpoints-out endpoints.json [--backend openai_completions]
gemfinder fleet serve --matrix tree.npz --query-set items.jsonl --endpoints 3
gemfinder fleet hub --tree tree.npz --port 8000     # the tree as the Hub's model API

Output files are written whole (a temporary file renamed into place), so a reader polling for
them never sees half a file; an unwritable path or a port in use is a one-line error naming the
flag.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from gemfinder.backends.registry import DEFAULT, NAMES, help_text
from gemfinder.candidates import candidate_record
from gemfinder.errors import UserError
from gemfinder.outputs import check_writable, write_whole

DEFAULT_PER_TASK = 50


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fleet", help="simulated inference fleet speaking TGI's API")
    sub = parser.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)

    items = sub.add_parser("items", help="write a synthetic query set (JSONL)")
    items.add_argument(
        "--matrix",
        help="write exactly this matrix's items (ids task/index, as `trees generate` names "
        "them), so that a fleet serving the matrix can answer every one",
    )
    items.add_argument(
        "--per-task",
        type=int,
        help=f"items per task (default {DEFAULT_PER_TASK}; with --matrix: only its items with "
        "an index below this)",
    )
    items.add_argument("--seed", type=int, default=0, help="seed of the generated items' "
                       "text (default %(default)s)")  # fmt: skip
    items.add_argument(
        "--tasks",
        help="comma-separated (default: arc_challenge,mmlu,winogrande,gsm8k,mbpp, or with "
        "--matrix the matrix's tasks)",
    )
    items.add_argument("--out", required=True, help="query set to write (.jsonl)")
    items.set_defaults(handler=_items)

    config = sub.add_parser("config", help="write a fleet config serving a matrix's models")
    _matrix_args(config)
    config.add_argument("--out", required=True, help="fleet config to write (.json)")
    config.set_defaults(handler=_config)

    serve = sub.add_parser("serve", help="run the fleet until interrupted")
    serve.add_argument("--config", help="fleet JSON (see docs/oracles.md)")
    _matrix_args(serve)
    serve.add_argument("--query-set", help="JSONL items the fleet answers (else from --config)")
    serve.add_argument("--candidates-out", help="write the candidates reaching the fleet (JSONL)")
    serve.add_argument(
        "--endpoints-out",
        help="write the endpoint settings a search needs (JSON: url, backend and the LoRA "
        "adapters of each endpoint)",
    )
    serve.add_argument(
        "--backend",
        choices=NAMES,
        default=DEFAULT,
        help=help_text("the backend those files name (every endpoint serves each one's route)"),
    )
    serve.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    serve.set_defaults(handler=_serve)

    hub = sub.add_parser("hub", help="serve a model tree as the Hugging Face Hub's model API")
    tree = hub.add_mutually_exclusive_group(required=True)
    tree.add_argument("--tree", help=".npz written by `gemfinder trees generate`")
    tree.add_argument("--preset", help="generate the tree of this preset instead")
    hub.add_argument("--seed", type=int, default=0, help="with --preset")
    hub.add_argument("--models", type=int, help="with --preset: pool size")
    hub.add_argument("--port", type=int, default=0, help="0: ephemeral")
    hub.add_argument("--page-size", type=int, default=1000, help="models per listing page")
    hub.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    hub.set_defaults(handler=_hub)


def _matrix_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--matrix", help="correctness matrix (.npz/.npy/.csv)")
    parser.add_argument("--endpoints", type=int, default=3, help="simulated TGI servers, the "
                        "matrix's models spread over them (default %(default)s)")  # fmt: skip
    parser.add_argument("--base-port", type=int, default=0, help="0: ephemeral ports")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="median service time")
    parser.add_argument("--latency-sigma", type=float, default=0.5, help="spread of the "
                        "service time, the sigma of its log-normal (default %(default)s; "
                        "with --latency-ms)")  # fmt: skip
    parser.add_argument("--max-concurrent", type=int, default=128, help="requests each "
                        "endpoint serves at once (default %(default)s)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated answers "
                        "and latencies (default %(default)s)")  # fmt: skip


def _check_out(path: str | None, flag: str) -> None:
    """Fail before any work if `path` (when given) cannot be written."""
    if path:
        check_writable(path, flag)


def _items(args: argparse.Namespace) -> int:
    from gemfinder.sim.fleet.synthetic_items import TASKS, for_items, generate

    _check_out(args.out, "--out")
    if args.per_task is not None and args.per_task < 1:
        raise UserError("--per-task", "must be at least 1")
    tasks = None
    if args.tasks is not None:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            given = ", ".join(unknown) or "(none given)"
            raise UserError("--tasks", f"unknown {given}; known: {', '.join(TASKS)}")
    if args.matrix:
        from gemfinder.sim.matrix import load_matrix

        ids = load_matrix(args.matrix, field="--matrix").items
        try:
            records = for_items(ids, seed=args.seed, tasks=tasks)
        except ValueError as err:
            raise UserError("--matrix", str(err)) from None
        if args.per_task is not None:
            records = [r for r in records if int(r["id"].split("/")[1]) < args.per_task]
        if not records:
            raise UserError("--matrix", "no item of the matrix is left after --tasks/--per-task")
    else:
        per_task = args.per_task or DEFAULT_PER_TASK
        try:
            records = generate(per_task, seed=args.seed, tasks=tasks or TASKS)
        except ValueError as err:
            raise UserError("--per-task", str(err)) from None
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    write_whole(args.out, text, "--out")
    print(f"wrote {len(records)} items to {args.out}")
    return 0


def _config_dict(args: argparse.Namespace, missing_matrix: str) -> dict:
    from gemfinder.sim.fleet.build import fleet_dict_from_matrix
    from gemfinder.sim.fleet.config import MAX_PORT
    from gemfinder.sim.matrix import load_matrix

    if not args.matrix:
        raise UserError("--matrix", missing_matrix)
    if args.endpoints < 1:
        raise UserError("--endpoints", "need at least one endpoint")
    if args.base_port and not 1 <= args.base_port <= MAX_PORT - args.endpoints + 1:
        raise UserError(
            "--base-port",
            f"endpoints listen on --base-port + 0..{args.endpoints - 1}, which must lie in "
            f"1..{MAX_PORT} (0: ephemeral ports), got {args.base_port}",
        )
    if args.latency_ms < 0:
        raise UserError("--latency-ms", f"must be >= 0, got {args.latency_ms:g}")
    if args.latency_sigma < 0:
        raise UserError("--latency-sigma", f"must be >= 0, got {args.latency_sigma:g}")
    if args.max_concurrent < 1:
        raise UserError("--max-concurrent", "must be at least 1")
    matrix = load_matrix(args.matrix, field="--matrix")
    data = fleet_dict_from_matrix(
        matrix,
        args.endpoints,
        base_port=args.base_port,
        latency_median_s=args.latency_ms / 1000.0,
        latency_sigma=args.latency_sigma if args.latency_ms else 0.0,
        max_concurrent_requests=args.max_concurrent,
        seed=args.seed,
    )
    data["matrix"] = str(Path(args.matrix).resolve())
    return data


def _config(args: argparse.Namespace) -> int:
    _check_out(args.out, "--out")
    data = _config_dict(args, "required: the correctness matrix whose rows the fleet serves")
    write_whole(args.out, json.dumps(data, indent=2) + "\n", "--out")
    print(f"wrote a fleet of {len(data['endpoints'])} endpoints to {args.out}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from gemfinder.sim.fleet.config import fleet_from_dict, load_fleet_config

    _check_out(args.candidates_out, "--candidates-out")
    _check_out(args.endpoints_out, "--endpoints-out")
    if args.config:
        config = load_fleet_config(args.config)
    else:
        config = fleet_from_dict(_config_dict(args, "required, or give --config"))
    matrix_path = config.matrix or args.matrix
    query_set = args.query_set or config.query_set
    if not matrix_path:
        raise UserError("--matrix", "required: --config has no 'matrix'")
    if not query_set:
        raise UserError("--query-set", "required: the items the fleet answers")
    query_field = "--query-set" if args.query_set else f"{args.config}: query_set"
    return asyncio.run(_run(config, matrix_path, query_set, query_field, args))


async def _run(
    config, matrix_path: str, query_set: str, query_field: str, args: argparse.Namespace
) -> int:
    from gemfinder.sim.fleet import Fleet
    from gemfinder.sim.fleet.build import candidates_for, endpoints_for
    from gemfinder.sim.fleet.fleet import ItemsOutsideMatrix, PortUnavailable
    from gemfinder.sim.fleet.responder import UnanswerableTasks
    from gemfinder.sim.matrix import load_matrix
    from gemfinder.tasks import load_query_set

    matrix = load_matrix(matrix_path, field="--matrix" if args.matrix else "config matrix")
    items = load_query_set(query_set)
    try:
        fleet = Fleet(config, matrix, items)
    except (ItemsOutsideMatrix, UnanswerableTasks) as err:
        raise UserError(query_field, str(err)) from None
    except ValueError as err:
        raise UserError("config", str(err)) from None
    try:
        await fleet.start()
    except PortUnavailable as err:
        index = [spec.name for spec in config.endpoints].index(err.endpoint)
        field = f"{args.config}: endpoints[{index}].port" if args.config else "--base-port"
        reason = f"cannot listen on {err.host}:{err.port} ({err.endpoint}): {err.reason}"
        raise UserError(field, reason) from None
    try:
        urls = {name: fleet.url(name) for name in fleet.names}
        for spec in config.endpoints:
            state = "down" if spec.down else f"{len(spec.adapters)} adapters"
            print(f"{spec.name}: {urls[spec.name]}  base={spec.model_id}  {state}", flush=True)
        # Endpoints first: "candidates written" is the line scripts wait for.
        if args.endpoints_out:
            settings = json.dumps(endpoints_for(config, urls, args.backend), indent=1) + "\n"
            write_whole(args.endpoints_out, settings, "--endpoints-out")
            print(f"endpoints written to {args.endpoints_out}", flush=True)
        if args.candidates_out:
            cands = candidates_for(config, urls, matrix, args.backend)
            text = "".join(json.dumps(candidate_record(c)) + "\n" for c in cands)
            write_whole(args.candidates_out, text, "--candidates-out")
            print(f"candidates written to {args.candidates_out}", flush=True)
        if args.candidates_out and args.endpoints_out:
            print(
                f"try: gemfinder search --candidates {args.candidates_out} --endpoints "
                f"{args.endpoints_out} --query-set {query_set} --budget-per-model 20",
                flush=True,
            )
        await _serve_until_stopped(args.duration)
    finally:
        await fleet.stop()
    return 0


async def _serve_until_stopped(duration: float | None) -> None:
    """Serve for `duration` seconds, or until Ctrl-C when it is None."""
    print("serving; Ctrl-C to stop", file=sys.stderr, flush=True)
    if duration is not None:
        await asyncio.sleep(duration)
    else:
        await asyncio.Event().wait()


def _hub(args: argparse.Namespace) -> int:
    from gemfinder.sim.fleet.hub import load_hub_models, models_from_synthetic

    if args.page_size < 1:
        raise UserError("--page-size", "must be at least 1")
    if args.tree:
        models = load_hub_models(args.tree, field="--tree")
    else:
        from gemfinder.cli.trees import check_tree_flags
        from gemfinder.sim.trees import generate

        check_tree_flags(args.preset, args.models, seed=args.seed)
        models = models_from_synthetic(generate(args.preset, args.seed, models=args.models))
    return asyncio.run(_run_hub(models, args))


async def _run_hub(models, args: argparse.Namespace) -> int:
    from gemfinder.sim.fleet.hub import Hub

    try:
        hub = Hub(models, port=args.port, page_size=args.page_size)
        await hub.start()
    except OSError as err:
        raise UserError("--port", f"cannot listen on {args.port}: {err.strerror}") from None
    try:
        roots = [m.id for m in models if not m.parents]
        children = {p for m in models for _, p in m.parents}
        base = next((m.id for m in models if m.parents and m.id in children), roots[0])
        print(f"hub: {hub.url}  {len(models)} models, root {', '.join(roots)}", flush=True)
        print(
            f"try: gemfinder discover --hub-endpoint {hub.url} --base-model {base} "
            "--endpoint 'http://127.0.0.1:8080' --out candidates.jsonl",
            flush=True,
        )
        await _serve_until_stopped(args.duration)
    finally:
        await hub.stop()
    return 0
