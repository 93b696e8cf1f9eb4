"""Fixed-confidence searches through a real server against the simulated fleet: a clear best
stops early with its certificate, a near tie spends the maximum and reports the certificate it
reached, the stored result round-trips (older results still load), and bad targets are
INVALID_ARGUMENT naming their field."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import pytest
from gemfinder.oracles import InferenceOracle
from gemfinder.search.values import Certificate, Result
from gemfinder.server.app import Server
from gemfinder.server.convert import result_from_proto
from gemfinder.server.errors import DETAILS_KEY
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2

from tests.fleet_support import FAST_RETRY
from tests.pool_support import BEST, clear_best_pool, server_config, spec_proto, start_fleet

STORED = Path(__file__).resolve().parent / "data" / "stored_result.json"


def near_tie(matrix: CorrectnessMatrix) -> CorrectnessMatrix:
    """BEST and a twin that answers alike but for 2 of the items (one point apart)."""
    correct = matrix.correct.copy()
    twin = matrix.models.index("org/ft-1")
    best = matrix.models.index(BEST)
    correct[twin] = correct[best]
    flips = np.flatnonzero(correct[best] == 1)[:2]
    correct[twin, flips] = 0
    return CorrectnessMatrix(correct, matrix.models, matrix.items, matrix.downloads, matrix.is_base)


async def serve(tmp_path, matrix, items):
    fleet, candidates, configs = await start_fleet(matrix, items, latency_s=0.001)
    server = Server(
        server_config(tmp_path, configs), oracle=InferenceOracle(configs, policy=FAST_RETRY)
    )
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return fleet, candidates, server, channel, pb_grpc.ModelSearchServiceStub(channel)


@pytest.fixture
async def pools(tmp_path):
    matrix, items = clear_best_pool(per_task=50)  # 16 models x 200 items
    started = []

    async def start(tied: bool):
        env = await serve(tmp_path / str(tied), near_tie(matrix) if tied else matrix, items)
        started.append(env)
        return env[1], items, env[4]

    (tmp_path / "True").mkdir()
    (tmp_path / "False").mkdir()
    yield start
    for fleet, _, server, channel, _ in started:
        await channel.close()
        await server.stop(0)
        await fleet.stop()


async def run(stub, spec) -> pb.Search:
    request = pb.SelectBestModelRequest(spec=spec)
    return (await stub.SelectBestModel(request, timeout=120)).search


async def test_a_clear_best_stops_early_with_its_certificate(pools):
    candidates, items, stub = await pools(tied=False)
    per_model = len(items)  # the maximum: a full evaluation
    spec = spec_proto(candidates, items, per_model, epsilon=0.05, delta=0.05)
    search = await run(stub, spec)
    assert search.state == pb.SEARCH_STATE_SUCCEEDED, search.error
    result = search.result
    assert result.recommended_model_id == BEST
    cert = result.certificate
    assert cert.certified and cert.epsilon_reached <= 0.05
    assert (cert.epsilon, cert.delta) == (0.05, 0.05)
    # Stopped long before the maximum (the gem check's share included).
    assert result.queries_spent < 0.5 * per_model * len(candidates)
    # The stored result (GetSearch reads the store) carries the same certificate.
    stored = await stub.GetSearch(pb.GetSearchRequest(search_id=search.search_id))
    assert stored.search.result.certificate == cert
    assert stored.search.progress.certificate.certified
    # A fixed-budget search reports its certificate too, without a target, over every model
    # (those SH dropped after a few items keep wide bounds); a whole evaluation is exact.
    plain = await run(stub, spec_proto(candidates, items, 30, seed=1))
    loose = plain.result.certificate
    assert plain.result.HasField("certificate") and not loose.certified
    assert (loose.epsilon, loose.delta) == (0.0, 0.05) and 0 < loose.epsilon_reached <= 1
    whole = await run(stub, spec_proto(candidates, items, len(items), gem_check_share=0.0))
    assert whole.result.recommended_model_id == BEST
    assert whole.result.certificate.epsilon_reached == 0.0


async def test_a_near_tie_spends_the_maximum_and_reports_the_certificate_reached(pools):
    candidates, items, stub = await pools(tied=True)
    per_model = 40  # a fifth of a full evaluation: too little to tell the twins apart
    spec = spec_proto(candidates, items, per_model, epsilon=0.002, gem_check_share=0.0)
    search = await run(stub, spec)
    assert search.state == pb.SEARCH_STATE_SUCCEEDED, search.error
    result = search.result
    budget = per_model * len(candidates)
    survivors = search.progress.survivors
    assert budget - survivors < result.queries_spent <= budget
    cert = result.certificate
    assert not cert.certified and 0.002 < cert.epsilon_reached < 1
    assert cert.delta == 0.05  # the default
    assert result.recommended_model_id in (BEST, "org/ft-1")


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"epsilon": 0.0}, "spec.epsilon"), ({"epsilon": 1.5}, "spec.epsilon"),
     ({"epsilon": 0.01, "delta": 0.7}, "spec.delta"), ({"delta": 0.1}, "spec.delta"),
     ({"epsilon": 0.01, "params": {"first_cut": 3.0}}, "spec.params.first_cut"),
     ({"epsilon": 0.01, "params": {"max_attempts": float("nan")}}, "spec.params.max_attempts"),
     ({"epsilon": 0.01, "params": {"max_attempts": 11.0}}, "spec.params.max_attempts")],
)  # fmt: skip
async def test_bad_targets_are_invalid_argument_naming_the_field(pools, fields, field):
    candidates, items, stub = await pools(tied=False)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.StartSearch(pb.StartSearchRequest(spec=spec_proto(candidates, items, **fields)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = status_pb2.Status.FromString(dict(err.value.trailing_metadata())[DETAILS_KEY])
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert bad.field_violations[0].field == field, bad


def test_results_round_trip_with_the_certificate_and_older_ones_still_load():
    old = Result.from_json(json.loads(STORED.read_text()))
    assert old.certificate is None and old.recommended_model_id
    cert = Certificate(epsilon_reached=0.004, delta=0.05, epsilon=0.005, certified=True)
    new = Result(recommended_model_id="m", certificate=cert)
    assert Result.from_json(json.loads(json.dumps(new.to_json()))) == new
    fixed = Certificate(epsilon_reached=0.2, delta=0.1)  # no target
    again = Result.from_json(Result(certificate=fixed).to_json())
    assert again.certificate == fixed
    # Through the proto as well (the target 0 reads back as none).
    from gemfinder.server.convert import result_to_proto

    assert result_from_proto(result_to_proto(new)).certificate == cert
    assert result_from_proto(result_to_proto(Result(certificate=fixed))).certificate == fixed


def test_the_spec_keeps_its_target_and_a_stored_search_resumes_as_fixed_confidence():
    from gemfinder import _core
    from gemfinder.search.manager import restore
    from gemfinder.search.spec import SearchSpec

    matrix, items = clear_best_pool()
    from gemfinder.candidates import Candidate

    cands = [Candidate(m, "http://h:80", adapter_id=m) for m in matrix.models]
    plain = SearchSpec(cands, items, budget=400)
    spec = SearchSpec(cands, items, budget=400, epsilon=0.02, delta=0.1)
    spec.validate()
    again = SearchSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert (again.epsilon, again.delta) == (0.02, 0.1)
    assert "epsilon" not in plain.to_dict()  # digests of fixed-budget specs stay as they were
    sched = spec.scheduler()
    assert isinstance(sched, _core.CertifiedScheduler)
    sched.ask(5)
    resumed = restore(sched.snapshot())
    assert isinstance(resumed, _core.CertifiedScheduler) and len(resumed.in_flight_pulls()) == 5
    assert isinstance(restore(plain.scheduler().snapshot()), _core.Scheduler)
