"""`gemfinder report [SEARCH_ID] --db FILE [--html FILE]`: the report of a stored search.

Reads the search from the database a server (`gemfinder serve --db`) or a local search
(`gemfinder search --store`) wrote; SEARCH_ID is its id or the request id it was started with
(default: the newest search in the database). Prints what `gemfinder search` prints (the
ranking, the gem verdict, the serving cost and the certificate when it has them); with
--html, also writes the report as one self-contained HTML page (figures inline, nothing
fetched; needs matplotlib, the `report` extra).

Exit status: 0 with a report; 1 when the search has no result (still running, failed); 2 for
bad input (no such database or search).
"""

from __future__ import annotations

import argparse
import sys

from gemfinder import report
from gemfinder.cli._args import require_store, stored_search, subcommand
from gemfinder.errors import UserError
from gemfinder.outputs import not_an_input
from gemfinder.report_html import check_target, write_report
from gemfinder.store import SearchRow, open_store


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subcommand(subparsers, "report", "report a stored search: ranking and gem verdict, or "
                   "an HTML page (--html)", __doc__, run)  # fmt: skip
    stored_search(p, "the SQLite file or postgresql:// URL holding the search")
    p.add_argument("--html", metavar="FILE", help="write the HTML report here")
    p.add_argument("--top", type=int, default=10, help="rows of the ranking to print")


def find(store, search_id: str | None) -> SearchRow:
    """The search by id, else by request id, else (no id) the newest; a UserError naming
    what is there when it is not found."""
    if search_id:
        row = store.get_search(search_id) or store.find_request(search_id)
        if row is not None:
            return row
    newest = store.list_searches(limit=5)
    if not search_id and newest:
        return newest[0]
    known = ", ".join(r.id for r in newest) or "none"
    field = "SEARCH_ID" if search_id else "--db"
    reason = f"no search {search_id!r}" if search_id else "holds no search"
    raise UserError(field, f"{reason} (newest in the database: {known})")


def run(args: argparse.Namespace) -> int:
    require_store(args.db, "no database file")  # open_store would create one
    if args.html:
        check_target(args.html, "--html")  # before any work
        not_an_input(args.html, "--html", args.db)
    store = open_store(args.db, option="--db")
    try:
        row = find(store, args.search_id)
    finally:
        store.close()
    if row.result is None:
        print(f"gemfinder report: search {row.id} is {row.state} and has no result"
              + (f": {row.error}" if row.error else ""), file=sys.stderr)  # fmt: skip
        return 1
    if args.html:
        write_report(args.html, row.result, row.spec, "--html", search_id=row.id)
    print(f"search {row.id} ({row.state})")
    print(report.text_report(row.result, top=args.top))
    if args.html:
        print(f"\nwrote {args.html}")
    return 0
