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
from pathlib import Path

from gemfinder import samples
from gemfinder.cli.report import find
from gemfinder.errors import UserError
from gemfinder.outputs import not_an_input
from gemfinder.store import open_store


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="a search's samples log and provenance as JSONL",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("search_id", nargs="?", metavar="SEARCH_ID",
                   help="search id or request id (default: the newest search)")  # fmt: skip
    p.add_argument("--db", "--store", dest="db", required=True, help="the store: a SQLite "
                   "file (gemfinder search --store) or a postgresql:// URL (gemfinder serve "
                   "--db)")  # fmt: skip
    p.add_argument("--out", help="write here instead of stdout")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not args.db.startswith(("postgresql://", "postgres://")) and not Path(args.db).is_file():
        raise UserError("--db", f"no store at {args.db}")  # never create an empty one
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
