"""An incremental search's spec survives the store (resume) and names one search."""

from __future__ import annotations

from gemfinder.candidates import Candidate
from gemfinder.search.spec import IncrementalAsk, SearchSpec
from gemfinder.search.values import Incremental

from tests.fleet_support import make_items


def _spec(**fields) -> SearchSpec:
    items = make_items(2, tasks=("arc_challenge",))
    candidates = [Candidate(f"m{i}", "http://e.invalid", adapter_id=f"a{i}") for i in range(3)]
    return SearchSpec(candidates=candidates, items=items, budget=30, **fields)


def test_ask_and_lineage_round_trip_and_change_the_digest():
    plain = _spec()
    asked = _spec(ask=IncrementalAsk("p1", 8, 20.0))
    lineage = Incremental("p1", "m0", incumbents=("m0",), newcomers=("m2",), known=("m0", "m1"))
    narrowed = _spec(incremental=lineage)
    digests = {s.digest() for s in (plain, asked, narrowed)}
    assert len(digests) == 3  # a plain search, a request and its narrowed search differ
    for spec in (asked, narrowed):
        back = SearchSpec.from_dict(spec.to_dict())
        assert back.ask == spec.ask and back.incremental == spec.incremental
        assert back.digest() == spec.digest()
    # Specs stored before incremental searches existed keep their digest.
    assert "incremental" not in plain.to_dict() and "incremental_ask" not in plain.to_dict()
