"""The HTML report of a search (`gemfinder report SEARCH_ID --html FILE`, `gemfinder search
--report FILE`, `gemfinder demo --report FILE`): one self-contained static page with the paper's
picture (estimated accuracy with intervals against downloads), per-task panels when given, the
queries spent per round (and the serving cost), and the gem verdict in words with the
certificate and, for an incremental search, its parent when the result has them.

Needs matplotlib (the `report` extra): `check_target` turns its absence (or a file that cannot
be written) into a UserError naming the option before any work, so a search is not run for a
report that cannot be written, and the commands that only print text work without matplotlib.

rounds.py derives queries per round from the estimates; figures.py draws; page.py writes the
HTML and escapes everything a search's caller or a model's publisher chose.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from gemfinder.errors import UserError
from gemfinder.search.values import Result


def check_target(path: str | Path, option: str) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise UserError(option, "the HTML report needs matplotlib: pip install 'gemfinder[report]'")
    target = Path(path)
    if target.is_dir():
        raise UserError(option, f"{path} is a directory; give a file name")
    if not target.parent.is_dir():
        raise UserError(option, f"cannot write {path}: no directory {target.parent}")


def write_report(path: str | Path, result: Result, spec: dict[str, Any] | None, option: str,
                 **kwargs: Any) -> None:  # fmt: skip
    """Build the page (page.build_html's keyword arguments pass through) and write it to
    `path`; a path that cannot be written is a UserError naming `option`."""
    check_target(path, option)
    from gemfinder.report_html.page import build_html  # matplotlib is imported from here on

    text = build_html(result, spec, **kwargs)
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as err:
        raise UserError(option, f"cannot write {path}: {err.strerror}") from None
