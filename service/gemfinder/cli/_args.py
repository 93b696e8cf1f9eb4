"""What the subcommands' argument parsing shares (a module of the package, not a subcommand: its
name starts with `_`): a subcommand's parser, documented by its module's docstring; a stored
search named by SEARCH_ID in the store --db; and repeatable NAME=number options."""

from __future__ import annotations

import argparse
from pathlib import Path

from gemfinder.errors import UserError


def subcommand(
    subparsers: argparse._SubParsersAction, name: str, help: str, doc: str | None, handler=None
) -> argparse.ArgumentParser:
    """The parser of `gemfinder NAME`, whose --help prints `doc` (the module's docstring) as it
    is written, and which runs `handler(args)` (unless a sub-action of it sets one)."""
    parser = subparsers.add_parser(
        name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def stored_search(parser: argparse.ArgumentParser, db_help: str) -> None:
    """SEARCH_ID and --db (or --store): the search `report.find` looks up, and its store."""
    parser.add_argument("search_id", nargs="?", metavar="SEARCH_ID",
                        help="search id or request id (default: the newest search)")  # fmt: skip
    parser.add_argument("--db", "--store", dest="db", required=True, help=db_help)


def require_store(db: str, missing: str) -> None:
    """Refuse a store file that is not there (opening one would create it empty): UserError
    "--db: `missing` `db`"; a postgresql:// URL is the server's to refuse."""
    if not db.startswith(("postgresql://", "postgres://")) and not Path(db).is_file():
        raise UserError("--db", f"{missing} {db}")


def numbers_by_name(pairs: list[str], option: str, name: str) -> dict[str, float]:
    """`NAME=number` arguments of a repeatable option as a dict (a later NAME wins); anything
    else is a UserError naming `option`."""
    out: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise UserError(option, f"expected {name}=number, got {pair!r}")
    return out
