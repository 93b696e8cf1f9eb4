"""PlanSearch: validated exactly as a start is (the same statuses and field violations, the same
endpoint allowlist), a plan in the answer, and a huge request answered within the simulation's
bounds while the server keeps serving."""

from __future__ import annotations

import json
import threading
import time

import grpc
import pytest
from gemfinder.cli.search import MATRIX_ENDPOINT
from gemfinder.search import plan
from gemfinder.v1 import gemfinder_pb2 as pb
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from tests.fleet_support import make_items
from tests.server.fuzz_support import MATRIX, SERVICE
from tests.server.test_fuzz_hostile import valid_spec


def _call(channel, method: str, request, response, timeout: float = 60):
    """(status, field violations, answer) of one call."""
    try:
        raw = channel.unary_unary(SERVICE + method)(request.SerializeToString(), timeout=timeout)
    except grpc.RpcError as err:
        status = rpc_status.from_call(err)
        fields = []
        if status is not None and status.details:
            bad = error_details_pb2.BadRequest()
            status.details[0].Unpack(bad)
            fields = [(v.field, v.description) for v in bad.field_violations]
        return err.code(), fields, None
    return grpc.StatusCode.OK, [], response.FromString(raw)


def _plan(channel, spec, trials: int = 0, timeout: float = 60):
    request = pb.PlanSearchRequest(spec=spec, trials=trials)
    return _call(channel, "PlanSearch", request, pb.PlanSearchResponse, timeout)


def test_a_plan_of_a_valid_spec(channel):
    code, _, answer = _plan(channel, valid_spec(), trials=3)
    assert code == grpc.StatusCode.OK
    found = answer.plan
    assert found.models == len(MATRIX.models) and found.trials == 3
    assert found.queries.mean > 0 and found.queries.p10 <= found.queries.p90
    assert 0 <= found.p_best <= 1 and found.quality_trials >= 10
    assert not found.accounted and found.gpu_seconds.mean == 0  # no cost model in the file
    assert "max_new_tokens" in found.token_source
    assert not found.HasField("gpu_seconds_cap") and found.planned_budget == found.budget
    # Under a cap: no cost model, so every query's time would be measured from responses,
    # which a plan does not have: the cap is reported, the budget stays, nothing is stopped.
    capped = valid_spec()
    capped.gpu_seconds = 50.0
    code, _, under = _plan(channel, capped, trials=2)
    assert code == grpc.StatusCode.OK, under
    assert under.plan.gpu_seconds_cap == 50.0 and under.plan.capped == 0.0
    assert under.plan.planned_budget == under.plan.budget == found.budget
    # The same request, the same plan: everything is seeded.
    assert _plan(channel, valid_spec(), trials=3)[2] == answer
    # A plan starts no search.
    listed = _call(channel, "ListSearches", pb.ListSearchesRequest(), pb.ListSearchesResponse)
    assert all(s.n_candidates for s in listed[2].searches)
    before = len(listed[2].searches)
    _plan(channel, valid_spec(seed=7))
    after = _call(channel, "ListSearches", pb.ListSearchesRequest(), pb.ListSearchesResponse)
    assert len(after[2].searches) == before


def _bad(change):
    spec = valid_spec()
    change(spec)
    return spec


BAD_SPECS = {
    "no candidates": lambda s: s.ClearField("candidates"),
    "duplicate candidate": lambda s: s.candidates.append(s.candidates[0]),
    "unknown algorithm": lambda s: setattr(s, "algorithm", "nope"),
    "budget below the minimum": lambda s: s.budget.CopyFrom(pb.Budget(total=2)),
    "unknown parameter": lambda s: s.params.update({"nope": 1.0}),
    "unknown task weight": lambda s: s.task_weights.update({"nope": 1.0}),
    "malformed endpoint": lambda s: setattr(s.candidates[1], "endpoint", "http://[::1"),
    "endpoint not allowed": lambda s: setattr(s.candidates[2], "endpoint", "http://evil:1"),
    "unknown query set": lambda s: s.query_set.CopyFrom(pb.QuerySet(name="nope")),
    "NaN downloads": lambda s: setattr(s.candidates[0], "downloads", float("nan")),
}


@pytest.mark.parametrize("change", BAD_SPECS.values(), ids=BAD_SPECS.keys())
def test_refused_exactly_as_a_start(channel, change):
    spec = _bad(change)
    started = _call(channel, "StartSearch", pb.StartSearchRequest(spec=spec), pb.Search)
    planned = _plan(channel, spec)
    assert started[0] in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
    assert planned[:2] == started[:2]


