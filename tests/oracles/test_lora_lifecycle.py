"""Adapters on demand within the endpoint's host-memory cap, and unregistered however a search
ends: searches with many adapters and a small `max_cpu_loras` against the simulated vLLM, with
the fleet's own record (what it had registered at once, its GPU slots, every runtime LoRA
request as received) as the judge; in-process, with oracle worker processes, with two searches
sharing the endpoint, cancelled, failed and interrupted by a shutdown."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from fleet_support import FAST_RETRY
from gemfinder.oracles import FailureKind, InferenceOracle
from gemfinder.oracles.endpoints import endpoint_config_from_dict
from gemfinder.oracles.lora_runtime import RuntimeAdapters
from gemfinder.oracles.lora_slots import Slots, Step
from gemfinder.oracles.workers import WorkerOracle
from gemfinder.search.manager import SearchManager
from gemfinder.search.runner import SearchCancelled, SearchFailed
from gemfinder.store import Store
from hostile_endpoint import HostileEndpoint
from lora_support import (
    CAP,
    COMPLETIONS,
    LOAD,
    UNLOAD,
    Setup,
    assert_requests_are_vllms,
    assert_within_the_cap,
)
from prometheus_client import REGISTRY

from tests.pool_support import BEST


def _events() -> dict[str, float]:
    metric = "gemfinder_lora_registrations_total"
    kinds = ("registered", "unregistered", "failed", "waited")
    counts = {k: REGISTRY.get_sample_value(metric, {"kind": k}) or 0.0 for k in kinds}
    for part in ("count", "sum"):
        sample = REGISTRY.get_sample_value(f"gemfinder_lora_slot_wait_seconds_{part}")
        counts[f"wait_{part}"] = sample or 0.0
    return counts


async def test_a_search_with_many_adapters_stays_within_the_cap():
    setup = Setup()
    before = _events()
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        oracle = InferenceOracle([setup.endpoint(url)], policy=FAST_RETRY)
        runner = setup.runner(oracle, url)
        await oracle.prepare(runner.spec.candidates)
        result = await runner.run()
        left = set(state.runtime_registered)
        await oracle.aclose()
    assert result.winner.model_id == BEST and result.queries_failed == 0
    assert_within_the_cap(state, oracle.runtime_adapters, url)
    assert state.most_registered == CAP  # the cap was contended, and held
    # A round's survivors outnumber the cap: some were registered again after an eviction.
    loads = state.requests[LOAD]
    assert loads == oracle.runtime_adapters.loads > len(setup.rows)
    # 24-26 (docs/oracles.md): serving the waiters in arrival order does not make them thrash.
    assert loads <= 30
    assert state.requests[UNLOAD] == loads and left == set()  # every one let go of, once
    assert_requests_are_vllms(state)
    after = _events()
    counted = {k: after[k] - before[k] for k in after}
    assert counted["registered"] == counted["unregistered"] == loads
    assert counted["failed"] == 0 and counted["waited"] > 0  # queries waited for a slot
    # Each query that waited observed how long, once: a slot is freed by a round's queries
    # ending and an unregistration, so waits are not instant.
    assert counted["wait_count"] == counted["waited"]
    assert counted["wait_sum"] > 0.001 * counted["waited"]


async def test_with_worker_processes_each_adapter_is_registered_once_per_need():
    """The workers ask; this process registers and unregisters, once each, within one cap
    (before: each worker registered what it asked, the second got vLLM's 400 "already loaded",
    and nothing was ever unregistered)."""
    setup = Setup()
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        oracle = WorkerOracle([setup.endpoint(url)], workers=2, policy=FAST_RETRY)
        try:
            runner = setup.runner(oracle, url)
            await oracle.prepare(runner.spec.candidates)
            result = await runner.run()
            left = set(state.runtime_registered)
        finally:
            await oracle.aclose()
    assert result.winner.model_id == BEST and result.queries_failed == 0
    assert_within_the_cap(state, oracle.local.runtime_adapters, url)
    assert state.lora_statuses == {200: 2 * state.requests[LOAD]}  # never "already loaded"
    assert state.requests[LOAD] == state.requests[UNLOAD] == oracle.local.runtime_adapters.loads
    assert left == set()
    assert_requests_are_vllms(state)


async def test_two_searches_sharing_the_endpoint_share_the_cap():
    """Overlapping adapters: one search ending never unregisters what the other still asks."""
    setup = Setup()
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        oracle = InferenceOracle([setup.endpoint(url)], policy=FAST_RETRY)
        store = Store()
        first = setup.runner(oracle, url, "a", setup.rows[:10], store)
        second = setup.runner(oracle, url, "b", setup.rows[5:], store)
        await oracle.prepare(first.spec.candidates)
        await oracle.prepare(second.spec.candidates)
        one, two = await asyncio.gather(first.run(), second.run())
        left = set(state.runtime_registered)
        await oracle.aclose()
    assert one.queries_failed == two.queries_failed == 0
    assert two.winner.model_id == BEST
    assert_within_the_cap(state, oracle.runtime_adapters, url)
    assert left == set()


async def _registered(state) -> None:
    while not state.runtime_registered:
        await asyncio.sleep(0.005)


async def test_a_cancelled_search_unregisters_what_it_registered():
    setup = Setup(latency_s=0.01)
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        oracle = InferenceOracle([setup.endpoint(url)], policy=FAST_RETRY)
        runner = setup.runner(oracle, url)
        await oracle.prepare(runner.spec.candidates)
        run = asyncio.ensure_future(runner.run())
        await asyncio.wait_for(_registered(state), 10)
        runner.cancel()
        with pytest.raises(SearchCancelled):
            await run
        left = set(state.runtime_registered)
        await oracle.aclose()
    assert state.requests[LOAD] > 0 and left == set()
    assert state.requests[UNLOAD] == state.requests[LOAD]


async def test_a_search_stopped_by_a_shutdown_unregisters_what_it_registered():
    """A replica shutting down cancels its runners' tasks (SearchManager.close)."""
    setup = Setup(latency_s=0.01)
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        oracle = InferenceOracle([setup.endpoint(url)], policy=FAST_RETRY)
        runner = setup.runner(oracle, url)
        await oracle.prepare(runner.spec.candidates)
        run = asyncio.ensure_future(runner.run())
        await asyncio.wait_for(_registered(state), 10)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        left = set(state.runtime_registered)
        await oracle.aclose()
    assert state.requests[LOAD] > 0 and left == set()


