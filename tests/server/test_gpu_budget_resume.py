"""The serving-cost ledger across a crash (migration 9, SQLite and PostgreSQL): a search whose
replica dies mid-search is taken over by another from the stored ledger, so its cost counts what
was spent before the crash, and its GPU-second cap too; compared with an uninterrupted run.

In one process: replica A runs the search and stops without releasing its lease (a crash:
runners gone, nothing more written), replica B, on a store of its own, takes the search over
once the lease expires (tests/store/test_leases.py does the same for the ranking)."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from pathlib import Path

import pytest
from gemfinder.search import gpu_budget
from gemfinder.search.manager import SearchManager
from gemfinder.store import LeaseLost, open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "search"))
from gpu_budget_support import CONFIGURED, TimedReplay, pool  # noqa: E402

LEASE_S = 1.0
SLOTS = 8  # queries the test's endpoint serves at once (TimedReplay)


def _replica(db: str, name: str, oracle) -> SearchManager:
    return SearchManager(open_store(db), oracle, replica_id=name, lease_s=LEASE_S)


async def _until(check, timeout_s: float) -> None:
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < timeout_s, "timed out"
        await asyncio.sleep(0.01)


async def _clean(db: str, spec, correct):
    oracle = TimedReplay(correct, CONFIGURED, sleep_s=0.01)
    solo = _replica(db, "solo", oracle)
    try:
        row = await solo.wait((await solo.start(spec)).id)
    finally:
        await solo.close(release=False)
    assert row.state == "succeeded", row.error
    return row, oracle


async def _crashed(db: str, spec, correct, fraction: float):
    """Run on A until `fraction` of the (planned) budget is spent, crash A, finish on B: the
    final row, both oracles and the ledger A had stored."""
    oracle_a, oracle_b = (
        TimedReplay(correct, CONFIGURED, sleep_s=0.01),
        TimedReplay(correct, CONFIGURED, sleep_s=0.01),
    )
    a, b = _replica(db, "A", oracle_a), _replica(db, "B", oracle_b)
    try:
        sid = (await a.start(spec, "job-1")).id
        await _until(lambda: a.get(sid).progress.spent >= fraction * a.get(sid).progress.budget, 30)
        assert a.get(sid).state == "running", "the search ended before the test could crash it"
        await a.close(release=False)  # a crash: runners gone, the lease left to expire
        flush = getattr(a.store, "_writes", None)
        if flush is not None:  # what A had handed to its store lands (a crash may lose it)
            flush.flush()
        stored = a.store.serving_ledger(sid)
        assert stored, "no ledger stored before the crash"
        await b.resume_all()
        await _until(lambda: sid in b._live, LEASE_S + 2 * b.tick_s + 4)
        row = await b.wait(sid)
    finally:
        await a.close(release=False)
        await b.close(release=False)
    assert row.state == "succeeded", row.error
    return row, oracle_a, oracle_b, next(iter(stored.values()))


async def test_a_search_taken_over_after_a_crash_counts_what_it_spent_before(new_db):
    spec, correct = pool()
    clean, clean_oracle = await _clean(new_db("clean.db"), spec, correct)
    row, oracle_a, oracle_b, before = await _crashed(new_db("crash.db"), spec, correct, 0.4)
    cost, clean_cost = row.result.cost, clean.result.cost
    print(
        f"uninterrupted {clean_cost.gpu_seconds:.1f} GPU-s / {clean_cost.queries} queries; "
        f"crashed at {before['gpu_seconds']:.1f} GPU-s / {before['queries']} queries "
        f"({before['in_flight']} in flight), "
        f"ended at {cost.gpu_seconds:.1f} / {cost.queries} (A sent {oracle_a.sent}, "
        f"B {oracle_b.sent})"
    )
    assert row.result.recommended_model_id == clean.result.recommended_model_id
    # B went on from the ledger A stored: every query B sent on top of what A had stored, less
    # the queries A had in flight (their answers died with A; B sent them again).
    assert 0 < before["queries"] <= oracle_a.sent
    taken_back = before["in_flight"]
    assert cost.queries == before["queries"] - taken_back + oracle_b.sent
    assert cost.gpu_seconds >= before["gpu_seconds"] - 0.2 * taken_back + 0.2 * oracle_b.sent
    assert cost.model_loads == 1  # the base model stayed up across the crash: not loaded twice
    # As the uninterrupted run: the same queries, give or take those answered between A's last
    # ledger write and the crash; the GPU-seconds differ by the loads the order of the queries
    # sent again changed (here at most 5 adapter reloads with their swaps). A ledger started
    # empty would miss the ~90 GPU-seconds spent before the crash; one that kept the queries in
    # flight would count ~45 twice.
    assert abs(cost.queries - clean_cost.queries) <= SLOTS
    assert abs(cost.gpu_seconds - clean_cost.gpu_seconds) <= 5 * 2.5


async def test_the_gpu_second_cap_counts_what_was_spent_before_the_crash(new_db, monkeypatch):
    # The formula's budget, which the reloads between rounds make pass the cap, so that the cap
    # (not the budget) is what stops the search: the replayed layout would finish within it.
    monkeypatch.setattr(gpu_budget, "MAX_REPLAYS", 0)
    cap = 80.0
    spec, correct = pool()
    spec = dataclasses.replace(spec, gpu_seconds=cap)
    clean, clean_oracle = await _clean(new_db("clean.db"), spec, correct)
    assert clean.result.cost.stopped_by_cap and clean.result.cost.gpu_seconds <= cap
    row, oracle_a, oracle_b, before = await _crashed(new_db("crash.db"), spec, correct, 0.4)
    cost = row.result.cost
    print(
        f"capped at {cap}: uninterrupted sent {clean_oracle.sent}; A sent {oracle_a.sent} "
        f"(stored {before['queries']}, {before['gpu_seconds']:.1f} GPU-s), B {oracle_b.sent}; "
        f"ended at {cost.gpu_seconds:.1f} GPU-s"
    )
    assert cost.stopped_by_cap and cost.gpu_seconds <= cap
    assert cost.queries == before["queries"] - before["in_flight"] + oracle_b.sent
    # B spent only what the cap had left: a ledger started empty would have let it spend the
    # whole cap again (about as many queries as the uninterrupted run).
    assert oracle_b.sent <= clean_oracle.sent - before["queries"] + 4
    assert oracle_a.sent + oracle_b.sent <= clean_oracle.sent + oracle_a.most_active


@pytest.fixture(autouse=True)
def _quiet_lease_logs(caplog):
    caplog.set_level("WARNING", logger="gemfinder.search.manager")


def test_the_ledger_is_kept_per_endpoint_and_fenced_by_the_lease(new_db):
    """Only the endpoints a batch changed are written; a replica that lost the lease writes
    nothing (LeaseLost), as for snapshots."""
    store = open_store(new_db("ledger.db"))
    store.create_search("s1", None, {"x": 1}, owner="A", lease_s=60)
    store.save_serving_ledger("s1", {"http://a": {"queries": 1}, "http://b": {"queries": 2}}, "A")
    store.save_serving_ledger("s1", {"http://b": {"queries": 5}}, owner="A")
    assert store.serving_ledger("s1") == {"http://a": {"queries": 1}, "http://b": {"queries": 5}}
    with pytest.raises(LeaseLost):
        store.save_serving_ledger("s1", {"http://a": {"queries": 9}}, owner="B")
        store.serving_ledger("s1")  # PostgreSQL: the queued write's failure surfaces here
    assert store.serving_ledger("s1")["http://a"] == {"queries": 1}
    assert store.serving_ledger("nope") == {}
    store.close()
