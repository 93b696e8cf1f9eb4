"""Searches that cannot give a meaningful recommendation fail, saying why; nothing is NaN.

A search fails (state failed, ABORTED from SelectBestModel, exit 1 from `gemfinder search`)
when more queries fail than its budget, when the recommended model has no graded answer, or
when it leads only because failures hid part of its answers. Unseen models are estimated at 0
on 0 items, and every result is strict JSON.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from gemfinder import metrics, report
from gemfinder.candidates import Candidate
from gemfinder.oracles import OracleResult
from gemfinder.oracles.base import FailureKind
from gemfinder.search.manager import SearchManager
from gemfinder.search.runner import SearchFailed, SearchRunner
from gemfinder.search.spec import CacheKeys, SearchSpec
from gemfinder.search.values import Result
from gemfinder.server.convert import result_to_proto
from gemfinder.store import Store

from tests.fleet_support import make_items

DEAD, DEAD2 = "http://127.0.0.1:1", "http://127.0.0.1:2"


class ScriptedOracle:
    """Model `m<k>` answers item i right when `right(k, i)`; models on DEAD endpoints fail
    every query (connection refused), as a stopped server does."""

    dead = (DEAD, DEAD2)

    def __init__(self, right=lambda k, i: True) -> None:
        self.right = right
        self.asked = 0

    async def prepare(self, candidates) -> None:
        pass

    async def release(self, candidates) -> None:
        pass

    async def answer(self, candidate, item, *, system_prompt: bool = False) -> OracleResult:
        self.asked += 1
        await asyncio.sleep(0)
        if candidate.endpoint in self.dead:
            return OracleResult(candidate.model_id, item.id, None, FailureKind.CONNECTION)
        k, i = int(candidate.model_id[1:]), int(item.id.rsplit("/", 1)[-1])
        return OracleResult(candidate.model_id, item.id, int(self.right(k, i)))

    async def aclose(self) -> None:
        pass


def items(n: int = 8):
    return make_items(n, tasks=("mmlu",))


def finished(row) -> bool:
    return row.state not in ("pending", "running")


async def wait_ended(store: Store, search_id: str):
    for _ in range(1000):
        row = store.get_search(search_id)
        if finished(row):
            return row
        await asyncio.sleep(0.01)
    raise AssertionError("the search did not end")


async def test_every_endpoint_down_fails_within_the_budget_naming_the_endpoints():
    cands = [Candidate("org/g1", DEAD), Candidate("org/g2", DEAD2)]
    spec = SearchSpec(cands, items(), budget=6)
    store = Store()
    store.create_search("s", None, spec.to_dict())
    runner = SearchRunner("s", spec, ScriptedOracle(), store)
    with pytest.raises(SearchFailed) as err:
        await runner.run()
    message = str(err.value)
    assert DEAD in message and DEAD2 in message, message
    assert "connection" in message
    # Failed queries are given back, so retries could go on: the search stops once failures
    # pass its budget (queries in flight then may add a few).
    assert spec.budget < runner.sched.failed <= 2 * spec.budget


async def test_a_failed_search_is_recorded_and_counted_as_failed():
    cands = [Candidate(f"m{k}", DEAD) for k in range(3)]
    store = Store()
    manager = SearchManager(store, ScriptedOracle())
    failed = metrics.SEARCHES_FINISHED.labels("failed")._value.get()
    succeeded = metrics.SEARCHES_FINISHED.labels("succeeded")._value.get()
    row = await manager.start(SearchSpec(cands, items(), budget=9))
    ended = await wait_ended(store, row.id)
    await manager.close()
    assert ended.state == "failed" and ended.result is None
    assert DEAD in ended.error and "failed queries" in ended.error
    assert 9 < ended.progress.failed <= 18  # the cap, not three tries of everything
    assert metrics.SEARCHES_FINISHED.labels("failed")._value.get() == failed + 1
    assert metrics.SEARCHES_FINISHED.labels("succeeded")._value.get() == succeeded


async def test_a_winner_without_a_graded_answer_fails():
    """Priors can rank an unseen model first; with no graded answer it is no recommendation."""
    cands = [Candidate("m0", DEAD, prior_score=0.99)]
    cands += [Candidate(f"m{k}", f"http://live:80/{k}", prior_score=0.1) for k in range(1, 8)]
    spec = SearchSpec(cands, items(20), budget=80, prior_strength=1000.0)
    store = Store()
    store.create_search("s", None, spec.to_dict())
    with pytest.raises(SearchFailed, match="m0 has no graded answer"):
        await SearchRunner("s", spec, ScriptedOracle(lambda k, i: i % 4 == 0), store).run()


def seed_cache(store: Store, spec: SearchSpec, model: int, reward: int, n: int = 1) -> None:
    """Answers of `model` from an earlier search on the same endpoint (before it went down) on
    its first `n` items."""
    sched = spec.scheduler()
    firsts = [item for m, item in sched.ask() if m == model][:n]
    keys = CacheKeys(spec)
    store.create_search("earlier", None, {})
    store.put_answers("earlier", [(keys(model, i), model, i, reward) for i in firsts])


async def test_an_unreachable_model_cannot_win_on_a_cached_answer():
    """The review's case: the dead model had one cached correct answer, the others 3 of 4."""
    cands = [Candidate("m0", DEAD)]
    cands += [Candidate(f"m{k}", "http://live:80", adapter_id=f"a{k}") for k in range(1, 4)]
    spec = SearchSpec(cands, items(), budget=40, allow_unreachable=True)
    store = Store()
    seed_cache(store, spec, 0, 1)
    store.create_search("s", None, spec.to_dict())
    oracle = ScriptedOracle(lambda k, i: i % 4 != 0)
    with pytest.raises(SearchFailed) as err:
        await SearchRunner("s", spec, oracle, store).run()
    message = str(err.value)
    assert "m0 ranks first at 1/1" in message and DEAD in message and "fall behind m" in message


