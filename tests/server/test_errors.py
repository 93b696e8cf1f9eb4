"""The error table: each kind maps to one status; bad requests are INVALID_ARGUMENT with fields."""

from __future__ import annotations

import grpc
import pytest
from gemfinder import _core
from gemfinder.config import ServerConfig
from gemfinder.errors import UserError
from gemfinder.oracles import InferenceOracle
from gemfinder.search.manager import SearchNotFound, TooManySearches
from gemfinder.server.app import Server
from gemfinder.server.errors import DETAILS_KEY, STATUS_OF, ServiceError, kind_of, rich_status
from gemfinder.server.interceptors import Unauthenticated
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2

from tests.pool_support import clear_best_pool, server_config, spec_proto, start_fleet

TABLE = [
    (UserError("spec.budget", "too small"), grpc.StatusCode.INVALID_ARGUMENT),
    (SearchNotFound("x"), grpc.StatusCode.NOT_FOUND),
    (TooManySearches("busy"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unauthenticated("no"), grpc.StatusCode.UNAUTHENTICATED),
    (ServiceError("cancelled", "c"), grpc.StatusCode.CANCELLED),
    (ServiceError("aborted", "a"), grpc.StatusCode.ABORTED),
    (RuntimeError("bug"), grpc.StatusCode.INTERNAL),
]


@pytest.mark.parametrize(("exc", "code"), TABLE)
def test_error_table(exc, code):
    assert STATUS_OF[kind_of(exc)] == code
    assert rich_status(exc)[0] == code


def test_core_search_error_is_invalid_argument():
    with pytest.raises(_core.SearchError) as err:
        _core.Scheduler("nope", 3, 3, 9, 0)
    assert rich_status(err.value)[0] == grpc.StatusCode.INVALID_ARGUMENT


def _bad(candidates, items):
    good = spec_proto(candidates, items)
    dup = spec_proto(candidates, items)
    dup.candidates[1].model_id = dup.candidates[0].model_id
    url = spec_proto(candidates, items)
    url.candidates[0].endpoint = "ftp://x"
    algo = spec_proto(candidates, items, algorithm="nope")
    # Reference rows pick without asking: a live search of one could only fail (spec.py).
    reference = spec_proto(candidates, items, algorithm="random")
    budget = spec_proto(candidates, items)
    budget.budget.total = 3
    task = spec_proto(candidates, items)
    task.query_set.inline.items[0].task = "nope"
    adapter = spec_proto(candidates, items)
    adapter.candidates[1].adapter_id = "not-served"
    gpu = spec_proto(candidates, items)
    gpu.gpu_seconds = -5
    return [
        (pb.SearchSpec(), "spec.candidates"),
        (pb.SearchSpec(candidates=good.candidates[:1], query_set=good.query_set), "candidates"),
        (dup, "spec.candidates[1].model_id"),
        (url, "spec.candidates[0].endpoint"),
        (algo, "spec.algorithm"),
        (reference, "spec.algorithm"),
        (budget, "spec.budget"),
        (task, "spec.query_set.inline.items[0]"),
        (pb.SearchSpec(candidates=good.candidates), "spec.query_set"),
        (pb.SearchSpec(candidates=good.candidates, query_set=pb.QuerySet(name="x")), "name"),
        (adapter, "spec.candidates"),
        (gpu, "spec.gpu_seconds"),
    ]


async def test_bad_requests_over_grpc(tmp_path):
    matrix, items = clear_best_pool(n_models=6, per_task=4)
    fleet, candidates, configs = await start_fleet(matrix, items)
    server = Server(
        server_config(tmp_path, configs),
        oracle=InferenceOracle(configs),
    )
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            for spec, field in _bad(candidates, items):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.StartSearch(pb.StartSearchRequest(spec=spec))
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
                details = dict(err.value.trailing_metadata())[DETAILS_KEY]
                status = status_pb2.Status.FromString(details)
                bad = error_details_pb2.BadRequest()
                assert status.details[0].Unpack(bad)
                assert field in bad.field_violations[0].field, (field, bad)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ListSearches(pb.ListSearchesRequest(page_token="%%%"))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await server.stop(0)
        await fleet.stop()


async def test_bearer_token(tmp_path):
    config = ServerConfig(
        address="127.0.0.1:0", metrics_port=0, db=str(tmp_path / "a.db"), token="s3cret"
    )
    server = Server(config, oracle=InferenceOracle())
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ListSearches(pb.ListSearchesRequest())
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ok = await stub.ListSearches(
                pb.ListSearchesRequest(), metadata=(("authorization", "Bearer s3cret"),)
            )
            assert list(ok.searches) == []
    finally:
        await server.stop(0)
