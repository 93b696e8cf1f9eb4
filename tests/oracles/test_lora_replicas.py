"""Replicas sharing adapter registrations through the store (gemfinder.lora_leases), on the
PostgreSQL server the tests start, against the simulated vLLM (15 adapters, max_cpu_loras 3).

Each replica is an oracle of its own with a store of its own (a pool and a writer thread, as a
process has) and its own replica id, as in tests/store/test_leases.py. The fleet is the judge:
what it had registered at once, every load and unload it received, and every query it refused
for an adapter it did not have (404 "does not exist")."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import psycopg
import pytest
from fleet_support import FAST_RETRY
from gemfinder.lora_leases import Decision, Grant, LoraLeases, Release, Row, decide
from gemfinder.oracles import InferenceOracle
from gemfinder.pg_store import PgStore
from lora_support import CAP, LOAD, UNLOAD, Setup
from prometheus_client import REGISTRY

from tests.pool_support import BEST

LEASE_S = 1.0


class Replica:
    """One replica's oracle and store; `share=False`: the registrations of before (its own)."""

    def __init__(self, name: str, db: str, setup: Setup, url: str, share: bool = True) -> None:
        self.name = name
        self.store = PgStore(db)
        self.config = setup.endpoint(url)
        self.oracle = InferenceOracle([self.config], policy=FAST_RETRY)
        self.adapters = self.oracle.runtime_adapters
        self.leases = LoraLeases(self.store, name, LEASE_S)
        if share:
            self.oracle.share_adapters(self.leases)

    async def close(self) -> None:
        await self.oracle.aclose()
        self.store.close()

    def die(self) -> None:
        """kill -9 as the store and the fleet see it: no unload, no release, no more renewal."""
        beat = self.adapters._heartbeat
        if beat is not None:
            beat.cancel()
        self.adapters._slots.clear()  # what it held stays on the server and in the store
        self.store.close()

    async def buried(self) -> None:
        """A dead replica's clients closed (nothing else: it unregisters nothing)."""
        await self.oracle.aclose()

    def stall(self) -> None:
        """Alive, but its heartbeat stops (a long GC pause, a stopped container)."""
        beat = self.adapters._heartbeat
        assert beat is not None
        beat.cancel()


def _rows(db: str) -> list[tuple]:
    with psycopg.connect(db, autocommit=True) as conn:
        return conn.execute(
            "SELECT adapter, replica, state FROM lora_leases ORDER BY adapter, replica"
        ).fetchall()


def _live(db: str) -> int:
    with psycopg.connect(db, autocommit=True) as conn:
        return conn.execute(
            "SELECT COUNT(*) FROM lora_leases WHERE lease_until >= extract(epoch from now())"
        ).fetchone()[0]


async def test_two_replicas_searching_at_once_stay_within_the_cap_and_never_lose_an_adapter(
    postgres,
):
    """Two searches on two replicas, overlapping adapters (10 and 10 of 15, cap 3): the fleet
    never holds more than the cap, no query finds its adapter gone, both find BEST, and every
    registration is let go of at the end. The same run without sharing overruns the cap (what
    the test would catch)."""
    setup = Setup(latency_s=0.002)
    figures = {}
    for share in (False, True):
        db = postgres.new_database()
        async with setup.fleet() as fleet:
            url, state = fleet.url("vllm"), fleet.state("vllm")
            a = Replica("A", db, setup, url, share)
            b = Replica("B", db, setup, url, share)
            try:
                first = setup.runner(a.oracle, url, "a", setup.rows[:10], a.store)
                second = setup.runner(b.oracle, url, "b", setup.rows[5:], b.store)
                await a.oracle.prepare(first.spec.candidates)
                await b.oracle.prepare(second.spec.candidates)
                one, two = await asyncio.gather(first.run(), second.run())
            finally:
                await a.close()
                await b.close()
            figures[share] = (state.most_registered, one.queries_failed + two.queries_failed)
            if share:
                assert state.most_registered <= CAP
                assert state.statuses[404] == 0  # no "The model `...` does not exist."
                assert one.queries_failed == two.queries_failed == 0
                assert two.winner.model_id == BEST  # among rows[5:], not rows[:10]
                assert state.runtime_registered == set()  # every registration let go of
                assert state.requests[UNLOAD] <= state.requests[LOAD]
                assert _rows(db) == []  # and every lease
    assert figures[False][0] > CAP, figures  # before: each replica kept its own cap


