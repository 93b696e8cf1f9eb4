"""The gem check: after a search, the most downloaded 1% answer items the winner was graded on.

Correlated search drops a popular model as soon as it falls behind, often after a few dozen
items, so the winner and the popular models share too few items for the hidden-gem verdict
(search.gem) to say anything, and the popular model's estimate rests on those few items. The
check spends the share of the budget the spec kept back (SearchSpec.gem_check_reserve): each
popular model other than the winner is asked the same items of the winner's, in an order fixed
by the seed, up to an equal part of the reserve; items it already answered cost nothing.

The plan depends only on the finished search (the winner's items and the seed), so a search
resumed after a crash makes the same plan, and the evaluation cache makes answers already paid
for free. What the check spent is measured from the stored outcomes, not counted, for the same
reason.
"""

from __future__ import annotations

import random

from gemfinder.search.gem import most_downloaded
from gemfinder.search.spec import SearchSpec


def plan(
    spec: SearchSpec, winner: int, outcomes: dict[int, dict[int, int]]
) -> dict[int, list[int]]:
    """{popular model: items to ask it}; empty when the winner is popular or nothing is kept."""
    popular = most_downloaded(spec)
    reserve = spec.gem_check_reserve
    if not popular or reserve <= 0 or winner in popular:
        return {}
    shared = sorted(outcomes.get(winner, {}))
    random.Random(f"gem-check:{spec.seed}").shuffle(shared)
    out = {}
    for rank, model in enumerate(popular):
        quota = reserve // len(popular) + (rank < reserve % len(popular))
        seen = outcomes.get(model, {})
        out[model] = [item for item in shared[:quota] if item not in seen]
    return out


def spent(items_seen_in_search: dict[int, int], outcomes: dict[int, dict[int, int]]) -> int:
    """Queries the check spent: what the popular models (the keys of `items_seen_in_search`)
    answered beyond what the search gave them."""
    return sum(max(0, len(outcomes.get(m, {})) - seen) for m, seen in items_seen_in_search.items())
