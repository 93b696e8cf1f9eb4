"""The samples log and its export: a mixed query set (arc_challenge + gsm8k) answered by the
simulated fleet through the real oracle and graders, on both stores; cached answers show the
original's sample; texts are capped and hostile text is stored, never failing a search."""

from __future__ import annotations

import json

import pytest
from gemfinder import samples
from gemfinder.oracles import InferenceOracle
from gemfinder.search.manager import SearchManager
from gemfinder.search.spec import SearchSpec
from gemfinder.store import open_store
from gemfinder.tasks import get_task, task_label

from tests.fleet_support import FAST_RETRY, make_items, make_matrix
from tests.pool_support import start_fleet


def mixed():
    items = make_items(10, tasks=("arc_challenge", "gsm8k"))
    models = [f"org/m{k}" for k in range(6)]
    return make_matrix(items, models, seed=5), items


async def run(store, spec, oracle):
    manager = SearchManager(store, oracle)
    try:
        row = await manager.start(spec)
        return await manager.wait(row.id)
    finally:
        await manager.close()


def exported(store, search_id) -> list[dict]:
    lines = [samples.dumps(x) for x in samples.export(store, search_id)]
    return [json.loads(line) for line in lines]


async def test_every_graded_query_is_logged_regradable_and_exported_with_provenance(new_db):
    matrix, items = mixed()
    fleet, candidates, configs = await start_fleet(matrix, items)
    oracle = InferenceOracle(configs, policy=FAST_RETRY)
    store = open_store(new_db("s.db"))
    try:
        spec = SearchSpec(candidates, items, budget=60, seed=3, task_weights={"gsm8k": 2.0})
        spec.validate()
        row = await run(store, spec, oracle)
        assert row.state == "succeeded", row.error
        lines = exported(store, row.id)
        head, body = lines[0], lines[1:]
        assert head["format"] == samples.FORMAT and head["search_id"] == row.id
        assert head["seed"] == 3 and head["algorithm"] == spec.algorithm
        assert SearchSpec.from_dict(head["spec"]).digest() == spec.digest()
        made = head["provenance"]
        assert made["gemfinder_version"] and made["core_version"]
        assert set(made) >= {"requirements_lock_sha256", "git_commit", "lm_eval_built_with"}
        assert head["recommended_model_id"] == row.result.recommended_model_id
        # One line per graded query, the gem check's included; none was cached.
        assert len(body) == row.result.queries_spent
        ids = [c.model_id for c in candidates]
        order = [(ids.index(x["model_id"]), [it.id for it in items].index(x["item_id"]))
                 for x in body]  # fmt: skip
        assert order == sorted(order) and len(set(order)) == len(order)
        by_id = {it.id: it for it in items}
        keys_hashes = {}
        from gemfinder.search.spec import CacheKeys

        keys = CacheKeys(spec)
        for i, it in enumerate(items):
            keys_hashes[it.id] = keys.prompt_hashes[i]
        for x in body:
            item = by_id[x["item_id"]]
            assert x["task"] == task_label(item) and not x["cached"]
            assert x["prompt_sha256"] == keys_hashes[item.id]
            grade = get_task(item.task).grade(item, x["response"])  # the response regrades
            assert (int(grade.correct), grade.extracted) == (x["reward"], x["extracted"])
            assert x["response_bytes"] == len(x["response"].encode()) and not x["truncated"]
        assert {x["task"] for x in body} == {"arc_challenge", "gsm8k"}
        # Deterministic: the same bytes again.
        assert exported(store, row.id) == lines

        # Another search over the same models and items: answers come from the cache, and the
        # log shows the response of the search that paid for them.
        again = SearchSpec(candidates, items, budget=60, seed=4)
        second = await run(store, again, oracle)
        assert second.state == "succeeded" and second.result.queries_cached > 0
        rows = exported(store, second.id)[1:]
        cached = [x for x in rows if x["cached"]]
        assert len(cached) == second.result.queries_cached
        first = {(x["model_id"], x["item_id"]): x for x in body}
        for x in cached:
            original = first[(x["model_id"], x["item_id"])]
            assert x["original_search_id"] == row.id
            assert (x["response"], x["extracted"], x["reward"]) == (
                original["response"], original["extracted"], original["reward"],
            )  # fmt: skip
    finally:
        store.close()
        await oracle.aclose()
        await fleet.stop()


def test_texts_are_capped_and_hostile_text_is_stored(new_db):
    store = open_store(new_db("c.db"))
    try:
        store.create_search("s", None, {"candidates": [], "items": []})
        big = "é" * samples.SAMPLE_MAX_BYTES  # 2 bytes each: twice the cap
        hostile = "ok\x00 then \ud800 lone surrogate"
        logged = [
            samples.sample(0, 0, "k0", "h", 1, response=big, extracted="x" * 10_000),
            samples.sample(0, 1, "k1", "h", 0, response=hostile, extracted="\ud800"),
            samples.sample(1, 0, "k0", "h", 1, cached=True, response="ignored"),
        ]
        store.put_samples("s", logged)
        store.put_samples("s", logged[:1])  # told again after a resume: kept once
        got = store.samples("s", (-1, -1), 10)
        assert [(s.model, s.item) for s in got] == [(0, 0), (0, 1), (1, 0)]
        capped = got[0]
        assert len(capped.response.encode()) == samples.SAMPLE_MAX_BYTES
        assert capped.response_bytes == 2 * samples.SAMPLE_MAX_BYTES
        assert (
            len(capped.extracted) == samples.SAMPLE_MAX_BYTES and capped.extracted_bytes == 10_000
        )
        assert got[1].response == "ok\ufffd then ? lone surrogate" and got[1].extracted == "?"
        assert got[2].cached and got[2].response is None  # a cached sample has no text of its own
        assert store.samples("s", (0, 1), 10) == got[2:]  # pages after (model, item)
        originals = store.original_samples(["k0", "k1", "k-unknown"])
        assert originals["k0"] == ("s", capped) and set(originals) == {"k0", "k1"}
    finally:
        store.close()


@pytest.mark.parametrize(("limit", "pages"), [(1, 3), (2, 2), (500, 1)])
def test_export_pages_through_the_log_in_order(monkeypatch, limit, pages):
    store = open_store(":memory:")
    items = make_items(1, tasks=("arc_challenge", "gsm8k"))
    spec = {
        "candidates": [{"model_id": "a"}, {"model_id": "b"}],
        "algorithm": "sh",
        "seed": 0,
        "items": [{"id": it.id, "task": it.task, "fields": it.fields} for it in items],
    }
    store.create_search("s", None, spec)
    store.put_samples("s", [samples.sample(m, i, f"k{m}{i}", "h", 1, response="A")
                            for m, i in [(1, 0), (0, 1), (0, 0)]])  # fmt: skip
    monkeypatch.setattr(samples, "PAGE", limit)
    calls = []
    original = store.samples
    monkeypatch.setattr(store, "samples", lambda *a: calls.append(a) or original(*a))
    lines = list(samples.export(store, "s"))
    assert lines[0]["provenance"] is None  # created without one, as before schema 5
    assert [(x["model_id"], x["item_id"]) for x in lines[1:]] == [
        ("a", items[0].id), ("a", items[1].id), ("b", items[0].id),
    ]  # fmt: skip
    assert len(calls) == pages + 1  # the last call finds nothing more
