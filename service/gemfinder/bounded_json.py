"""JSON from callers, parsed with a bound on nesting depth and without NaN or Infinity.

`json.loads` of a document nested 100,000 deep raises RecursionError, which the service reported
as an internal error; a shallower but still deep document would be stored and walked again by
every later dump. Item fields and page tokens need a few levels, so MAX_DEPTH leaves room.
NaN and Infinity are not JSON (RFC 8259) and have no meaning in an item or a token.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32


class BadJson(ValueError):
    """Text that is not acceptable JSON; the message says why (for a UserError's reason)."""


def _no_constant(name: str) -> Any:
    raise BadJson(f"{name} is not valid JSON (RFC 8259 has no NaN or Infinity)")


def _depth(value: Any) -> int:
    """Nesting depth of a parsed document (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in node)
    return deepest


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, raising BadJson for invalid JSON (its message), NaN/Infinity, or nesting
    deeper than `max_depth` lists and objects."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise BadJson(f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as err:
        raise BadJson(f"invalid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except UnicodeDecodeError:
        raise BadJson("not UTF-8 text") from None
    if _depth(value) > max_depth:
        raise BadJson(f"nested deeper than {max_depth} levels")
    return value
