"""The pre-search check and spec validation name the field at fault; unreachable endpoints.

An unserved or uncheckable adapter names `spec.candidates[i].adapter_id` (every such candidate
is a field violation), NaN downloads name `spec.candidates[i].downloads`, an unknown
system_prompt value names `spec.system_prompt`. An endpoint that does not answer the check is
FAILED_PRECONDITION naming each candidate's endpoint, unless the spec allows it, and a search
whose every endpoint is down then ends FAILED (ABORTED from SelectBestModel).
"""

from __future__ import annotations

import math

import grpc
import pytest
from gemfinder import metrics
from gemfinder.candidates import Candidate
from gemfinder.errors import UserError
from gemfinder.oracles import InferenceOracle
from gemfinder.oracles.endpoints import EndpointConfig
from gemfinder.oracles.preflight import (
    CandidateProblems,
    EndpointUnreachable,
    allow_unreachable,
    check_candidates,
)
from gemfinder.search.spec import SearchSpec
from gemfinder.server.app import Server
from gemfinder.server.errors import DETAILS_KEY
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2

from tests.fleet_support import FAST_RETRY, make_items
from tests.pool_support import clear_best_pool, server_config, spec_proto, start_fleet

DEAD = "http://127.0.0.1:1"
UP = {"info": {"model_id": "org/base"}, "models": None, "unreachable": None}


def test_every_wrong_adapter_is_a_field_violation():
    cands = [
        Candidate("org/base", "http://a:80"),
        Candidate("org/x", "http://a:80", adapter_id="org/x"),
        Candidate("org/y", "http://b:80", adapter_id="org/y"),
    ]
    configs = {"http://a:80": EndpointConfig("http://a:80", adapters=("org/z",))}
    probes = {"http://a:80": UP, "http://b:80": UP}
    with pytest.raises(CandidateProblems) as err:
        check_candidates(cands, configs, probes)
    assert err.value.field == "candidates[1].adapter_id"
    assert [f for f, _ in err.value.violations] == [
        "candidates[1].adapter_id",
        "candidates[2].adapter_id",
    ]
    assert "not served" in err.value.violations[0][1]
    assert "cannot be checked" in err.value.violations[1][1]


def test_unreachable_endpoints_are_refused_unless_allowed():
    cands = [Candidate("org/base", "http://a:80"), Candidate("org/d", DEAD)]
    down = {"info": None, "models": None, "unreachable": "Connect call failed"}
    probes = {"http://a:80": UP, DEAD: down}
    with pytest.raises(EndpointUnreachable) as err:
        check_candidates(cands, {}, probes)
    assert err.value.kind == "failed_precondition"
    assert err.value.field == "candidates[1].endpoint" and DEAD in str(err.value)
    with allow_unreachable():
        check_candidates(cands, {}, probes)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_downloads_name_the_candidate(value):
    cands = [Candidate("a", "http://h:1"), Candidate("b", "http://h:2", downloads=value)]
    spec = SearchSpec(cands, make_items(2, tasks=("mmlu",)), budget=8)
    with pytest.raises(UserError) as err:
        spec.validate()
    assert err.value.field == "spec.candidates[1].downloads"


@pytest.mark.parametrize("value", [7, "system", None])
def test_a_system_prompt_that_is_not_a_bool_is_refused(value):
    cands = [Candidate("a", "http://h:1"), Candidate("b", "http://h:2")]
    spec = SearchSpec(cands, make_items(2, tasks=("mmlu",)), budget=8, system_prompt=value)
    with pytest.raises(UserError) as err:
        spec.validate()
    assert err.value.field == "spec.system_prompt"


def violations(err: grpc.aio.AioRpcError, kind):
    status = status_pb2.Status.FromString(dict(err.trailing_metadata())[DETAILS_KEY])
    detail = kind()
    assert status.details[0].Unpack(detail)
    return detail


async def test_over_grpc(tmp_path):
    matrix, items = clear_best_pool(n_models=6, per_task=3)
    fleet, candidates, configs = await start_fleet(matrix, items)
    server = Server(  # the dead endpoints below are allowed as patterns without a *
        server_config(tmp_path, configs, allow_endpoint_patterns=f"{DEAD},http://127.0.0.1:2"),
        oracle=InferenceOracle(configs, policy=FAST_RETRY),
    )
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            adapter = spec_proto(candidates, items)
            adapted = next(i for i, c in enumerate(adapter.candidates) if c.adapter_id)
            adapter.candidates[adapted].adapter_id = "not-served"
            nan = spec_proto(candidates, items)
            nan.candidates[2].downloads = math.nan
            prompt = spec_proto(candidates, items)
            prompt.system_prompt = 7  # proto3 keeps unknown enum numbers
            for spec, field in (
                (adapter, f"spec.candidates[{adapted}].adapter_id"),
                (nan, "spec.candidates[2].downloads"),
                (prompt, "spec.system_prompt"),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.StartSearch(pb.StartSearchRequest(spec=spec))
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
                bad = violations(err.value, error_details_pb2.BadRequest)
                assert bad.field_violations[0].field == field, (field, bad)

            dead = [Candidate("org/g1", DEAD), Candidate("org/g2", "http://127.0.0.1:2")]
            spec = spec_proto(dead, items, per_model=3)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.SelectBestModel(pb.SelectBestModelRequest(spec=spec), timeout=30)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            failure = violations(err.value, error_details_pb2.PreconditionFailure)
            assert [v.subject for v in failure.violations] == [
                "spec.candidates[0].endpoint",
                "spec.candidates[1].endpoint",
            ]
            assert {v.type for v in failure.violations} == {"ENDPOINT_UNREACHABLE"}

            failed = metrics.SEARCHES_FINISHED.labels("failed")._value.get()
            succeeded = metrics.SEARCHES_FINISHED.labels("succeeded")._value.get()
            spec.allow_unreachable_endpoints = True
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.SelectBestModel(
                    pb.SelectBestModelRequest(spec=spec, request_id="down"), timeout=30
                )
            assert err.value.code() == grpc.StatusCode.ABORTED
            assert DEAD in err.value.details() and "127.0.0.1:2" in err.value.details()
            (search,) = (
                await stub.ListSearches(pb.ListSearchesRequest(request_id="down"))
            ).searches
            assert search.state == pb.SEARCH_STATE_FAILED and DEAD in search.error
            assert search.progress.failed <= 2 * search.progress.budget
            assert metrics.SEARCHES_FINISHED.labels("failed")._value.get() == failed + 1
            assert metrics.SEARCHES_FINISHED.labels("succeeded")._value.get() == succeeded
    finally:
        await server.stop(0)
        await fleet.stop()