async def test_a_lost_answer_does_not_fail_a_clear_winner():
    """One pull of the winner failing for good does not undo a clear lead."""
    cands = [Candidate(f"m{k}", f"http://h{k}:80") for k in range(4)]
    spec = SearchSpec(cands, items(), budget=24)

    class OneLost(ScriptedOracle):
        async def answer(self, candidate, item, *, system_prompt=False):
            if candidate.model_id == "m0" and item.id.endswith("/3"):
                return OracleResult(candidate.model_id, item.id, None, FailureKind.TIMEOUT)
            return await super().answer(candidate, item)

    store = Store()
    store.create_search("s", None, spec.to_dict())
    result = await SearchRunner("s", spec, OneLost(lambda k, i: k == 0), store).run()
    assert result.recommended_model_id == "m0"
    assert result.queries_failed >= 1 and store.skipped("s") == {0: 1}


async def test_unseen_models_are_estimated_at_zero_and_results_are_strict_json():
    cands = [
        Candidate("m0", "http://h0:80"),
        Candidate("m1", "http://h1:80"),
        Candidate("m2", DEAD),
    ]
    spec = SearchSpec(cands, items(), budget=12, allow_unreachable=True)
    store = Store()
    store.create_search("s", None, spec.to_dict())
    result = await SearchRunner("s", spec, ScriptedOracle(lambda k, i: k == 0), store).run()
    assert result.recommended_model_id == "m0"
    dead = next(e for e in result.ranking if e.model_id == "m2")
    assert (dead.accuracy, dead.items_seen, dead.lower, dead.upper) == (0, 0, 0, 1)
    json.dumps(result.to_json(), allow_nan=False)  # strict JSON: no NaN anywhere
    assert result_to_proto(result).ranking[-1].accuracy == 0.0
    table = report.ranking_table(result).splitlines()
    row = next(line for line in table if " m2 " in line)
    assert row.split()[2:5] == ["-", "-", "0"], row
    assert "nan" not in report.ranking_table(result) + report.gem_report(result)


def test_a_result_without_answers_prints_no_ratio():
    est = {"model_id": "m", "rank": 1, "accuracy": 0.0, "lower": 0.0, "upper": 1.0}
    est |= {"items_seen": 0, "successes": 0, "downloads": None}
    result = {"ranking": [est], "winner": est, "most_popular": None, "queries_spent": 0}
    result |= {"queries_failed": 4, "queries_cached": 0, "exhaustive_queries": 40}
    text = report.gem_report(Result.from_json(result))
    assert "estimated - on 0 items" in text and "cheaper" not in text, text


def test_skipped_pulls_are_kept_apart_from_answers_until_graded():
    store = Store()
    store.create_search("s", None, {})
    store.put_skipped("s", [(0, 3), (0, 4), (1, 3)])
    store.put_answers("s", [("k", 0, 4, 1)])  # re-asked after a resume, and graded this time
    store.put_skipped("s", [(0, 4)])  # a skip never hides a grade
    assert store.skipped("s") == {0: 1, 1: 1}
    assert store.outcomes("s", [0, 1]) == {0: {4: 1}, 1: {}}
    store.drop_pulls("s")
    assert store.skipped("s") == {}


def test_results_stored_with_nan_read_back_finite():
    """Results stored before the fix held NaN for unseen models; they read back as 0."""
    est = {"model_id": "m", "rank": 2, "accuracy": float("nan"), "lower": 0.0, "upper": 1.0}
    est |= {"items_seen": 0, "successes": 0, "eliminated_in_round": 1, "downloads": None}
    top = est | {"model_id": "w", "rank": 1, "accuracy": 1.0, "items_seen": 3, "successes": 3}
    stored = json.loads(json.dumps({"recommended_model_id": "w", "ranking": [top, est]}))
    stored |= {"queries_spent": 3, "queries_failed": 0, "queries_cached": 0}
    stored |= {"exhaustive_queries": 6, "elapsed_s": 1.0, "winner": top, "most_popular": None}
    stored |= {"hidden_gem": False}
    assert result_to_proto(Result.from_json(stored)).ranking[1].accuracy == 0.0
    json.dumps(Result.from_json(stored).to_json(), allow_nan=False)