async def test_an_adapter_another_replica_uses_is_not_unregistered_until_its_last_user_ends(
    postgres,
):
    db = postgres.new_database()
    setup = Setup()
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        a, b = Replica("A", db, setup, url), Replica("B", db, setup, url)
        try:
            cand, item = setup.candidates(url)[1], setup.items[0]
            a.oracle.claim_adapters([cand])
            b.oracle.claim_adapters([cand])
            assert (await a.oracle.answer(cand, item)).reward is not None
            assert (await b.oracle.answer(cand, item)).reward is not None
            assert state.requests[LOAD] == 1  # B joined A's registration: no request
            await a.oracle.release_adapters([cand])  # A's search ends; B's goes on
            assert state.requests[UNLOAD] == 0 and cand.adapter_id in state.runtime_registered
            assert (await b.oracle.answer(cand, item)).reward is not None
            await b.oracle.release_adapters([cand])  # the last user unregisters it
            assert state.requests[UNLOAD] == 1 and state.runtime_registered == set()
            assert _rows(db) == []
        finally:
            await a.close()
            await b.close()
    assert state.statuses[404] == 0


async def test_an_adapter_unregistered_outside_gemfinder_is_registered_again_though_shared(
    postgres,
):
    """Both replicas use X; someone else unloads it. The store still says registered, so the
    replica whose query found it gone registers it again rather than trusting the store (else
    every query of both would fail, each told "registered" by the other's row)."""
    db = postgres.new_database()
    setup = Setup()
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        a, b = Replica("A", db, setup, url), Replica("B", db, setup, url)
        cand, item = setup.candidates(url)[1], setup.items[0]
        try:
            assert (await a.oracle.answer(cand, item)).reward is not None
            assert (await b.oracle.answer(cand, item)).reward is not None
            async with aiohttp.ClientSession() as session:
                body = {"lora_name": cand.adapter_id}
                async with session.post(url + UNLOAD, json=body) as response:
                    assert response.status == 200
            assert (await a.oracle.answer(cand, item)).reward is None  # found gone: counted
            assert (await a.oracle.answer(cand, item)).reward is not None  # registered again
            assert (await b.oracle.answer(cand, item)).reward is not None
            assert state.requests[LOAD] == 2
        finally:
            await a.close()
            await b.close()
    assert state.runtime_registered == set()


async def test_a_killed_replicas_slots_are_reused_once_its_leases_expire(postgres):
    """A holds the whole cap and dies; B's queries wait (never over the cap), then B
    unregisters A's orphans and registers its own, within about a lease."""
    db = postgres.new_database()
    setup = Setup()
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        a, b = Replica("A", db, setup, url), Replica("B", db, setup, url)
        candidates = setup.candidates(url)[1:]
        try:
            for cand in candidates[:CAP]:
                assert (await a.oracle.answer(cand, setup.items[0])).reward is not None
            assert len(state.runtime_registered) == CAP
            a.die()
            died = time.monotonic()
            answers = await asyncio.gather(
                *(b.oracle.answer(c, setup.items[0]) for c in candidates[CAP : 2 * CAP])
            )
            took = time.monotonic() - died
            assert all(r.reward is not None for r in answers)
            assert LEASE_S * 0.9 < took < LEASE_S + 2.0, took
            # A's three go (evicted for B's queries, or by B's heartbeat), within a beat or two.
            theirs = {c.adapter_id for c in candidates[:CAP]}
            while state.runtime_registered & theirs:
                assert time.monotonic() - died < LEASE_S + 3.0, state.lora_log
                await asyncio.sleep(0.05)
            assert state.most_registered == CAP
            assert _rows(db) == sorted((n, "B", "ready") for n in state.runtime_registered)
        finally:
            await a.buried()
            await b.close()
    assert state.runtime_registered == set() and state.statuses[404] == 0


