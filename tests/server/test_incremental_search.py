"""Incremental search through a real server and a simulated fleet (search/incremental.py).

The parent searches part of a pool; the incremental search names it (spec.parent_search_id)
and lists the whole pool. Checked from the outside: which models the fleet really served.
"""

from __future__ import annotations

import grpc
import pytest
from gemfinder.oracles import InferenceOracle
from gemfinder.server.app import Server
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2

from tests.fleet_support import FAST_RETRY
from tests.pool_support import BEST, clear_best_pool, server_config, spec_proto, start_fleet


@pytest.fixture
async def env(tmp_path, request):
    latency = getattr(request, "param", 0.002)
    matrix, items = clear_best_pool(n_models=19)
    fleet, candidates, configs = await start_fleet(matrix, items, latency_s=latency)
    oracle = InferenceOracle(configs, policy=FAST_RETRY)
    server = Server(server_config(tmp_path, configs), oracle=oracle)
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.ModelSearchServiceStub(channel), fleet, matrix, candidates, items
    await channel.close()
    await server.stop(0)
    await fleet.stop()


def served(fleet) -> dict[str, int]:
    """Queries each model really answered, over every endpoint of the fleet."""
    out: dict[str, int] = {}
    for name in fleet.names:
        for model, n in fleet.state(name).served.items():
            out[model] = out.get(model, 0) + n
    return out


async def search(stub, candidates, items, **fields) -> pb.Search:
    # No gem check in the parent: its items are then exactly a prefix of the item order.
    spec = spec_proto(candidates, items, gem_check_share=0.0, **fields)
    reply = await stub.SelectBestModel(pb.SelectBestModelRequest(spec=spec), timeout=60)
    assert reply.search.state == pb.SEARCH_STATE_SUCCEEDED, reply.search.error
    return reply.search


def seen(search: pb.Search) -> dict[str, int]:
    return {e.model_id: e.items_seen for e in search.result.ranking}


async def test_finds_a_planted_better_newcomer_and_pays_nothing_twice(env):
    stub, fleet, _, candidates, items = env
    old = [c for c in candidates if c.model_id != BEST]
    parent = await search(stub, old, items, seed=5)
    assert parent.result.recommended_model_id != BEST
    before = served(fleet)
    spec = spec_proto(
        candidates, items, gem_check_share=0.0, parent_search_id=parent.search_id, incumbents=4
    )
    request = pb.SelectBestModelRequest(spec=spec, request_id="grown-1")
    child = (await stub.SelectBestModel(request, timeout=60)).search
    after = served(fleet)
    # A retry with the same request id attaches to the same search: nothing is paid twice.
    again = (await stub.SelectBestModel(request, timeout=60)).search
    assert again.search_id == child.search_id and served(fleet) == after
    assert child.parent_search_id == parent.search_id
    listed = await stub.ListSearches(pb.ListSearchesRequest())
    assert {s.search_id: s.parent_search_id for s in listed.searches} == {
        parent.search_id: "",
        child.search_id: parent.search_id,
    }
    inc = child.result.incremental
    assert child.result.recommended_model_id == BEST
    assert inc.parent_search_id == parent.search_id
    assert inc.parent_winner_model_id == parent.result.recommended_model_id
    assert inc.winner_changed
    assert list(inc.newcomers) == [BEST]
    assert list(inc.incumbents) == [e.model_id for e in parent.result.ranking[:4]]
    assert inc.left_out == len(candidates) - 5 and not inc.removed
    assert {e.model_id for e in child.result.ranking} == {*inc.incumbents, BEST}
    # An incumbent's items graded by the parent come from the cache: it is queried only for
    # the items past those (the same item order: the parent's seed).
    was, now = seen(parent), seen(child)
    for model in inc.incumbents:
        paid = after.get(model, 0) - before.get(model, 0)
        assert paid == max(0, now[model] - was[model]), model
    assert after.get(BEST, 0) - before.get(BEST, 0) == now[BEST]
    cached = sum(min(was[m], now[m]) for m in inc.incumbents)
    assert cached > 0 and child.result.queries_cached == cached
    assert sum(after.values()) - sum(before.values()) == child.result.queries_spent - cached


