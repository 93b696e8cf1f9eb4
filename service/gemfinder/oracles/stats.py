"""Event counters of the oracle layer, with hooks so the metrics module can mirror them.

Events: `pull` (one answer() call), `attempt`, `attempt_failed` (by kind), `retry` (by kind),
`pull_failed` (by kind), `graded`, `correct`. Kinds are FailureKind values: a bounded set.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

log = logging.getLogger(__name__)
Hook = Callable[[str, str | None], None]


class OracleStats:
    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.by_kind: Counter[tuple[str, str]] = Counter()
        self._hooks: list[Hook] = []

    def add_hook(self, hook: Hook) -> None:
        """`hook(event, kind)` runs on every event; its exceptions are logged, not raised."""
        self._hooks.append(hook)

    def record(self, event: str, kind: str | None = None) -> None:
        self.events[event] += 1
        if kind is not None:
            self.by_kind[(event, kind)] += 1
        for hook in self._hooks:
            try:
                hook(event, kind)
            except Exception:  # a metrics bug must not fail a pull
                log.exception("oracle stats hook failed")

    def count(self, event: str, kind: str | None = None) -> int:
        return self.events[event] if kind is None else self.by_kind[(event, kind)]

    def snapshot(self) -> dict[str, int]:
        out = dict(self.events)
        out.update({f"{event}:{kind}": n for (event, kind), n in self.by_kind.items()})
        return out
