"""Fuzzing SelectBestModel, StartSearch and PlanSearch on a real server: OK or INVALID_ARGUMENT,
never INTERNAL.

The server answers from a correctness matrix (ReplayOracle), so the rare valid request runs a
whole search in milliseconds; its event loop runs in a thread and hypothesis drives a
synchronous channel. Random bytes test the decoding path as well as random messages.
"""

from __future__ import annotations

import json

import grpc
from gemfinder import _core
from gemfinder.cli.search import MATRIX_ENDPOINT
from gemfinder.v1 import gemfinder_pb2 as pb
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.fuzz_support import ITEMS, MATRIX, SERVICE

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


texts = st.text(max_size=12)
real_candidates = [
    pb.Candidate(model_id=m, endpoint=MATRIX_ENDPOINT, adapter_id=m, downloads=float(d))
    for m, d in zip(MATRIX.models, MATRIX.downloads, strict=True)
]
random_candidates = st.builds(
    pb.Candidate,
    model_id=st.one_of(st.sampled_from(MATRIX.models), texts),
    endpoint=st.one_of(st.sampled_from([MATRIX_ENDPOINT, "ftp://x", "http://", "http:/a"]), texts),
    backend=st.integers(0, 5),
    adapter_id=texts,
    downloads=st.one_of(st.none(), st.floats()),
    official=st.booleans(),
)
real_items = [
    pb.QueryItem(id=it.id, task=it.task, fields_json=json.dumps(it.fields)) for it in ITEMS
]
random_items = st.builds(
    pb.QueryItem,
    id=texts,
    task=st.sampled_from(["mmlu", "gsm8k", "arc_challenge", "nope", ""]),
    fields_json=st.one_of(texts, st.sampled_from(["{}", "[]", '{"question": 1}', "null"])),
)
query_sets = st.one_of(
    st.just(pb.QuerySet()),
    st.builds(pb.QuerySet, name=texts),
    st.builds(
        lambda items: pb.QuerySet(inline=pb.InlineQuerySet(items=items)),
        st.lists(st.one_of(st.sampled_from(real_items), random_items), max_size=12),
    ),
)
budgets = st.one_of(
    st.just(pb.Budget()),
    st.builds(pb.Budget, total=st.integers(-(2**63), 2**63 - 1)),
    st.builds(pb.Budget, per_model=st.one_of(st.integers(-5, 60), st.integers(0, 2**63 - 1))),
)
specs = st.builds(
    pb.SearchSpec,
    candidates=st.lists(st.one_of(st.sampled_from(real_candidates), random_candidates), max_size=8),
    query_set=query_sets,
    budget=budgets,
    algorithm=st.sampled_from([*_core.ALGORITHMS, "", "nope"]),
    params=st.dictionaries(
        st.sampled_from(["first_cut", "first_round_share", "c", "leader_prob", "x", ""]),
        st.floats(),
        max_size=3,
    ),
    seed=st.integers(0, 2**64 - 1),
    system_prompt=st.integers(0, 4),
)
methods = st.sampled_from(["SelectBestModel", "StartSearch", "PlanSearch"])


def check(call) -> None:
    try:
        call()
    except grpc.RpcError as err:
        # PERMISSION_DENIED: a well-formed endpoint URL that is not in the endpoints file.
        refused = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
        assert err.code() in refused, (err.code(), err.details())
        status = rpc_status.from_call(err)
        assert status is not None, "no google.rpc.Status details"
        bad = error_details_pb2.BadRequest()
        assert status.details and status.details[0].Unpack(bad)
        assert bad.field_violations and bad.field_violations[0].field


@FUZZ
@given(method=methods, spec=specs, request_id=st.text(max_size=140))
def test_random_requests_are_ok_or_invalid_argument(channel, method, spec, request_id):
    request_type = getattr(pb, f"{method}Request")
    response_type = getattr(pb, f"{method}Response")
    call = channel.unary_unary(
        SERVICE + method,
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    fields = {"spec": spec}
    if "request_id" in request_type.DESCRIPTOR.fields_by_name:  # a plan starts nothing to name
        fields["request_id"] = request_id
    check(lambda: call(request_type(**fields), timeout=10))


@FUZZ
@given(method=methods, raw=st.binary(max_size=300))
def test_random_bytes_are_ok_or_invalid_argument(channel, method, raw):
    call = channel.unary_unary(SERVICE + method)  # bytes in, bytes out
    check(lambda: call(raw, timeout=10))
