"""Per-task results over gRPC: a mixed query set (arc_challenge + gsm8k) answered by the
simulated fleet, task weights in the spec, bad weights refused with the field named."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from gemfinder.oracles import InferenceOracle
from gemfinder.server.app import Server
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2

from tests.fleet_support import FAST_RETRY, make_items
from tests.pool_support import server_config, spec_proto, start_fleet

DETAILS_KEY = "grpc-status-details-bin"


def specialists_pool():
    """10 models; `org/arc` right on every arc item and no gsm8k one, `org/math` the reverse,
    the rest at 0.3-0.5: arc (24 items) outnumbers gsm8k (8)."""
    items = make_items(24, tasks=("arc_challenge", "gsm8k"))
    items = [it for it in items if it.task == "arc_challenge"] + [
        it for it in items if it.task == "gsm8k"
    ][:8]
    rng = np.random.default_rng(3)
    models = [f"org/ft-{k}" for k in range(8)] + ["org/arc", "org/math"]
    correct = (rng.random((len(models), len(items))) < 0.4).astype(np.uint8)
    arc = np.array([it.task == "arc_challenge" for it in items])
    correct[8] = arc
    correct[9] = ~arc
    return CorrectnessMatrix(correct, models, [it.id for it in items]), items


@pytest.fixture
async def env(tmp_path):
    matrix, items = specialists_pool()
    fleet, candidates, configs = await start_fleet(matrix, items)
    server = Server(
        server_config(tmp_path, configs), oracle=InferenceOracle(configs, policy=FAST_RETRY)
    )
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.ModelSearchServiceStub(channel), candidates, items
    await channel.close()
    await server.stop(0)
    await fleet.stop()


async def test_a_mixed_query_set_gets_a_ranking_per_task_and_weights_reorder_overall(env):
    stub, candidates, items = env
    n = len(items)  # per model = every item: equal evidence, so the weights alone decide
    plain = spec_proto(candidates, items, per_model=n, gem_check_share=0.0)
    result = (
        await stub.SelectBestModel(pb.SelectBestModelRequest(spec=plain), timeout=60)
    ).search.result
    tasks = {t.task: t for t in result.per_task}
    assert list(tasks) == ["arc_challenge", "gsm8k"]
    assert (tasks["arc_challenge"].items, tasks["gsm8k"].items) == (24, 8)
    assert tasks["arc_challenge"].estimates[0].model_id == "org/arc"
    assert tasks["gsm8k"].estimates[0].model_id == "org/math"
    assert abs(tasks["gsm8k"].weight - 0.25) < 1e-12
    # Default weights: the overall accuracies are the search's own.
    plain_acc = {e.model_id: (e.accuracy, e.items_seen) for e in result.ranking}
    assert {e.model_id: (e.accuracy, e.items_seen) for e in result.overall} == plain_acc
    assert result.overall[0].model_id == "org/arc"

    weighted = spec_proto(candidates, items, per_model=n, gem_check_share=0.0,
                          task_weights={"gsm8k": 4.0})  # fmt: skip
    reply = await stub.SelectBestModel(pb.SelectBestModelRequest(spec=weighted), timeout=60)
    result = reply.search.result
    assert result.overall[0].model_id == "org/math"  # 0.8 of the weight on gsm8k
    assert {t.task: round(t.weight, 6) for t in result.per_task} == {
        "arc_challenge": 0.2,
        "gsm8k": 0.8,
    }


@pytest.mark.parametrize(
    ("weights", "field"),
    [
        ({"mbpp": 1.0}, "spec.task_weights[mbpp]"),
        ({"gsm8k": -0.5}, "spec.task_weights[gsm8k]"),
        ({"gsm8k": 0.0, "arc_challenge": 0.0}, "spec.task_weights[arc_challenge]"),
        # hostile: a 100 KB task name, and 5,000 names; refused, the field path clipped
        ({"x" * 100_000: 1.0}, "spec.task_weights[xxxxxxxx"),
        ({**{f"t{k}": 1.0 for k in range(5000)}, "gsm8k": 1.0}, "spec.task_weights[t"),
    ],
)
async def test_bad_task_weights_are_invalid_argument_naming_the_task(env, weights, field):
    stub, candidates, items = env
    spec = spec_proto(candidates, items, per_model=5, task_weights=weights)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.StartSearch(pb.StartSearchRequest(spec=spec), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = status_pb2.Status.FromString(dict(err.value.trailing_metadata())[DETAILS_KEY])
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert len(bad.field_violations) == 1
    assert bad.field_violations[0].field.startswith(field)
    assert len(bad.field_violations[0].field) <= 200
