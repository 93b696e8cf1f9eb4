"""The `gemfinder` command. Each subcommand lives in its own module of this package.

A subcommand module defines `register(subparsers)`, which adds its parser and sets
`handler=<function(args) -> int>` as a default (`_args.subcommand` does both, its module's
docstring as the --help text). Modules are discovered, so adding a subcommand never touches this
file; modules whose names start with `_` are the subcommands' shared parts, not subcommands.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import select
import sqlite3
import sys

from gemfinder import __version__
from gemfinder.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gemfinder",
        description="Find the best fine-tuned model in a model tree under a fixed query budget.",
    )
    parser.add_argument("--version", action="version", version=f"gemfinder {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer `head` closed on


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # argparse ignores a closed stdout on --help
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a closed pipe must fail here, not at interpreter exit
        return code
    except BrokenPipeError as err:
        if not _stdout_gone():
            print(f"gemfinder {args.command}: error: {err}", file=sys.stderr)
            return 1
        return _stdout_closed()
    except UserError as err:
        print(f"gemfinder {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gemfinder {args.command}: interrupted", file=sys.stderr)
        return 130
    except sqlite3.DatabaseError as err:
        if isinstance(err, sqlite3.OperationalError):  # locked, I/O: not the file's content
            raise
        # open_store checks a file's header; damage inside shows only when a page is read.
        flag = "--db" if getattr(args, "db", None) else "--store"
        print(f"gemfinder {args.command}: error: {flag}: the SQLite file is damaged ({err}); "
              "restore it from a copy or give a new file", file=sys.stderr)  # fmt: skip
        return 2


def _stdout_gone() -> bool:
    """True when stdout is a pipe whose reader has closed (or cannot be checked): only then is
    a BrokenPipeError the reader's doing rather than, say, a socket of our own."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no fd (captured) or no poll (Windows)
        return True


def _stdout_closed() -> int:
    """The reader of stdout went away (`gemfinder ... | head`): stop quietly, as `cat` does.

    Python's documented recipe (signal module, "Note on SIGPIPE"): point stdout at devnull so
    the flush at interpreter exit does not raise a second BrokenPipeError.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced by an object without a fd
        pass
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