async def test_a_stalled_replica_does_not_unregister_what_another_now_holds(postgres):
    """Hostile: A's lease expires while it stalls; B takes the adapter over (found registered:
    no second registration). A wakes and its search ends: it must not unregister it (before
    this, A's unload would have failed B's next query), and its heartbeat forgets it."""
    db = postgres.new_database()
    setup = Setup()
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        a, b = Replica("A", db, setup, url), Replica("B", db, setup, url)
        cand, item = setup.candidates(url)[1], setup.items[0]
        try:
            a.oracle.claim_adapters([cand])
            assert (await a.oracle.answer(cand, item)).reward is not None
            a.stall()
            await asyncio.sleep(LEASE_S * 1.3)
            b.oracle.claim_adapters([cand])
            assert (await b.oracle.answer(cand, item)).reward is not None
            assert _rows(db) == [(cand.adapter_id, "B", "ready")]
            await a.oracle.release_adapters([cand])  # A wakes up; its search ends
            assert state.requests[UNLOAD] == 0 and cand.adapter_id in state.runtime_registered
            assert (await b.oracle.answer(cand, item)).reward is not None
            await a.adapters.renew()  # A's next heartbeat: nothing of A's is left
            assert cand.adapter_id not in a.adapters.registered_by_us(url)
            assert _rows(db) == [(cand.adapter_id, "B", "ready")]
            await b.oracle.release_adapters([cand])
            assert state.requests[UNLOAD] == 1 and state.runtime_registered == set()
        finally:
            await a.close()
            await b.close()
    assert state.statuses[404] == 0


async def test_a_lease_another_replica_took_over_is_counted_lost_at_the_next_heartbeat(postgres):
    """A stalls past its lease while it holds an adapter and B takes it over: A's next
    heartbeat forgets it and counts it in gemfinder_lora_leases_lost_total, once."""
    db = postgres.new_database()
    setup = Setup()
    async with setup.fleet() as fleet:
        url = fleet.url("vllm")
        a, b = Replica("A", db, setup, url), Replica("B", db, setup, url)
        cand, item = setup.candidates(url)[1], setup.items[0]
        try:
            a.oracle.claim_adapters([cand])
            assert (await a.oracle.answer(cand, item)).reward is not None
            a.stall()
            await asyncio.sleep(LEASE_S * 1.3)
            b.oracle.claim_adapters([cand])
            assert (await b.oracle.answer(cand, item)).reward is not None
            before = _leases_lost()
            await a.adapters.renew()  # A wakes up: its heartbeat finds the lease gone
            assert cand.adapter_id not in a.adapters.registered_by_us(url)
            assert a.adapters.leases_lost == 1 and _leases_lost() == before + 1
            await a.adapters.renew()  # forgotten: not counted again
            assert _leases_lost() == before + 1
            await a.oracle.release_adapters([cand])
            await b.oracle.release_adapters([cand])
        finally:
            await a.close()
            await b.close()


def _leases_lost() -> float:
    return REGISTRY.get_sample_value("gemfinder_lora_leases_lost_total") or 0.0


async def test_a_stalled_replica_that_kept_using_its_adapter_loses_it_to_nobody(postgres):
    """A stalled but nobody took its lease over: its next heartbeat renews it (still its own)
    and its search's end unregisters it, once."""
    db = postgres.new_database()
    setup = Setup()
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        a = Replica("A", db, setup, url)
        cand, item = setup.candidates(url)[1], setup.items[0]
        try:
            a.oracle.claim_adapters([cand])
            assert (await a.oracle.answer(cand, item)).reward is not None
            a.stall()
            await asyncio.sleep(LEASE_S * 1.3)
            before = _leases_lost()
            await a.adapters.renew()
            assert a.adapters.leases_lost == 0 and _leases_lost() == before
            await a.oracle.release_adapters([cand])
            assert state.requests[UNLOAD] == 1 and state.runtime_registered == set()
        finally:
            await a.close()


def _row(adapter: str, replica: str, state: str = "ready", live: bool = True) -> Row:
    return Row(adapter, replica, state, live)


