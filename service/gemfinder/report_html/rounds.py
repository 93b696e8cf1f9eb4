"""Queries per round of a finished search, derived from its estimates.

The store keeps a search's last progress and last snapshot, not a per-round log, and drops its
pulls once the result is stored; so the rounds are reconstructed from what every estimate keeps:
the round a model was eliminated in and how many items it was graded on. Round-based algorithms
give every survivor of a round the same number of fresh items, so the models eliminated in round
r were graded on c_r items in all, and a model alive in round r answered min(seen, c_r) -
min(seen, c_{r-1}) of them there. c_r is the most common count among the models eliminated in r:
a model the gem check asked again (the winner, the most downloaded) has more, and one with failed
queries fewer. The last round takes the rest of the search's graded answers, so the rounds add
up to exactly the answers graded by the search (the gem check's are its own line, not a round).
A round in which no model was eliminated has no c_r: it is merged into the next one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gemfinder.search.values import Result


@dataclass(frozen=True)
class Round:
    first: int  # 1-based; first < last when rounds without an elimination were merged in
    last: int
    survivors: int  # models graded in the round (alive at its start, given an item)
    queries: int  # graded answers in the round

    @property
    def label(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


def queries_per_round(result: Result) -> list[Round]:
    """The search's rounds, oldest first; [] for an algorithm without rounds (no model was
    eliminated in a round) or a result without estimates."""
    ranking = result.ranking
    last = max((e.eliminated_in_round for e in ranking), default=0)
    if last == 0:
        return []
    exits = [e.eliminated_in_round or last for e in ranking]
    seen = [e.items_seen for e in ranking]
    graded = sum(seen) - result.gem_check_queries  # the search's own answers
    rounds: list[Round] = []
    done = 0  # answers attributed to earlier rounds
    before = 0  # c_{r-1}: items each survivor had been graded on before this round
    first = 1
    for r in range(1, last + 1):
        counts = Counter(s for s, x in zip(seen, exits, strict=True) if x == r)
        if r < last and not counts:
            continue  # nobody left here: this round's count is unknown, merged into the next
        alive = [s for s, x in zip(seen, exits, strict=True) if x >= first and s > before]
        if r < last:
            upto = counts.most_common(1)[0][0]
            queries = sum(min(s, upto) - min(s, before) for s in alive)
            before = upto
        else:
            queries = max(graded - done, 0)
        rounds.append(Round(first=first, last=r, survivors=len(alive), queries=queries))
        done += queries
        first = r + 1
    return rounds
