"""`gemfinder queryset build --lm-eval-task NAME ... --out q.jsonl`: a query set from an
lm-evaluation-harness task, with the task's own prompts (few-shot included), stop strings,
filters and metric. Needs the `lm-eval` extra; the dataset is read from local files
(--data-files SPLIT=PATH, JSONL / parquet / CSV rows in the Hugging Face layout), never
downloaded. The first run indexes lm-eval's task configs (~10 s).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from gemfinder.cli._args import subcommand
from gemfinder.errors import UserError
from gemfinder.outputs import not_an_input


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subcommand(subparsers, "queryset", "build query sets (from lm-evaluation-harness tasks)",
                   __doc__)  # fmt: skip
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="a query set from an lm-eval task", description=__doc__)
    b.add_argument(
        "--lm-eval-task", required=True, metavar="NAME", help="e.g. gsm8k, arc_challenge"
    )
    b.add_argument(
        "--num-fewshot",
        type=int,
        default=None,
        metavar="K",
        help="few-shot examples (default: the task's own)",
    )
    b.add_argument("--limit", type=int, default=None, metavar="N", help="first N documents only")
    b.add_argument(
        "--seed",
        type=int,
        default=1234,
        metavar="S",
        help="few-shot sampler seed (default 1234, lm-eval's fewshot_random_seed)",
    )
    b.add_argument(
        "--data-files",
        nargs="+",
        default=[],
        metavar="SPLIT=PATH",
        help="local dataset files, one per split the task reads",
    )
    b.add_argument(
        "--metric", default=None, help="0/1 metric (default: the task's first, e.g. acc)"
    )
    b.add_argument(
        "--filter",
        default=None,
        dest="filter_name",
        help="filter pipeline by name (default: the task's first, e.g. strict-match)",
    )
    b.add_argument(
        "--lm-eval-include",
        action="append",
        default=[],
        metavar="PATH",
        help="a directory of your own task YAML in lm-eval's format (lm-eval's include_path; "
        "repeatable; a task there overrides lm-eval's task of the same name)",
    )
    b.add_argument(
        "--fewshot-as-multiturn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="chat backends: each few-shot example a user/assistant turn (default; "
        "simple_evaluate's default with apply_chat_template), or all in one user turn",
    )
    b.add_argument("--out", required=True, help="output JSONL, or - for stdout")
    b.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from gemfinder.tasks.lmeval.build import build_query_set
    from gemfinder.tasks.lmeval.loading import include_paths, parse_data_files

    files = parse_data_files(args.data_files)
    not_an_input(args.out, "--out", *files.values())
    include = include_paths(args.lm_eval_include, "--lm-eval-include")
    # datasets draws a progress bar per split for a few milliseconds of work.
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    start = time.perf_counter()
    records = build_query_set(
        args.lm_eval_task,
        files,
        num_fewshot=args.num_fewshot,
        limit=args.limit,
        seed=args.seed,
        metric=args.metric,
        filter_name=args.filter_name,
        include=include,
        fewshot_as_multiturn=args.fewshot_as_multiturn,
    )
    try:
        lines = [json.dumps(r, ensure_ascii=False) for r in records]
    except TypeError as err:
        raise UserError("--data-files", f"a document is not JSON-serialisable: {err}") from None
    text = "".join(line + "\n" for line in lines)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        try:
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as err:
            raise UserError("--out", f"cannot write {args.out}: {err.strerror}") from None
    print(
        f"wrote {len(records)} {args.lm_eval_task} items "
        f"({records[0]['lm_eval']['num_fewshot']}-shot) to {args.out} "
        f"in {time.perf_counter() - start:.1f} s",
        file=sys.stderr,
    )
    return 0