async def test_the_service_unregisters_on_cancel_search_and_on_shutdown():
    """Through the SearchManager the server runs, with oracle worker processes: CancelSearch,
    then a replica stopping with a search in flight (it resumes elsewhere; what it registered
    here is let go of before the leases are handed over)."""
    setup = Setup(latency_s=0.01)
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        oracle = WorkerOracle([setup.endpoint(url)], workers=2, policy=FAST_RETRY)
        manager = SearchManager(Store(), oracle, replica_id="A")
        try:
            spec = setup.runner(oracle, url).spec
            row = await manager.start(spec)
            await asyncio.wait_for(_registered(state), 10)
            assert (await manager.cancel(row.id)).state == "cancelled"
            after_cancel = set(state.runtime_registered)
            second = await manager.start(spec)
            await asyncio.wait_for(_registered(state), 10)
            assert manager.get(second.id).state == "running"  # stopped mid-search
            await manager.close()
            after_close = set(state.runtime_registered)
        finally:
            await oracle.aclose()
    assert after_cancel == after_close == set()
    assert state.requests[LOAD] == state.requests[UNLOAD] > 0
    assert state.most_registered <= CAP


async def test_a_failed_search_unregisters_what_it_registered():
    """Every query fails (HTTP 500): the search fails, and its registrations go."""
    setup = Setup()
    setup.raw["faults"] = {"500": 1.0}
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        oracle = InferenceOracle([setup.endpoint(url)], policy=FAST_RETRY)
        runner = setup.runner(oracle, url)
        await oracle.prepare(runner.spec.candidates)
        with pytest.raises(SearchFailed):
            await runner.run()
        left = set(state.runtime_registered)
        await oracle.aclose()
    assert state.requests[LOAD] > 0 and left == set()
    assert state.most_registered <= CAP


async def test_shutdown_unregisters_what_queries_outside_a_search_registered():
    setup = Setup()
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        oracle = InferenceOracle([setup.endpoint(url)], policy=FAST_RETRY)
        for cand in setup.candidates(url)[1:6]:
            result = await oracle.answer(cand, setup.items[0])
            assert result.reward is not None
        assert len(state.runtime_registered) == CAP  # kept for the next query, within the cap
        await oracle.aclose()
        assert state.runtime_registered == set()