async def test_keeps_the_winner_when_newcomers_are_worse_and_drops_removed_models(env):
    stub, fleet, matrix, candidates, items = env
    acc = dict(zip(matrix.models, matrix.correct.mean(axis=1), strict=True))
    weakest = sorted(acc, key=acc.get)[:3]
    old = [c for c in candidates if c.model_id not in weakest]
    parent = await search(stub, old, items, seed=2)
    assert parent.result.recommended_model_id == BEST
    second = parent.result.ranking[1].model_id
    current = [c for c in candidates if c.model_id != second]  # left the tree since
    child = await search(stub, current, items, parent_search_id=parent.search_id, incumbents=3)
    inc = child.result.incremental
    assert child.result.recommended_model_id == BEST
    assert not inc.winner_changed
    assert sorted(inc.newcomers) == sorted(weakest)
    assert list(inc.removed) == [second]
    # The next of the parent's ranking kept in its place.
    assert list(inc.incumbents) == [
        e.model_id for e in parent.result.ranking[:4] if e.model_id != second
    ]
    # The chain goes on: the next search from this one takes no old model for a newcomer.
    grandchild = await search(stub, current, items, parent_search_id=child.search_id)
    assert list(grandchild.result.incremental.newcomers) == []


def violation(err: grpc.aio.AioRpcError) -> tuple[str, str]:
    """(field or subject, description) of the first violation of a rich status."""
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    status = status_pb2.Status.FromString(raw)
    for detail in status.details:
        for kind in (error_details_pb2.BadRequest, error_details_pb2.PreconditionFailure):
            if detail.Is(kind.DESCRIPTOR):
                msg = kind()
                detail.Unpack(msg)
                v = msg.field_violations[0] if kind is error_details_pb2.BadRequest else None
                if v is not None:
                    return v.field, v.description
                return msg.violations[0].subject, msg.violations[0].description
    raise AssertionError(f"no violation in {status}")


async def test_unknown_parent_bad_seed_and_bad_incumbents_are_refused(env):
    stub, _, _, candidates, items = env
    spec = spec_proto(candidates, items, parent_search_id="no-such-search")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SelectBestModel(pb.SelectBestModelRequest(spec=spec), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert violation(err.value)[0] == "spec.parent_search_id"
    parent = await search(stub, candidates[:-2], items, seed=4)
    for fields, name in (
        ({"seed": 9}, "spec.seed"),
        ({"incumbents": 0}, "spec.incumbents"),
    ):
        spec = spec_proto(candidates, items, parent_search_id=parent.search_id, **fields)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SelectBestModel(pb.SelectBestModelRequest(spec=spec), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert violation(err.value)[0] == name
    spec = spec_proto(candidates, items, incumbents=3)  # without a parent
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SelectBestModel(pb.SelectBestModelRequest(spec=spec), timeout=30)
    assert violation(err.value)[0] == "spec.incumbents"


@pytest.mark.parametrize("env", [0.05], indirect=True)  # slow endpoints: the parent still runs
async def test_a_running_parent_is_a_failed_precondition(env):
    stub, _, _, candidates, items = env
    started = await stub.StartSearch(
        pb.StartSearchRequest(spec=spec_proto(candidates[:-2], items, per_model=40))
    )
    spec = spec_proto(candidates, items, parent_search_id=started.search.search_id)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SelectBestModel(pb.SelectBestModelRequest(spec=spec), timeout=30)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    subject, reason = violation(err.value)
    assert subject == "spec.parent_search_id" and "still running" in reason
    await stub.CancelSearch(pb.CancelSearchRequest(search_id=started.search.search_id))
