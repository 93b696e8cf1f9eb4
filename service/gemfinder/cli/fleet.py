"""`gemfinder fleet`: run a simulated TGI fleet, or write its config or a synthetic query set.

gemfinder fleet items --per-task 50 --out items.jsonl
gemfinder fleet config --matrix tree.npz --endpoints 3 --out fleet.json
gemfinder fleet serve --config fleet.json --candidates-out candidates.jsonl
gemfinder fleet serve --matrix tree.npz --query-set items.jsonl --endpoints 3
gemfinder fleet hub --tree tree.npz --port 8000     # the tree as the Hub's model API
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

from gemfinder.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fleet", help="simulated inference fleet speaking TGI's API")
    sub = parser.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)

    items = sub.add_parser("items", help="write a synthetic query set (JSONL)")
    items.add_argument("--per-task", type=int, default=50)
    items.add_argument("--seed", type=int, default=0)
    items.add_argument("--tasks", default="arc_challenge,mmlu,winogrande,gsm8k,mbpp")
    items.add_argument("--out", required=True)
    items.set_defaults(handler=_items)

    config = sub.add_parser("config", help="write a fleet config serving a matrix's models")
    _matrix_args(config)
    config.add_argument("--out", required=True)
    config.set_defaults(handler=_config)

    serve = sub.add_parser("serve", help="run the fleet until interrupted")
    serve.add_argument("--config", help="fleet JSON (see docs/oracles.md)")
    _matrix_args(serve)
    serve.add_argument("--query-set", help="JSONL items the fleet answers (else from --config)")
    serve.add_argument("--candidates-out", help="write the candidates reaching the fleet (JSONL)")
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
    parser.add_argument("--endpoints", type=int, default=3)
    parser.add_argument("--base-port", type=int, default=0, help="0: ephemeral ports")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="median service time")
    parser.add_argument("--latency-sigma", type=float, default=0.5)
    parser.add_argument("--max-concurrent", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)


def _items(args: argparse.Namespace) -> int:
    from gemfinder.fleet.synthetic_items import generate, write_jsonl

    if args.per_task < 1:
        raise UserError("--per-task", "must be at least 1")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    try:
        records = generate(args.per_task, seed=args.seed, tasks=tasks)
    except ValueError as err:
        raise UserError("--tasks", str(err)) from None
    n = write_jsonl(records, args.out)
    print(f"wrote {n} items to {args.out}")
    return 0


def _config_dict(args: argparse.Namespace) -> dict:
    from gemfinder.fleet.build import fleet_dict_from_matrix
    from gemfinder.matrix import load_matrix

    if not args.matrix:
        raise UserError("--matrix", "required (or give --config)")
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
    data = _config_dict(args)
    Path(args.out).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"wrote a fleet of {len(data['endpoints'])} endpoints to {args.out}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from gemfinder.fleet.config import fleet_from_dict, load_fleet_config

    config = load_fleet_config(args.config) if args.config else fleet_from_dict(_config_dict(args))
    matrix_path = config.matrix or args.matrix
    query_set = args.query_set or config.query_set
    if not matrix_path:
        raise UserError("matrix", "give --matrix or a config with 'matrix'")
    if not query_set:
        raise UserError("--query-set", "required: the items the fleet answers")
    return asyncio.run(_run(config, matrix_path, query_set, args))


async def _run(config, matrix_path: str, query_set: str, args: argparse.Namespace) -> int:
    from gemfinder.fleet import Fleet
    from gemfinder.fleet.build import candidates_for
    from gemfinder.matrix import load_matrix
    from gemfinder.tasks import load_query_set

    matrix = load_matrix(matrix_path)
    items = load_query_set(query_set)
    try:
        fleet = Fleet(config, matrix, items)
    except ValueError as err:
        raise UserError("config", str(err)) from None
    async with fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        for spec in config.endpoints:
            state = "down" if spec.down else f"{len(spec.adapters)} adapters"
            print(f"{spec.name}: {urls[spec.name]}  base={spec.model_id}  {state}", flush=True)
        if args.candidates_out:
            with open(args.candidates_out, "w", encoding="utf-8") as handle:
                for cand in candidates_for(config, urls, matrix):
                    record = {k: v for k, v in asdict(cand).items() if v is not None}
                    handle.write(json.dumps(record) + "\n")
            print(f"candidates written to {args.candidates_out}", flush=True)
        print("serving; Ctrl-C to stop", file=sys.stderr, flush=True)
        if args.duration is not None:
            await asyncio.sleep(args.duration)
        else:
            await asyncio.Event().wait()
    return 0


def _hub(args: argparse.Namespace) -> int:
    from gemfinder.fleet.hub import load_hub_models, models_from_synthetic

    if args.page_size < 1:
        raise UserError("--page-size", "must be at least 1")
    if args.tree:
        models = load_hub_models(args.tree, field="--tree")
    else:
        from gemfinder.trees import PRESETS, generate

        if args.preset not in PRESETS:
            raise UserError("--preset", f"unknown {args.preset!r}; known: {', '.join(PRESETS)}")
        if args.models is not None and args.models < 2:
            raise UserError("--models", "need at least 2 models (the official checkpoints)")
        models = models_from_synthetic(generate(args.preset, args.seed, models=args.models))
    return asyncio.run(_run_hub(models, args))


async def _run_hub(models, args: argparse.Namespace) -> int:
    from gemfinder.fleet.hub import Hub

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
        print("serving; Ctrl-C to stop", file=sys.stderr, flush=True)
        if args.duration is not None:
            await asyncio.sleep(args.duration)
        else:
            await asyncio.Event().wait()
    finally:
        await hub.stop()
    return 0