@pytest.mark.parametrize(
    ("rows", "name", "expected"),
    [
        ([], "x", Decision(Grant.LOAD)),
        ([_row("x", "B")], "x", Decision(Grant.READY, shared=True)),
        ([_row("x", "B", "loading")], "x", Decision(Grant.LOAD, shared=True)),
        ([_row("x", "B", "unloading")], "x", Decision(Grant.WAIT)),
        ([_row("x", "A", "unloading")], "x", Decision(Grant.WAIT)),  # our heartbeat evicts it
        ([_row("x", "B", "unloading", live=False)], "x", Decision(Grant.LOAD, shared=True)),
        ([_row("x", "B", live=False)], "x", Decision(Grant.LOAD, shared=True)),
        ([_row("a", "B"), _row("b", "B")], "x", Decision(Grant.FULL, outside=2)),
        ([_row("a", "A"), _row("b", "B")], "x", Decision(Grant.FULL, outside=1)),
        (
            [_row("a", "B", live=False), _row("b", "B")],
            "x",
            Decision(Grant.EVICT, victim="a", outside=1),
        ),
        # One live user keeps an adapter out of eviction, whoever else's lease expired.
        (
            [_row("a", "B", live=False), _row("a", "C"), _row("b", "B")],
            "x",
            Decision(Grant.FULL, outside=2),
        ),
        ([_row("a", "B")], "x", Decision(Grant.LOAD, outside=1)),
    ],
)
def test_the_decision_counts_each_adapter_once_and_only_evicts_the_dead(rows, name, expected):
    assert decide(rows, "A", name, cap=2) == expected


async def test_two_replicas_registering_at_once_both_own_it_whichever_request_came_first(
    postgres,
):
    """A is granted a new adapter, B joins while A's load is in flight and B's request reaches
    vLLM first: A's "already loaded" is B's registration, so A shares it (before: A took it for
    someone else's, kept no lease, and B, its last user on record, unregistered it under A's
    queries)."""
    db = postgres.new_database()
    stores = [PgStore(db), PgStore(db)]
    a, b = (LoraLeases(s, n, LEASE_S) for s, n in zip(stores, "AB", strict=True))
    try:
        assert (await a.acquire("http://v", "x", 3)).grant is Grant.LOAD
        assert await b.acquire("http://v", "x", 3) == Decision(Grant.LOAD, shared=True)
        assert await b.loaded("http://v", "x", True)  # B's request came first: 200
        assert await a.loaded("http://v", "x", None)  # A's: "already loaded", B's: shared
        assert await a.release("http://v", "x") is Release.SHARED
        assert await b.release("http://v", "x") is Release.LAST
        # Found registered with no replica's row: someone else's, no slot taken.
        assert (await a.acquire("http://v", "y", 3)).grant is Grant.LOAD
        assert not await a.loaded("http://v", "y", None)
        assert _rows(db) == [("x", "B", "unloading")]
    finally:
        for store in stores:
            store.close()


async def test_queries_on_an_adapter_this_replica_holds_never_ask_the_store(postgres):
    """The fast path: one store decision to register, then 30 queries without a round trip
    (they take longer than the lease, which the heartbeat renews meanwhile)."""
    db = postgres.new_database()
    setup = Setup(latency_s=0.04)
    async with setup.fleet() as fleet:
        url = fleet.url("vllm")
        a = Replica("A", db, setup, url)
        calls = []
        for method in ("acquire", "loaded", "release"):
            real = getattr(a.leases, method)

            async def counted(*args, _real=real, _name=method, **kwargs):
                calls.append(_name)
                return await _real(*args, **kwargs)

            setattr(a.leases, method, counted)
        cand = setup.candidates(url)[1]
        try:
            for item in setup.items[:30]:
                assert (await a.oracle.answer(cand, item)).reward is not None
            assert calls == ["acquire", "loaded"]
            assert _rows(db) == [(cand.adapter_id, "A", "ready")]
            assert _live(db) == 1  # its lease renewed, past its first expiry
        finally:
            await a.close()
    assert calls == ["acquire", "loaded", "release"]  # aclose: the last user unregisters
