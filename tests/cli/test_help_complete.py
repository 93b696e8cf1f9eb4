"""`gemfinder COMMAND --help` describes every flag: a flag listed with no text (as `search
--seed` and `plan --prior-strength` were) leaves a new user guessing."""

from __future__ import annotations

import argparse

from gemfinder.cli import build_parser


def _parsers(parser: argparse.ArgumentParser, name: str = "gemfinder"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_flag_of_every_command_has_help_text():
    bare = [
        f"{name} {action.option_strings[-1]}"
        for name, parser in _parsers(build_parser())
        for action in parser._actions
        if action.option_strings and action.help != argparse.SUPPRESS
        and not (action.help or "").strip()
    ]  # fmt: skip
    assert bare == []
