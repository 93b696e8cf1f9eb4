"""Hostile answers reach the samples log without failing the search: text neither database can
hold (NUL, a lone surrogate, which JSON allows) and an answer far over the log's cap, from real
HTTP endpoints through the oracle, the grader and both stores."""

from __future__ import annotations

import json

from aiohttp import web
from gemfinder import samples
from gemfinder.candidates import Candidate
from gemfinder.oracles import EndpointConfig, InferenceOracle
from gemfinder.search.manager import SearchManager
from gemfinder.search.spec import SearchSpec
from gemfinder.store import open_store

from tests.fleet_support import FAST_RETRY, make_items

NASTY = "The answer is A\u0000 and \ud800 then some"  # json.dumps writes \u0000 and \ud800
LONG = "The answer is A. " + "blah " * 40_000  # 200 KB: under --max-answer-bytes, over 8 KiB


async def endpoint(text: str, model_id: str) -> tuple[web.AppRunner, str]:
    async def info(request: web.Request) -> web.Response:
        return web.json_response({"model_id": model_id, "max_concurrent_requests": 4})

    async def generate(request: web.Request) -> web.Response:
        body = {"generated_text": text, "details": {"generated_tokens": 3}}
        return web.Response(body=json.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_get("/info", info)
    app.router.add_post("/generate", generate)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_nul_surrogates_and_huge_answers_are_logged_not_fatal(new_db):
    servers = [await endpoint(NASTY, "org/nasty"), await endpoint(LONG, "org/long")]
    urls = [url for _, url in servers]
    oracle = InferenceOracle([EndpointConfig(u) for u in urls], policy=FAST_RETRY)
    store = open_store(new_db("h.db"))
    try:
        items = make_items(3, tasks=("mmlu",))
        cands = [Candidate("org/nasty", urls[0]), Candidate("org/long", urls[1])]
        spec = SearchSpec(cands, items, budget=2 * len(items), algorithm="sh", seed=0)
        spec.validate()
        manager = SearchManager(store, oracle)
        try:
            row = await manager.wait((await manager.start(spec)).id)
        finally:
            await manager.close()
        assert row.state == "succeeded", row.error
        lines = list(samples.export(store, row.id))[1:]
        assert {x["model_id"] for x in lines} == {"org/nasty", "org/long"}
        for x in lines:
            assert x["extracted"] == "A"  # graded on the text as received
            if x["model_id"] == "org/nasty":
                assert x["response"] == "The answer is A\ufffd and ? then some"
                assert not x["truncated"]
            else:
                assert x["truncated"] and x["response_bytes"] == len(LONG)
                assert len(x["response"].encode()) == samples.SAMPLE_MAX_BYTES
                assert LONG.startswith(x["response"])
            samples.dumps(x)  # strict JSON, writable
    finally:
        store.close()
        await oracle.aclose()
        for runner, _ in servers:
            await runner.cleanup()
