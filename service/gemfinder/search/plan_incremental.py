"""The plan of an incremental search (`SearchSpec.ask`): the pool it runs on, and the answers
it will find in the evaluation cache, read from the store (docs/service.md "Planning a search").

A start narrows an incremental spec to the parent's top models still listed (the incumbents)
and the newcomers, with the parent's seed (search.incremental.narrow), so the incumbents read
the parent's item order and their first items are answers the evaluation cache holds: the
runner tells them without a query, a load or a GPU-second. A plan narrows the spec the same way
(refused with the same statuses) and its simulated searches, which read the same item order,
look the incumbents' pulls up in the cache under the keys the search will use, as the runner
does (the parent's pulls themselves are dropped when it ends; its answers stay in the cache).
Only the incumbents' pulls are looked up, each cell once over all the trials (they all read the
one item order, so at most the plan's budget of cells): a newcomer's answers cached by another
search are not in the plan, and a pool above the plan's MAX_CELLS, simulated on fewer items,
reads another order and finds fewer of them.

The lookups read the store: callers on an event loop run the narrowing and the plan on worker
threads (Store.off_loop, asyncio.to_thread), as a start narrows.
"""

from __future__ import annotations

from typing import Any

from gemfinder.search import incremental
from gemfinder.search.runner import cache_keys
from gemfinder.search.spec import SearchSpec

Cell = tuple[int, int]  # (model, item) of the narrowed spec


class ParentAnswers:
    """The evaluation cache as the runner reads it, for the incumbents' pulls: called with a
    batch of pulls, {(model, item): reward} of those cached. One store call per batch with new
    cells; a cell already looked up (in an earlier trial) is not looked up again."""

    def __init__(self, store: Any, spec: SearchSpec, oracle: Any) -> None:
        lineage = spec.incremental
        assert lineage is not None, "a narrowed incremental spec"
        kept = set(lineage.incumbents)
        self._incumbents = {k for k, c in enumerate(spec.candidates) if c.model_id in kept}
        self._store = store
        self._keys = cache_keys(spec, oracle)
        self._known: dict[Cell, int | None] = {}

    def __call__(self, pulls: list[Cell]) -> dict[Cell, int]:
        new = [p for p in pulls if p[0] in self._incumbents and p not in self._known]
        if new:
            keys = [self._keys(model, item) for model, item in new]
            found = self._store.cached_many(keys)
            for cell, key in zip(new, keys, strict=True):
                self._known[cell] = found.get(key)
        known = self._known
        return {p: r for p in pulls if (r := known.get(p)) is not None}


def narrowed(store: Any, spec: SearchSpec, oracle: Any) -> tuple[SearchSpec, ParentAnswers]:
    """The spec a start of `spec` runs (its pool, budget and seed) and its cache lookup
    (`oracle`: the one the search would run with, whose cache scopes make the keys)."""
    run = incremental.narrow(store, spec)
    return run, ParentAnswers(store, run, oracle)
