"""The hidden-gem verdict: paired sign tests on shared items, not point estimates."""

from __future__ import annotations

import math

import pytest
from gemfinder import report
from gemfinder.candidates import Candidate
from gemfinder.search import gem
from gemfinder.search.spec import SearchSpec
from gemfinder.search.values import Result
from gemfinder.server.convert import result_from_proto, result_to_proto
from gemfinder.store import Store
from gemfinder.v1 import gemfinder_pb2 as pb

from tests.fleet_support import make_items

POPULAR, WINNER = 0, 1


def spec(downloads=(1e6, 5.0, 10.0)) -> SearchSpec:
    candidates = [
        Candidate(f"m{k}", f"http://h{k}:80", downloads=d) for k, d in enumerate(downloads)
    ]
    return SearchSpec(candidates, make_items(2, tasks=("mmlu",)), budget=30)


def answers(*rewards: int, start: int = 0) -> dict[int, int]:
    return {start + i: r for i, r in enumerate(rewards)}


def test_sign_test_exact_and_approximate():
    assert gem.sign_test(5, 0) == 1 / 32
    assert gem.sign_test(0, 0) == 1.0
    assert gem.sign_test(3, 3) == pytest.approx(42 / 64)
    exact = sum(math.comb(1001, k) for k in range(530, 1002)) / 2**1001
    assert gem.sign_test(530, 471) == pytest.approx(exact, abs=1e-3)


def test_popular_model_eliminated_early_on_lucky_items_cannot_veto():
    # Point estimates: popular 3/3 = 1.0 beats the winner's 45/50 = 0.9 (the old rule's veto).
    outcomes = {WINNER: answers(*([1] * 45 + [0] * 5)), POPULAR: answers(1, 1, 1, start=47)}
    verdict, (pair,) = gem.verdict(spec(), WINNER, outcomes)
    assert verdict == gem.UNDETERMINED
    assert pair.shared_items == 3 and pair.other_only_correct == 3


def test_popular_model_eliminated_early_on_unlucky_items_cannot_crown():
    # Point estimates: the winner 0.9 beats the popular 0/2 (the old rule's false gem).
    outcomes = {WINNER: answers(*([1] * 45 + [0] * 5)), POPULAR: answers(0, 0)}
    assert gem.verdict(spec(), WINNER, outcomes)[0] == gem.UNDETERMINED


def test_clear_gem_on_shared_items():
    outcomes = {WINNER: answers(*([1] * 30)), POPULAR: answers(*([1, 0] * 15))}
    verdict, (pair,) = gem.verdict(spec(), WINNER, outcomes)
    assert verdict == gem.HIDDEN_GEM
    assert (pair.winner_only_correct, pair.other_only_correct) == (15, 0)
    assert pair.model_id == "m0" and pair.p_value < gem.ALPHA


def test_popular_winner_or_better_popular_is_not_a_gem():
    outcomes = {WINNER: answers(*([1, 0] * 15)), POPULAR: answers(*([1] * 30))}
    assert gem.verdict(spec(), WINNER, outcomes)[0] == gem.NOT_A_GEM
    assert gem.verdict(spec(), POPULAR, outcomes)[0] == gem.NOT_A_GEM


def test_every_one_of_the_top_percent_must_be_beaten():
    pool = spec(downloads=[1e6, 9e5] + [1.0] * 150)  # 152 candidates: the top 1% is 2 models
    assert gem.most_downloaded(pool) == [0, 1]
    outcomes = {
        5: answers(*([1] * 30)),
        0: answers(*([0] * 30)),
        1: answers(*([1] * 29 + [0])),  # the second popular model is as good: no gem
    }
    assert gem.verdict(pool, 5, outcomes)[0] == gem.UNDETERMINED


def test_no_downloads_no_verdict():
    assert gem.verdict(spec(downloads=(None, None, None)), WINNER, {}) == (gem.NO_POPULARITY, [])


def test_store_keeps_pulls_once_per_search():
    store = Store()
    store.create_search("s", None, {})
    store.put_answers("s", [("k1", 0, 3, 1), ("k2", 1, 3, 0)])
    store.put_answers("s", [("k1", 0, 3, 1)])  # re-told after a resume
    assert store.outcomes("s", [0, 1, 2]) == {0: {3: 1}, 1: {3: 0}, 2: {}}
    assert store.count_evals() == 2
    store.drop_pulls("s")  # once the search has ended: the cache stays
    assert store.outcomes("s", [0, 1]) == {0: {}, 1: {}}
    assert store.count_evals() == 2


def test_verdict_and_evidence_reach_the_proto_and_the_report():
    verdict, evidence = gem.verdict(
        spec(), WINNER, {WINNER: answers(*([1] * 30)), POPULAR: answers(*([0] * 30))}
    )
    est = {"model_id": "m1", "rank": 1, "accuracy": 1.0, "lower": 0.9, "upper": 1.0}
    est |= {"items_seen": 30, "successes": 30, "eliminated_in_round": 0, "downloads": 5.0}
    result = {
        "recommended_model_id": "m1",
        "ranking": [est],
        "queries_spent": 60,
        "queries_failed": 0,
        "queries_cached": 0,
        "exhaustive_queries": 6,
        "elapsed_s": 1.0,
        "winner": est,
        "most_popular": {**est, "model_id": "m0", "downloads": 1e6},
        "hidden_gem": verdict == gem.HIDDEN_GEM,
        "gem_verdict": verdict,
        "gem_evidence": [pair.to_json() for pair in evidence],
    }
    msg = result_to_proto(Result.from_json(result))
    assert msg.gem_verdict == pb.GEM_VERDICT_HIDDEN_GEM and msg.hidden_gem
    assert msg.gem_evidence[0].winner_only_correct == 30
    received = result_from_proto(msg)
    assert report.gem_report(received) == report.gem_report(Result.from_json(result))
    assert "is a hidden gem" in report.gem_report(received)