def test_plan_only_bounds_name_their_field(channel):
    code, fields, _ = _plan(channel, valid_spec(), trials=-1)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fields[0][0] == "trials"
    code, fields, _ = _plan(channel, valid_spec(), trials=plan.MAX_TRIALS + 1)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fields[0][0] == "trials"
    spec = _huge(budget=plan.MAX_PULLS + 1)
    code, fields, _ = _plan(channel, spec)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fields[0][0] == "spec.budget"


def _huge(budget: int, algorithm: str = "") -> pb.SearchSpec:
    """The largest plans there are: 5,000 candidates (the limit), 500 items, the largest budget
    a plan simulates (TTTS: the largest budget x candidates)."""
    items = make_items(125, tasks=("arc_challenge", "mmlu", "winogrande", "gsm8k"))
    return pb.SearchSpec(
        algorithm=algorithm,
        candidates=[
            pb.Candidate(model_id=f"org/m{k}", endpoint=MATRIX_ENDPOINT, adapter_id=f"a{k}")
            for k in range(5000)
        ],
        query_set=pb.QuerySet(
            inline=pb.InlineQuerySet(
                items=[
                    pb.QueryItem(id=it.id, task=it.task, fields_json=json.dumps(it.fields))
                    for it in items
                ]
            )
        ),
        budget=pb.Budget(total=budget),
    )


def test_a_huge_plan_does_not_freeze_the_server(channel):
    """Three of the largest plans at once (TTTS among them): two run (off the event loop,
    bounded), the third is RESOURCE_EXHAUSTED, and health and ListSearches answer promptly all
    the while."""
    answers: list = []

    def one(spec):
        answers.append(_plan(channel, spec, trials=plan.MAX_TRIALS, timeout=120))

    ttts = _huge(plan.SEQUENTIAL_WORK // 5000, "ttts")
    specs = [_huge(plan.MAX_PULLS), ttts, _huge(plan.MAX_PULLS)]
    threads = [threading.Thread(target=one, args=(spec,)) for spec in specs]
    started = time.monotonic()
    for t in threads:
        t.start()
    health = health_pb2_grpc.HealthStub(channel)
    slowest = 0.0
    while any(t.is_alive() for t in threads):
        t0 = time.monotonic()
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
        _call(channel, "ListSearches", pb.ListSearchesRequest(), pb.ListSearchesResponse, 5)
        slowest = max(slowest, time.monotonic() - t0)
        time.sleep(0.1)
    for t in threads:
        t.join()
    codes = sorted(code.name for code, _, _ in answers)
    assert codes == ["OK", "OK", "RESOURCE_EXHAUSTED"], answers
    done = [a.plan for code, _, a in answers if code == grpc.StatusCode.OK]
    assert all(p.trials == 1 and p.models == 5000 for p in done)  # trials x budget: capped
    assert time.monotonic() - started < 120
    assert slowest < 2.0, slowest  # the loop kept its turns (2 cores shared with others)


def test_an_incremental_spec_is_planned_from_its_parent(channel):
    """An incremental spec (parent_search_id) is refused as a start refuses it (an unknown
    parent: NOT_FOUND), else planned on the pool its start narrows it to, the incumbents'
    answers from the parent told from the evaluation cache (tests/search/test_plan_incremental
    compares such a plan with the search)."""
    missing = valid_spec()
    missing.parent_search_id = "nope"
    started = _call(channel, "StartSearch", pb.StartSearchRequest(spec=missing), pb.Search)
    assert started[0] == grpc.StatusCode.NOT_FOUND and started[1][0][0] == "spec.parent_search_id"
    assert _plan(channel, missing)[:2] == started[:2]
    parent = valid_spec()
    del parent.candidates[4:]  # the tree of yesterday: 4 models, 2 new since
    request = pb.SelectBestModelRequest(spec=parent)
    code, _, done = _call(channel, "SelectBestModel", request, pb.SelectBestModelResponse)
    assert code == grpc.StatusCode.OK
    child = valid_spec()
    child.parent_search_id = done.search.search_id
    child.incumbents = 2
    code, _, answer = _plan(channel, child, trials=4)
    assert code == grpc.StatusCode.OK, answer
    assert answer.plan.models == 4  # 2 incumbents + 2 newcomers
    assert answer.plan.cached.mean > 0 and answer.plan.cached.p10 <= answer.plan.cached.p90
    # A plan starts nothing: the parent is still the newest search.
    listed = _call(channel, "ListSearches", pb.ListSearchesRequest(), pb.ListSearchesResponse)
    assert listed[2].searches[0].search_id == done.search.search_id
