"""`gemfinder export`: a search's samples log as JSONL, from a store (docs/results-export.md).

The first line is the search's provenance (spec, seed, algorithm, versions, lock hashes, git
commit); then one line per graded query in candidate order, then item order: prompt hash, raw
response, extracted answer, grade, whether it came from the evaluation cache. The store is the
one the search ran in: `gemfinder search --store FILE`, or a server's --db (a SQLite file or a
postgresql:// URL). Without SEARCH_ID: the newest search in the store.

Exit status: 0; 2 for a store that cannot be opened or a search it does not hold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gemfinder import samples
from gemfinder.errors import UserError
from gemfinder.search.manager import SearchNotFound
from gemfinder.store import open_store


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="a search's samples log and provenance as JSONL",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("search_id", nargs="?", metavar="SEARCH_ID", help="default: the newest search")
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
        search_id = args.search_id
        if not search_id:
            newest = store.list_searches(1)
            if not newest:
                raise UserError("SEARCH_ID", f"the store {args.db} holds no search")
            search_id = newest[0].id
        try:
            lines = samples.export(store, search_id)
            first = next(lines)
        except SearchNotFound:
            raise UserError("SEARCH_ID", f"no search {search_id!r} in {args.db}") from None
        out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
        try:
            out.write(samples.dumps(first) + "\n")
            for line in lines:
                out.write(samples.dumps(line) + "\n")
        finally:
            if args.out:
                out.close()
    finally:
        store.close()
    return 0