async def test_a_load_the_fleet_refuses_fails_those_pulls_never_a_wrong_answer():
    """vLLM's engine refuses one adapter (its rank is above --max-lora-rank): a 400 that is not
    "already loaded". Its pulls are failures, asked once on the server, and the cap's slot it
    took is given back: the other adapters are served, and the search finds BEST."""
    setup = Setup()
    broken = setup.rows[3]
    path = f"/adapters/{setup.names[broken]}"
    refusal = "LoRA rank 64 is greater than max_lora_rank 16."
    setup.raw["serving"]["failing_lora_paths"] = {path: refusal}
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        oracle = InferenceOracle([setup.endpoint(url)], policy=FAST_RETRY)
        runner = setup.runner(oracle, url)
        await oracle.prepare(runner.spec.candidates)
        result = await runner.run()
        asked_once = state.failed_loads
        failed = await oracle.answer(runner.spec.candidates[4], setup.items[0])
        await oracle.aclose()
    assert result.winner.model_id == BEST
    assert asked_once == 1  # asked once in the search, then known to fail
    assert state.failed_loads == 2  # the search over, a later query asks the server again
    assert result.queries_failed > 0
    assert next(e for e in result.ranking if e.model_id == broken).items_seen == 0
    assert broken not in state.served
    assert failed.reward is None and failed.failure is FailureKind.HTTP_ERROR
    assert refusal in (failed.error or "")
    assert_within_the_cap(state, oracle.runtime_adapters, url)


async def test_a_load_the_server_fails_fails_that_query_only():
    """The server answers a load with a 500 (its trouble, not the adapter's): that query fails,
    counted as a failure; the scheduler asks the pull again and the next load registers it."""
    setup = Setup(serving={"lora_fault_script": ["500", None, "500"]})
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        oracle = InferenceOracle([setup.endpoint(url)], policy=FAST_RETRY)
        runner = setup.runner(oracle, url)
        await oracle.prepare(runner.spec.candidates)
        result = await runner.run()
        await oracle.aclose()
    assert state.lora_statuses[500] == 2 and result.queries_failed >= 2
    assert result.winner.model_id == BEST
    assert all(e.items_seen > 0 for e in result.ranking)  # every adapter answered after all
    assert_within_the_cap(state, oracle.runtime_adapters, url)
    assert state.runtime_registered == set()


async def test_an_adapter_unregistered_by_someone_else_is_registered_again():
    """Another gemfinder process (a replica) unloads a name this one registered: the query
    that finds it gone fails (a failure, never a wrong answer); the next registers it again."""
    setup = Setup()
    async with setup.fleet() as fleet:
        url, state = fleet.url("vllm"), fleet.state("vllm")
        oracle = InferenceOracle([setup.endpoint(url)], policy=FAST_RETRY)
        cand, item = setup.candidates(url)[1], setup.items[0]
        assert (await oracle.answer(cand, item)).reward is not None
        async with aiohttp.ClientSession() as session:
            body = {"lora_name": cand.adapter_id}
            async with session.post(url + UNLOAD, json=body) as response:
                assert response.status == 200
        gone = await oracle.answer(cand, item)
        again = await oracle.answer(cand, item)
        await oracle.aclose()
    assert gone.reward is None and gone.failure is FailureKind.HTTP_ERROR
    assert again.reward is not None and state.requests[LOAD] == 2


def _loaded(slots: Slots, name: str) -> None:
    ticket = slots.enter(name)
    assert slots.step(ticket) == (Step.LOAD, None)
    slots.loaded(name, ours=True, problem=None)
    assert slots.step(ticket) == (Step.READY, None)
    slots.leave(ticket)


def test_slots_evict_only_their_own_least_recently_used_idle_registration():
    slots = Slots(cap=2)
    slots.ready.add("theirs")  # --lora-modules: used, never a victim, no slot
    assert slots.step(slots.enter("theirs")) == (Step.READY, None)
    _loaded(slots, "a")
    _loaded(slots, "b")
    a, b = slots.enter("a"), slots.enter("b")
    assert slots.step(b) == (Step.READY, None)
    assert slots.step(a) == (Step.READY, None)  # a used last
    c = slots.enter("c")
    assert slots.step(c) == (Step.WAIT, None)  # both in use: c waits, nothing is evicted
    assert slots.leave(b) and slots.leave(a)
    assert slots.step(c) == (Step.UNLOAD, "b")  # the least recently used
    b2 = slots.enter("b")
    assert slots.step(b2) == (Step.WAIT, None)  # being unregistered
    assert slots.step(c) == (Step.UNLOAD, "a")  # the other idle one; cap never exceeded
    slots.unloaded("b", gone=True)
    assert slots.step(c) == (Step.LOAD, None)
    assert slots.held == 2 and slots.most_held == 2
    slots.loaded("c", ours=False, problem="HTTP 404")
    assert slots.step(c) == (Step.FAILED, "HTTP 404") and slots.held == 1


def test_slots_hand_a_freed_slot_to_the_oldest_waiter():
    slots = Slots(cap=1)
    _loaded(slots, "a")
    a = slots.enter("a")
    assert slots.step(a) == (Step.READY, None)
    b, c = slots.enter("b"), slots.enter("c")
    assert slots.step(c) == slots.step(b) == (Step.WAIT, None)
    slots.leave(a)
    assert slots.step(c) == (Step.WAIT, None)  # c asks first, b came first
    assert slots.step(b) == (Step.UNLOAD, "a")
    slots.unloaded("a", gone=True)
    assert slots.step(c) == (Step.WAIT, None)
    assert slots.step(b) == (Step.LOAD, None)


