"""The `gemfinder` command. Each subcommand lives in its own module of this package.

A subcommand module defines `register(subparsers)`, which adds its parser and sets
`handler=<function(args) -> int>` as a default. Modules are discovered, so adding a
subcommand never touches this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as err:
        print(f"gemfinder {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gemfinder {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
