"""The hidden-gem verdict: is the winner strictly better than every one of the most popular?

Published definition: a hidden gem is not among the most downloaded 1% of the pool and is
strictly better than every one of them. A search sees each model on a sample of items, so
"strictly better" is judged on paired evidence: for each popular model, only the items both it
and the winner were graded on in this search count (correlated sampling makes models share
items), and the winner must win a one-sided exact sign test (McNemar) at 5% on the items where
the two disagree. Comparing point estimates instead would let a popular model eliminated early
on a few lucky items veto a real gem, or an unlucky one crown a false one.

Verdicts: `hidden_gem` (beats every popular model), `not_a_gem` (the winner is itself popular, or
some popular model is significantly better on the shared items), `undetermined` (too little
shared evidence either way), `no_popularity` (no candidate has downloads).
"""

from __future__ import annotations

import math

from gemfinder.search.spec import SearchSpec
from gemfinder.search.values import Paired

TOP_SHARE = 0.01
ALPHA = 0.05
EXACT_UP_TO = 1000  # discordant items; above it the normal approximation is within 1e-3
HIDDEN_GEM, NOT_A_GEM, UNDETERMINED, NO_POPULARITY = (
    "hidden_gem",
    "not_a_gem",
    "undetermined",
    "no_popularity",
)


def most_downloaded(spec: SearchSpec) -> list[int]:
    """Indices of the most downloaded 1% of candidates (at least one); [] without downloads."""
    if all(c.downloads is None for c in spec.candidates):
        return []
    k = max(1, math.ceil(TOP_SHARE * len(spec.candidates)))
    order = sorted(
        range(len(spec.candidates)), key=lambda i: (-(spec.candidates[i].downloads or 0.0), i)
    )
    return order[:k]


def sign_test(wins: int, losses: int) -> float:
    """P(X >= wins) for X ~ Binomial(wins + losses, 1/2): one-sided p-value of 'wins > losses'."""
    n = wins + losses
    if n == 0:
        return 1.0
    if n <= EXACT_UP_TO:
        return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n
    z = (wins - 0.5 - n / 2) / math.sqrt(n / 4)
    return 0.5 * math.erfc(z / math.sqrt(2))


def paired(spec, winner: int, other: int, outcomes: dict[int, dict[int, int]]) -> Paired:
    mine, theirs = outcomes.get(winner, {}), outcomes.get(other, {})
    shared = mine.keys() & theirs.keys()
    wins = sum(1 for i in shared if mine[i] > theirs[i])
    losses = sum(1 for i in shared if mine[i] < theirs[i])
    return Paired(
        spec.candidates[other].model_id, len(shared), wins, losses, sign_test(wins, losses)
    )


def verdict(
    spec: SearchSpec, winner: int, outcomes: dict[int, dict[int, int]]
) -> tuple[str, list[Paired]]:
    """(verdict, paired comparisons with each popular model) for the winner of a search."""
    top = most_downloaded(spec)
    if not top:
        return NO_POPULARITY, []
    pairs = [paired(spec, winner, t, outcomes) for t in top if t != winner]
    if winner in top:
        return NOT_A_GEM, pairs
    if all(p.p_value < ALPHA for p in pairs):
        return HIDDEN_GEM, pairs
    if any(sign_test(p.other_only_correct, p.winner_only_correct) < ALPHA for p in pairs):
        return NOT_A_GEM, pairs
    return UNDETERMINED, pairs