def test_slots_never_evict_a_registration_its_waiting_queries_are_about_to_use():
    """b was registered for the queries waiting for it: the next waiter does not take it before
    they are woken."""
    slots = Slots(cap=1)
    b1, b2, c = slots.enter("b"), slots.enter("b"), slots.enter("c")
    assert slots.step(b1) == (Step.LOAD, None)
    assert slots.step(b2) == slots.step(c) == (Step.WAIT, None)
    slots.loaded("b", ours=True, problem=None)
    assert slots.step(c) == (Step.WAIT, None)  # b2 has not run yet
    assert slots.step(b2) == (Step.READY, None)


def _hammered(patience: int | None) -> int | None:
    """Cap 1: adapter a registered, 8 queries on it in flight and one more arriving each time
    one ends; a query for b arrives. How many queries on a are admitted before b gets a slot
    (None: not within 2,000)."""
    slots = Slots(cap=1) if patience is None else Slots(cap=1, patience=patience)
    _loaded(slots, "a")
    flying = []
    for _ in range(8):
        flying.append(slots.enter("a"))
        assert slots.step(flying[-1]) == (Step.READY, None)
    b = slots.enter("b")
    assert slots.step(b) == (Step.WAIT, None)
    admitted, held_back = 0, []
    for _ in range(2000):
        if flying:
            slots.leave(flying.pop(0))
        new = slots.enter("a")
        for ticket in [*held_back, new]:  # every waiter looks again (wake)
            if slots.step(ticket) == (Step.READY, None):
                flying.append(ticket)
                admitted += 1
                held_back = [t for t in held_back if t is not ticket]
            elif ticket is new:
                held_back.append(ticket)
        if slots.step(b)[0] is Step.UNLOAD:
            return admitted
    return None


def test_a_waiter_is_served_within_a_bounded_number_of_queries():
    """A steady stream of queries on the held adapter no longer starves a waiter: after
    `patience` newer queries the rest wait behind it, the registration drains and is its."""
    assert _hammered(patience=5) == 5
    assert _hammered(patience=None) == 64  # PATIENCE
    assert _hammered(patience=10**9) is None  # without the bound: starved, as before


async def test_a_waiter_is_served_while_a_stream_of_queries_hammers_the_held_adapter():
    """Against the simulated vLLM, cap 1: 8 queries on one adapter always in flight, a query
    for another adapter is answered after a bounded number of them, then the first goes on."""
    setup = Setup(latency_s=0.005)
    async with setup.fleet() as fleet:
        url = fleet.url("vllm")
        oracle = InferenceOracle([setup.endpoint(url, cap=1)], policy=FAST_RETRY)
        hammered, other = setup.candidates(url)[1:3]
        answered = 0
        stop = asyncio.Event()

        async def hammer() -> None:
            nonlocal answered
            while not stop.is_set():
                await oracle.answer(hammered, setup.items[answered % len(setup.items)])
                answered += 1

        streams = [asyncio.ensure_future(hammer()) for _ in range(8)]
        while answered < 20:
            await asyncio.sleep(0.005)
        before = answered
        result = await asyncio.wait_for(oracle.answer(other, setup.items[0]), 30)
        served_after = answered - before
        stop.set()
        await asyncio.gather(*streams)
        await oracle.aclose()
    assert result.reward is not None
    # PATIENCE, the 8 in flight when it arrived, and a few that may start before it does
    # (measured: 72; before, it waited until the stream stopped)
    assert served_after <= 64 + 8 + 8
    assert oracle.runtime_adapters.most_held(url) == 1


async def test_a_server_answering_a_load_with_100_mb_is_read_only_a_line():
    """Registering and unregistering read a few KB of the answer whatever the server sends
    (vLLM's is one line of text)."""
    size = 100 * 1024 * 1024
    async with HostileEndpoint(size) as hostile:
        config = endpoint_config_from_dict(
            {"url": hostile.url, "backend": COMPLETIONS, "lora_paths": {"a": "/adapters/a"}},
            "endpoints[0]",
        )
        adapters = RuntimeAdapters(timeout_s=5.0)
        async with adapters.held(config, "a") as problem:
            assert problem is None  # a 200: registered
        await adapters.aclose()  # unregistered: another 100 MB answer
    assert hostile.requests == 2 and adapters.unloads == 1
    assert hostile.sent < 16 * 1024 * 1024  # the socket buffers, not 200 MB
