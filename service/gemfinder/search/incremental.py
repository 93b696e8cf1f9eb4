"""Incremental search: an earlier search's winners challenged by the models new since then.

A caller names a finished search of the same store (the parent) and gives the current tree as
candidates (e.g. a new `gemfinder discover`). `narrow` turns that request into an ordinary
search on a small pool: the parent's top `incumbents` still listed (its ranking: winner,
finalists, then by how late each was eliminated) and the candidates the lineage never listed.
It runs with the parent's seed, so with correlated sampling it reads the parent's item
permutation and the incumbents' first items are answers the evaluation cache already holds.

Budget (docs/search.md, Incremental search): the queries asked for the newcomers plus the
incumbents' graded answers (free), raised so that the last round reads as deep as the parent's
winner did (`_core.incremental_budget`; bench/studies/incremental.py measured why). Models of the
parent's top that left the tree are dropped (named in the result) and the next of its ranking
are kept instead. No gem check: the pool is not the tree, so "the most downloaded 1%" of it
means nothing.
"""

from __future__ import annotations

import math
from dataclasses import replace

from gemfinder import _core
from gemfinder.errors import UserError
from gemfinder.search.spec import SearchSpec
from gemfinder.search.values import Incremental

DEFAULT_INCUMBENTS = 8  # bench/studies/incremental.py (docs/results.md): k = 8 of {2, 4, 8, 16}
MAX_INCUMBENTS = 1000
FIELD = "spec.parent_search_id"


class ParentNotFound(UserError):
    kind = "not_found"


class ParentNotReady(UserError):
    """The parent has no final ranking yet (running) or will never have one (failed)."""

    kind = "failed_precondition"
    precondition = "PARENT_NOT_SUCCEEDED"


def check_incumbents(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INCUMBENTS:
        raise UserError(field, f"must be a whole number from 1 to {MAX_INCUMBENTS}, got {value!r}")
    return value


def narrow(store, spec: SearchSpec) -> SearchSpec:
    """The search `spec.ask` asks for, on the pool of incumbents and newcomers."""
    ask = spec.ask
    assert ask is not None
    row = store.get_search(ask.parent_search_id) if ask.parent_search_id else None
    if row is None:
        raise ParentNotFound(FIELD, f"no search with id {ask.parent_search_id!r} in this store")
    if row.state in ("pending", "running"):
        raise ParentNotReady(
            FIELD, f"search {row.id} is still {row.state}: start once it has succeeded"
        )
    if row.state != "succeeded" or row.result is None or not row.result.ranking:
        raise ParentNotReady(FIELD, f"search {row.id} {row.state} without a ranking to start from")
    parent = SearchSpec.from_dict(row.spec)
    if spec.seed not in (0, parent.seed):
        raise UserError(
            "spec.seed",
            f"an incremental search reads its parent's item order: leave it 0 or give the "
            f"parent's seed {parent.seed}, got {spec.seed}",
        )
    current = {c.model_id: c for c in spec.candidates}
    known = {c.model_id for c in parent.candidates}
    if parent.incremental is not None:
        known |= set(parent.incremental.known)
    kept, removed = [], []
    for est in row.result.ranking:
        if len(kept) == ask.incumbents:
            break
        (kept if est.model_id in current else removed).append(est)
    newcomers = [c for c in spec.candidates if c.model_id not in known]
    pool = [current[e.model_id] for e in kept] + newcomers
    if len(pool) < 2:
        raise UserError(
            "spec.candidates",
            f"{len(kept)} of search {row.id}'s top models listed and {len(newcomers)} new: "
            "an incremental search needs 2 models at least",
        )
    if ask.per_newcomer is None:
        asked = spec.budget
    else:
        asked = math.ceil(ask.per_newcomer * len(newcomers))
    free = sum(e.items_seen for e in kept)
    depth = kept[0].items_seen if kept else 0
    budget = _core.incremental_budget(
        spec.algorithm, len(pool), len(spec.items), asked + free, depth, spec.params or None
    )
    lineage = Incremental(
        parent_search_id=row.id,
        parent_winner_model_id=row.result.recommended_model_id,
        incumbents=tuple(e.model_id for e in kept),
        newcomers=tuple(c.model_id for c in newcomers),
        removed=tuple(e.model_id for e in removed),
        left_out=len(spec.candidates) - len(pool),
        known=tuple(sorted(known | set(current))),
    )
    narrowed = replace(
        spec,
        candidates=pool,
        budget=budget,
        seed=parent.seed,
        gem_check_share=0.0,
        ask=None,
        incremental=lineage,
    )
    narrowed.validate()
    return narrowed


def outcome(lineage: Incremental, recommended: str) -> Incremental:
    """The lineage as the result reports it: did the winner change?"""
    return replace(lineage, winner_changed=recommended != lineage.parent_winner_model_id)
