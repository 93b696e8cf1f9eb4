"""A search accounts what serving its queries costs (gemfinder.cost), and it agrees with what the
simulated fleet measured on its virtual clock when the cost model is the fleet's."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from fleet_support import fleet_config
from gemfinder import metrics
from gemfinder.candidates import Candidate, candidate_record
from gemfinder.cli import main
from gemfinder.cost import Cost, CostModel, SlotLedger, cost_model_from_dict
from gemfinder.errors import UserError
from gemfinder.oracles.endpoints import endpoint_config_from_dict
from gemfinder.report import gem_report
from gemfinder.search.serving_cost import SearchCost
from gemfinder.search.values import Result
from gemfinder.server.convert import result_from_proto, result_to_proto
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.build import candidates_for, endpoints_for, fleet_dict_from_matrix
from gemfinder.sim.matrix import save_npz
from prometheus_client import REGISTRY

from tests.pool_support import BEST, clear_best_pool

SERVING = {"model_load_s": 30, "adapter_load_s": 2, "swap_s": 0.5, "query_s": 0.2,
           "max_loras": 2, "max_cpu_loras": 3}  # fmt: skip


def _gauge(kind: str, name: str = "gemfinder_serving_loads_total") -> float:
    return REGISTRY.get_sample_value(name, {"kind": kind}) or 0.0


async def test_a_search_reports_the_cost_the_fleet_measured(tmp_path, capsys):
    matrix, items = clear_best_pool()
    save_npz(matrix, tmp_path / "m.npz")
    lines = [json.dumps({"id": it.id, "task": it.task, **it.fields}) for it in items]
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    raw = fleet_dict_from_matrix(matrix, 2)
    for endpoint in raw["endpoints"]:  # vLLM, its adapters contending for 2 slots
        endpoint.update(server="vllm", chat_template=False, serving=SERVING)
    config = fleet_config(*raw["endpoints"])
    async with Fleet(config, matrix, items) as fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        cands = candidates_for(config, urls, matrix, "openai_completions")
        (tmp_path / "c.jsonl").write_text(
            "".join(json.dumps(candidate_record(c)) + "\n" for c in cands), encoding="utf-8"
        )
        endpoints = endpoints_for(config, urls, "openai_completions")
        assert all(e["cost"]["max_loras"] == 2 for e in endpoints)  # the fleet says its costs
        for e in endpoints:  # one query at a time: the fleet sees them in the order sent
            e["max_concurrency"] = 1
        (tmp_path / "e.json").write_text(json.dumps(endpoints), encoding="utf-8")
        before = {k: _gauge(k) for k in ("model", "adapter", "swap")}
        argv = ["search", "--query-set", str(tmp_path / "items.jsonl"),
                "--candidates", str(tmp_path / "c.jsonl"), "--endpoints", str(tmp_path / "e.json"),
                "--budget", "300", "--algorithm", "gem", "--param", "first_cut=8",
                "--json"]  # fmt: skip
        code = await asyncio.to_thread(main, argv)
        measured = [fleet.state(n).ledger.summary() for n in fleet.names]
    assert code == 0
    result = Result.from_json(json.loads(capsys.readouterr().out))
    assert result.winner.model_id == BEST
    cost = result.cost
    assert cost is not None and cost.queries == sum(m["queries"] for m in measured) > 0
    for key in ("model_loads", "adapter_loads", "swaps"):
        assert getattr(cost, key) == sum(m[key] for m in measured), key
    assert cost.swaps > 2 and cost.model_loads == 2  # the slots were contended
    assert max(m["max_resident"] for m in measured) == 2
    assert cost.gpu_seconds == pytest.approx(sum(m["gpu_seconds"] for m in measured))
    assert cost.wall_s == pytest.approx(max(m["wall_s"] for m in measured))
    loads = 30 * cost.model_loads + 2 * cost.adapter_loads + 0.5 * cost.swaps
    assert cost.load_gpu_seconds == pytest.approx(loads)
    assert cost.gpu_seconds == pytest.approx(loads + 0.2 * cost.queries)
    assert _gauge("swap") - before["swap"] == cost.swaps
    # The proto and the stored JSON keep it.
    back = result_from_proto(result_to_proto(result)).cost
    assert back is not None and back.wall_s == pytest.approx(cost.wall_s, abs=1e-9)
    assert dataclasses.replace(back, wall_s=cost.wall_s) == cost  # a Duration: nanoseconds
    assert Result.from_json(json.loads(json.dumps(result.to_json()))).cost == cost


def test_the_text_report_shows_the_cost_next_to_the_queries():
    """`gemfinder search` and `gemfinder report` print gem_report: the serving line follows
    the line of queries."""
    text = gem_report(Result(queries_spent=300, cost=Cost(95.5, 40.0, 278, 1, 3, 7, 95.5)))
    cost_line, line = text.splitlines()[-2:]
    assert cost_line.startswith("cost          300 queries")
    assert line.startswith("serving       95.5 GPU-seconds (40.0 loading: 1 model loads")
    assert "3 adapter loads, 7 slot swaps) for 278 queries sent; wall 95.5 s" in line
    assert "serving" not in gem_report(Result(queries_spent=300))


def test_no_cost_model_no_cost():
    assert SearchCost.of(object()).cost() is None
    assert Result().to_json().get("cost") is None
    assert not result_to_proto(Result()).HasField("serving_cost")


def test_launched_adapters_start_in_host_memory():
    """TGI holds all its LORA_ADAPTERS; vLLM the last max_cpu_loras of its --lora-modules."""

    class Oracle:
        configs = {}

    model = {"adapter_load_s": 2, "max_loras": 1, "max_cpu_loras": 2}
    for backend, reads in (("BACKEND_TGI", 0), ("BACKEND_OPENAI_COMPLETIONS", 1)):
        e = endpoint_config_from_dict(
            {"url": "http://h:1", "backend": backend, "adapters": ["a", "b", "c"], "cost": model},
            "endpoints[0]",
        )
        Oracle.configs = {e.key: e}
        cost = SearchCost.of(Oracle())
        for name in ("c", "b", "a"):  # a was read first, so evicted first
            cost.sent(Candidate("m-" + name, "http://h:1", e.backend, adapter_id=name))
        assert cost.cost().adapter_loads == reads, backend


def test_ledger_never_exceeds_its_slots_and_reloads_what_it_evicted():
    ledger = SlotLedger(CostModel(adapter_load_s=1, swap_s=0.1, max_loras=2, max_cpu_loras=2))
    for name in ["a", "b", "a", "c", "b", None, "a"]:
        ledger.serve(name)
        assert len(ledger.resident()) <= 2 and len(ledger.in_host_memory()) <= 2
    # c evicts b (a was used since), b then evicts a, a then evicts c: 5 reads, 5 swaps, and
    # what leaves host memory leaves its GPU slot too.
    assert ledger.in_host_memory() == ["b", "a"]
    assert (ledger.adapter_loads, ledger.swaps) == (5, 5)


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"query_s": "fast"}, "endpoints[0].cost.query_s"),
        ({"max_loras": 0}, "endpoints[0].cost.max_loras"),
        ({"max_loras": 4, "max_cpu_loras": 3}, "endpoints[0].cost.max_cpu_loras"),
        ({"slots": 4}, "endpoints[0].cost.slots"),
        ([], "endpoints[0].cost"),
    ],
)
def test_a_bad_cost_block_names_the_field(block, field):
    with pytest.raises(UserError) as err:
        endpoint_config_from_dict({"url": "http://h:1", "cost": block}, "endpoints[0]")
    assert str(err.value).startswith(field)


def test_cost_model_round_trips_through_the_endpoints_file_form():
    model = CostModel(30, 2, 0.5, 0.2, 4, 8)
    assert cost_model_from_dict(model.to_json(), "cost") == model
    assert "max_cpu_loras" not in CostModel().to_json()  # vLLM's default: max_loras
    assert {metrics.SERVING_GPU_SECONDS, metrics.SERVING_LOADS} <= set(metrics.ALL)
