"""`gemfinder export`: a search's samples log as JSONL, from a store (docs/results-export.md).

The first line is the search's provenance (spec, seed, algorithm, versions, lock hashes, git
commit); then one line per graded query in candidate order, then item order: prompt hash, raw
response, extracted answer, grade, whether it came from the evaluation cache. The store is the
one the search ran in: `gemfinder search --store FILE`, or a server's --db (a SQLite file or a
postgresql:// URL). SEARCH_ID is the search's id or the request id it was started with
(default: the newest search in the store), as for `gemfinder report`.

Exit status: 0; 2 for a store that cannot be opened or a search it does not hold.
"""

from __future__ import annotations

import argparse
import sys

from gemfinder import samples
from gemfinder.cli._args import require_store, stored_search, subcommand
from gemfinder.cli.report import find
from gemfinder.outputs import not_an_input
from gemfinder.store import open_store


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subcommand(subparsers, "export", "a search's samples log and provenance as JSONL",
                   __doc__, run)  # fmt: skip
    stored_search(p, "the store: a SQLite file (gemfinder search --store) or a postgresql:// "
                  "URL (gemfinder serve --db)")  # fmt: skip
    p.add_argument("--out", help="write here instead of stdout")


def run(args: argparse.Namespace) -> int:
    require_store(args.db, "no store at")  # never create an empty one
    store = open_store(args.db, option="--db")
    try:
        row = find(store, args.search_id)  # as `gemfinder report` finds it
        not_an_input(args.out, "--out", args.db)
        out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
        try:
            for line in samples.export(store, row.id):
                out.write(samples.dumps(line) + "\n")
        finally:
            if args.out:
                out.close()
    finally:
        store.close()
    return 0
