"""StartSearch checks endpoints concurrently, outside any lock, with bounded shared probes, and
forgets request-supplied endpoints when their search ends."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiohttp import web
from gemfinder.candidates import Candidate
from gemfinder.oracles import EndpointConfig, InferenceOracle, OracleResult
from gemfinder.oracles.preflight import Prober
from gemfinder.search.manager import SearchManager, TooManySearches
from gemfinder.search.spec import SearchSpec
from gemfinder.store import Store

from tests.fleet_support import FAST_RETRY, make_items

ITEMS = make_items(3, tasks=("mmlu",))


class SlowPrepare:
    """An oracle whose pre-search check takes `delay_s` (a slow endpoint's /info)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.in_check = self.most_in_check = 0

    async def prepare(self, candidates) -> None:
        self.in_check += 1
        self.most_in_check = max(self.most_in_check, self.in_check)
        await asyncio.sleep(self.delay_s)
        self.in_check -= 1

    async def release(self, candidates) -> None:
        pass

    async def answer(self, candidate, item, *, system_prompt: bool = False) -> OracleResult:
        await asyncio.sleep(0.01)
        return OracleResult(candidate.model_id, item.id, 1)

    async def aclose(self) -> None:
        pass


def spec(seed: int = 0, url: str = "http://h:80", **kw) -> SearchSpec:
    cands = [Candidate(f"m{k}", url, adapter_id=f"a{k}") for k in range(3)]
    return SearchSpec(cands, ITEMS, budget=6, seed=seed, **kw)


async def test_starts_check_their_endpoints_concurrently():
    oracle = SlowPrepare(0.3)
    manager = SearchManager(Store(), oracle, max_active=50)
    started = time.monotonic()
    rows = await asyncio.gather(*(manager.start(spec(k), f"r{k}") for k in range(20)))
    took = time.monotonic() - started
    await manager.close()
    assert len({r.id for r in rows}) == 20
    assert oracle.most_in_check == 20  # all at once; serialised this took 20 x 0.3 s
    assert took < 3.0, took


async def test_concurrent_retries_of_one_request_id_make_one_search():
    manager = SearchManager(Store(), SlowPrepare(0.2))
    rows = await asyncio.gather(*(manager.start(spec(), "nightly-42") for _ in range(5)))
    assert len({r.id for r in rows}) == 1 and len(manager.list(10, None)) == 1
    await manager.close()


async def test_a_retry_after_a_failed_start_starts_again():
    class FailsOnce(SlowPrepare):
        async def prepare(self, candidates) -> None:
            await super().prepare(candidates)
            if not getattr(self, "failed", False):
                self.failed = True
                raise RuntimeError("endpoint check failed")

    manager = SearchManager(Store(), FailsOnce(0.1))
    first, second = await asyncio.gather(
        manager.start(spec(), "r"), manager.start(spec(), "r"), return_exceptions=True
    )
    assert isinstance(first, RuntimeError) and second.state in ("running", "succeeded")
    await manager.close()


async def test_starts_being_checked_count_against_max_active():
    manager = SearchManager(Store(), SlowPrepare(0.3), max_active=3)
    out = await asyncio.gather(*(manager.start(spec(k)) for k in range(5)), return_exceptions=True)
    assert sum(isinstance(o, TooManySearches) for o in out) == 2
    await manager.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_request_supplied_endpoints_are_forgotten_when_their_search_ends():
    """The local CLI's case (any endpoint): 20 searches on 40 distinct URLs leave nothing
    behind but the operator's own endpoint settings."""
    configured = EndpointConfig(f"http://127.0.0.1:{closed_port()}")
    oracle = InferenceOracle([configured], validate=False, policy=FAST_RETRY)
    manager = SearchManager(Store(), oracle, max_active=100)
    port = closed_port()
    specs = [
        SearchSpec(
            [
                Candidate("a", f"http://127.0.0.1:{port}/s{k}"),
                Candidate("b", f"http://127.0.0.1:{port}/t{k}"),
                Candidate("c", configured.url),
            ],
            ITEMS,
            budget=6,
            allow_unreachable=True,
        )
        for k in range(20)
    ]
    rows = await asyncio.gather(*(manager.start(s) for s in specs))
    assert oracle.retained == 41  # held while they run
    for row in rows:
        assert (await manager.wait(row.id)).state == "failed"  # nothing answers
    assert oracle.retained == 1  # the configured endpoint only
    assert oracle._users == {}
    await oracle.aclose()


async def test_an_endpoint_shared_by_two_searches_outlives_the_first():
    oracle = InferenceOracle(validate=False, policy=FAST_RETRY)
    manager = SearchManager(Store(), oracle)
    url = f"http://127.0.0.1:{closed_port()}"
    cands = [Candidate("a", url), Candidate("b", url, adapter_id="b")]
    await oracle.prepare(cands)  # a second search holding the same endpoint
    row = await manager.start(SearchSpec(cands, ITEMS, budget=6, allow_unreachable=True))
    await manager.wait(row.id)
    assert oracle.retained == 1
    await oracle.release(cands)
    assert oracle.retained == 0
    await oracle.aclose()


@pytest.fixture
async def slow_fleet():
    """An HTTP server whose /info takes 0.2 s under any path prefix; counts requests and the
    most /info requests in flight at once."""
    seen = {"info": 0, "in_flight": 0, "most": 0}

    async def info(request: web.Request) -> web.Response:
        seen["info"] += 1
        seen["in_flight"] += 1
        seen["most"] = max(seen["most"], seen["in_flight"])
        try:
            await asyncio.sleep(0.2)
        finally:
            seen["in_flight"] -= 1
        return web.json_response({"model_id": "org/base"})

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/hang/{tail:.*}", hang)
    app.router.add_get("/{prefix}/info", info)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_probes_are_bounded(slow_fleet):
    base, seen = slow_fleet
    prober = Prober(limit=2)
    configs = [EndpointConfig(f"{base}/e{k}") for k in range(6)]
    started = time.monotonic()
    out = await prober.probe(configs)
    assert seen["info"] == 6 and seen["most"] == 2
    assert all(out[c.key]["info"] == {"model_id": "org/base"} for c in configs)
    assert time.monotonic() - started >= 0.6  # three rounds of two


async def test_concurrent_checks_share_one_probe_per_endpoint(slow_fleet):
    base, seen = slow_fleet
    prober = Prober(limit=32)
    configs = [EndpointConfig(f"{base}/e{k}") for k in range(3)]
    outs = await asyncio.gather(*(prober.probe(configs) for _ in range(50)))
    assert seen["info"] == 3  # not 150
    assert all(o == outs[0] for o in outs)


async def test_a_hanging_endpoint_is_unreachable_after_the_probe_timeout(slow_fleet):
    base, _ = slow_fleet
    started = time.monotonic()
    out = await Prober(timeout_s=0.3).probe([EndpointConfig(f"{base}/hang")])
    assert out[f"{base}/hang"]["unreachable"] is not None
    assert time.monotonic() - started < 2.0
