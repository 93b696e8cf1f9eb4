"""Loading query sets: JSONL, one item per line with `id`, `task` and the task's fields."""

from __future__ import annotations

from pathlib import Path

from gemfinder import bounded_json
from gemfinder.errors import UserError
from gemfinder.tasks.base import Item
from gemfinder.tasks.registry import TASKS


def parse_item(line: str, where: str) -> Item:
    """One JSONL line -> Item; raises UserError(where, reason) when it is not a valid item."""
    try:
        obj = bounded_json.loads(line)
    except bounded_json.BadJson as err:
        raise UserError(where, f"bad JSON: {err}") from None
    if not isinstance(obj, dict):
        raise UserError(where, "expected a JSON object")
    for key in ("id", "task"):
        if key not in obj or obj[key] in (None, ""):
            raise UserError(where, f"missing {key!r}")
    if not isinstance(obj["task"], str) or obj["task"] not in TASKS:
        known = ", ".join(sorted(TASKS))
        raise UserError(where, f"unknown task {obj['task']!r} (known: {known})")
    fields = {k: v for k, v in obj.items() if k not in ("id", "task")}
    item = Item(id=str(obj["id"]), task=obj["task"], fields=fields)
    reason = TASKS[item.task].validate(item)
    if reason:
        raise UserError(where, reason)
    return item


def load_query_set(path: str | Path) -> list[Item]:
    """All items of a JSONL query set, in file order; blank lines are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(str(path), f"cannot read query set: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise UserError(
            str(path), f"cannot read query set: not UTF-8 text (byte {err.start}); expected JSONL"
        ) from None
    items: list[Item] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        item = parse_item(line, where)
        if item.id in seen:
            raise UserError(where, f"duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = lineno
        items.append(item)
    if not items:
        raise UserError(str(path), "query set is empty")
    return items
