"""A budget in GPU-seconds (SearchSpec.gpu_seconds, search.gpu_budget) and query times measured
from responses (search.serving_cost): planned from the cost model, enforced as the search runs,
and the overshoot within the bound docs/service.md states."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math

import numpy as np
import pytest
from fleet_support import fleet_config
from gemfinder.candidates import Candidate, candidate_record
from gemfinder.cli import main
from gemfinder.cost import Cost, CostModel, EndpointCost, SlotLedger
from gemfinder.errors import UserError
from gemfinder.oracles.allowlist import ANY_ENDPOINT
from gemfinder.oracles.endpoints import EndpointConfig
from gemfinder.report import gem_report
from gemfinder.search import gpu_budget, plan
from gemfinder.search.manager import SearchManager
from gemfinder.search.serving_cost import SearchCost
from gemfinder.search.spec import SearchSpec
from gemfinder.search.values import Result
from gemfinder.server.convert import (
    progress_from_proto,
    progress_to_proto,
    result_from_proto,
    result_to_proto,
)
from gemfinder.sim.fleet import Fleet
from gemfinder.sim.fleet.build import candidates_for, endpoints_for, fleet_dict_from_matrix
from gemfinder.store import Store
from gemfinder.v1 import gemfinder_pb2 as pb
from gpu_budget_support import CONFIGURED, MEASURED, TimedReplay, pool

from tests.fleet_support import make_items
from tests.pool_support import BEST, clear_best_pool

# Loads of bringing the pool's 12 adapters and its base model up once (MEASURED, CONFIGURED).
LOADS = 20 + 12 * (2 + 0.5)


async def _search(spec, oracle):
    manager = SearchManager(Store(":memory:"), oracle, allowlist=ANY_ENDPOINT)
    try:
        row = await manager.wait((await manager.start(spec)).id)
    finally:
        await manager.close()
    assert row.state == "succeeded", row.error
    return row


async def test_configured_costs_stop_the_search_at_the_cap_and_never_past_it(monkeypatch):
    monkeypatch.setattr(gpu_budget, "MAX_REPLAYS", 0)  # the formula alone: reloads not planned
    spec, correct = pool()
    free = await _search(spec, TimedReplay(correct, CONFIGURED))
    assert not free.result.cost.stopped_by_cap and free.result.cost.gpu_seconds_cap is None
    cap = 80.0
    capped = await _search(
        dataclasses.replace(spec, gpu_seconds=cap), TimedReplay(correct, CONFIGURED)
    )
    cost = capped.result.cost
    # Planned: the query budget is what the cap buys after bringing every candidate up once.
    assert capped.progress.budget == math.floor((cap - LOADS) / 0.2) < spec.budget
    # Enforced: each query's cost is known before it is sent, so the spend never passes the
    # cap, and the search stopped only when the next query (at most a reload, a swap and the
    # query) would have passed it.
    assert cost.stopped_by_cap and cost.gpu_seconds_cap == cap
    assert cap - (2 + 0.5 + 0.2) < cost.gpu_seconds <= cap
    assert cost.queries < free.result.cost.queries
    # The ranking reached: every model, the recommendation first.
    ranking = capped.result.ranking
    assert len(ranking) == len(spec.candidates)
    assert ranking[0].model_id == capped.result.recommended_model_id
    assert "the search stopped on it" in gem_report(capped.result)
    # The progress shows the spend beside the cap, through the proto too.
    progress = capped.progress
    assert progress.gpu_seconds == pytest.approx(cost.gpu_seconds)
    assert progress.gpu_seconds_cap == cap
    for p in (progress, free.progress):  # elapsed: a Duration, in nanoseconds
        back = progress_from_proto(progress_to_proto(p))
        assert dataclasses.replace(back, elapsed_s=p.elapsed_s) == p
    assert free.progress.gpu_seconds_cap is None and free.progress.gpu_seconds > 0


def _heavy_tailed(rng):  # lognormal around 0.15 s, sigma 1, up to 3 s
    return float(min(rng.lognormal(math.log(0.15), 1.0), 3.0))


def _bounded(rng):  # 0.1 to 0.3 s
    return float(rng.uniform(0.1, 0.3))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("service", [_heavy_tailed, _bounded])
async def test_measured_overshoot_stays_within_the_stated_bound(service, seed):
    """Queries in flight are reserved at the mean measured so far, and the spend may pass the
    cap by at most what docs/service.md states: the queries in flight when the cap stopped the
    search, each at the longest service time measured. With bounded service times that bound
    is below what a search without the check would pass the cap by, so the check is what
    keeps it."""
    spec, correct = pool()
    free = TimedReplay(correct, MEASURED, service=service, seed=seed)
    uncapped = (await _search(spec, free)).result.cost.gpu_seconds
    overshoots = []
    for cap in (70.0, 90.0, 110.0):
        oracle = TimedReplay(correct, MEASURED, service=service, seed=seed)
        row = await _search(dataclasses.replace(spec, gpu_seconds=cap), oracle)
        cost = row.result.cost
        assert cost.stopped_by_cap
        # Measured, not configured: every answered query's time, as the oracle reported it.
        (endpoint,) = cost.endpoints
        assert endpoint.query_s_measured and endpoint.measured_queries == oracle.sent
        assert cost.gpu_seconds - cost.load_gpu_seconds == pytest.approx(oracle.service_total)
        assert endpoint.query_s == pytest.approx(oracle.service_total / oracle.sent)
        overshoot = cost.gpu_seconds - cap
        # In flight when the cap stopped the search: at most those in flight at the last send.
        bound = oracle.active_at_last_send * oracle.longest
        assert overshoot <= bound, (cap, overshoot, bound)
        if service is _bounded:
            assert uncapped - cap > bound  # without the check the bound would not hold
        overshoots.append(overshoot)
    shown = [round(o, 2) for o in overshoots]
    print(f"{service.__name__} seed {seed}: overshoot past the cap (GPU-seconds) {shown}")


async def test_a_cap_accounts_endpoints_without_a_cost_block_by_measuring_them():
    spec, correct = pool()
    oracle = TimedReplay(correct, MEASURED, service=lambda rng: 0.5)
    oracle.configs = {}  # no cost block anywhere: without a cap nothing is accounted
    assert (await _search(spec, oracle)).result.cost is None
    oracle = TimedReplay(correct, MEASURED, service=lambda rng: 0.5)
    oracle.configs = {}
    row = await _search(dataclasses.replace(spec, gpu_seconds=40.0), oracle)
    cost = row.result.cost
    assert cost.stopped_by_cap and cost.load_gpu_seconds == 0
    assert cost.gpu_seconds == pytest.approx(0.5 * oracle.sent)
    assert cost.gpu_seconds <= 40.0 + oracle.most_active * 0.5
    assert cost.endpoints[0].query_s == pytest.approx(0.5)


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "10"])
def test_a_bad_cap_names_the_field(value):
    spec, _ = pool()
    with pytest.raises(UserError) as err:
        dataclasses.replace(spec, gpu_seconds=value).validate()
    assert err.value.field == "spec.gpu_seconds"


async def test_a_cap_too_small_for_the_loads_or_the_algorithm_is_refused_before_a_query():
    spec, correct = pool()
    oracle = TimedReplay(correct, CONFIGURED)
    manager = SearchManager(Store(":memory:"), oracle, allowlist=ANY_ENDPOINT)
    try:
        with pytest.raises(UserError) as err:
            await manager.start(dataclasses.replace(spec, gpu_seconds=LOADS - 1))
        assert err.value.field == "spec.gpu_seconds"
        assert "do not cover bringing every candidate up once" in err.value.reason
        with pytest.raises(UserError) as err:  # buys 5 queries: sh needs one per model
            await manager.start(dataclasses.replace(spec, gpu_seconds=LOADS + 1))
        assert err.value.field == "spec.gpu_seconds" and "needs" in err.value.reason
    finally:
        await manager.close()
    assert oracle.sent == 0 and manager.store.list_searches(10) == []


def test_the_plan_counts_loads_once_and_leaves_measured_time_to_the_run():
    spec, correct = pool(gpu_seconds=100.0)
    configured = SearchCost.of(TimedReplay(correct, CONFIGURED), spec.candidates, 100.0)
    assert gpu_budget.plan_queries(spec, configured) == (LOADS, math.floor((100 - LOADS) / 0.2))
    measured = SearchCost.of(TimedReplay(correct, MEASURED), spec.candidates, 100.0)
    assert gpu_budget.plan_queries(spec, measured) == (LOADS, None)
    assert gpu_budget.planned(spec, TimedReplay(correct, MEASURED).configs) is spec


async def test_the_replay_lays_the_rounds_out_for_what_the_cap_allows():
    """12 adapters on 4 GPU slots: each round of successive halving brings the survivors'
    adapters up again, which the formula leaves out. It plans 150 queries for 80 GPU-seconds
    and the cap stops the search in its last round; the replayed search (gemfinder.search.plan)
    counts those reloads, so the search's rounds are laid out for fewer queries and it
    finishes them within the cap."""
    spec, correct = pool()
    capped = dataclasses.replace(spec, gpu_seconds=80.0)
    formula = math.floor((80.0 - LOADS) / 0.2)
    configs = TimedReplay(correct, CONFIGURED).configs
    budget = gpu_budget.planned(capped, configs).budget
    assert budget < formula and gpu_budget.planned(capped, configs).budget == budget
    answers = plan.synthetic_answers(capped)

    def replayed(budget: int) -> tuple[float, float, int]:
        return plan.replayed_spend(dataclasses.replace(capped, budget=budget), configs, answers)

    spent, loads, _ = replayed(budget)
    assert spent <= 80.0 < replayed(budget + 1)[0]  # to within 1%: here, one query
    assert loads > LOADS  # the reloads between rounds
    row = await _search(capped, TimedReplay(correct, CONFIGURED))
    cost = row.result.cost
    assert row.progress.budget == budget
    assert not cost.stopped_by_cap and cost.gpu_seconds <= 80.0
    print(
        f"80 GPU-s: formula {formula} queries, replay {budget}; the search spent "
        f"{cost.queries} queries, {cost.gpu_seconds:.1f} GPU-s, {cost.adapter_loads} adapter loads"
    )


def test_a_ledger_restored_from_its_state_goes_on_as_the_uninterrupted_one():
    model = CostModel(model_load_s=5, adapter_load_s=1, swap_s=0.25, max_loras=2, max_cpu_loras=3,
                      measure_query=True)  # fmt: skip
    rng = np.random.default_rng(3)
    names = [None if k == 5 else f"a{k}" for k in rng.integers(0, 6, 200)]
    whole, first = SlotLedger(model), SlotLedger(model)
    for n, name in enumerate(names):
        if n == 90:  # the restart: state through JSON, as the store keeps it
            second = SlotLedger(model)
            second.restore(json.loads(json.dumps(first.state())))
            first = second
        for ledger in (whole, first):
            ledger.serve(name)
            ledger.measured(0.1 * (n % 7))
    assert first.state() == whole.state() and first.cost() == whole.cost()
    assert whole.measured_queries == 200 and whole.model_loads == 1


def test_cost_with_endpoints_and_cap_round_trips_through_proto_and_json():
    cost = Cost(
        12.5, 4.0, 40, 1, 3, 5, 12.5,
        endpoints=(EndpointCost("http://a:1", 8.0, 30, 0.15, True, 29),
                   EndpointCost("http://b:1", 4.5, 10, 0.2, False, 0)),
        gpu_seconds_cap=12.0, stopped_by_cap=True,
    )  # fmt: skip
    result = Result(queries_spent=40, cost=cost)
    assert result_from_proto(result_to_proto(result)).cost == cost
    assert Result.from_json(json.loads(json.dumps(result.to_json()))).cost == cost
    no_cap = dataclasses.replace(cost, gpu_seconds_cap=None, stopped_by_cap=False)
    assert result_from_proto(result_to_proto(Result(cost=no_cap))).cost == no_cap
    assert pb.ServingCost().HasField("gpu_seconds_cap") is False
    text = gem_report(
        Result(queries_spent=40, cost=dataclasses.replace(cost, stopped_by_cap=False))
    )
    assert "GPU-second cap 12.0: not reached" in text
    assert "query time measured from responses at http://a:1 0.150 s" in text
    assert "http://b:1" not in text  # configured there


async def test_query_time_is_measured_from_the_fleets_responses_where_not_configured(
    tmp_path, capsys
):
    """Two vLLM endpoints of the simulated fleet answering after 30 ms: the endpoints file
    gives one of them no query_s, so its query time is the measured response time; the other
    keeps its configured 0.2 s. The result says which is which."""
    matrix, items = clear_best_pool()
    lines = [json.dumps({"id": it.id, "task": it.task, **it.fields}) for it in items]
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    raw = fleet_dict_from_matrix(matrix, 2, latency_median_s=0.03)
    for endpoint in raw["endpoints"]:
        endpoint.update(server="vllm", chat_template=False, serving=CONFIGURED)
    config = fleet_config(*raw["endpoints"])
    async with Fleet(config, matrix, items) as fleet:
        urls = {name: fleet.url(name) for name in fleet.names}
        cands = candidates_for(config, urls, matrix, "openai_completions")
        (tmp_path / "c.jsonl").write_text(
            "".join(json.dumps(candidate_record(c)) + "\n" for c in cands), encoding="utf-8"
        )
        endpoints = endpoints_for(config, urls, "openai_completions")
        del endpoints[0]["cost"]["query_s"]  # measured there
        (tmp_path / "e.json").write_text(json.dumps(endpoints), encoding="utf-8")
        argv = ["search", "--query-set", str(tmp_path / "items.jsonl"),
                "--candidates", str(tmp_path / "c.jsonl"), "--endpoints", str(tmp_path / "e.json"),
                "--budget", "300", "--json"]  # fmt: skip
        code = await asyncio.to_thread(main, argv)
        sent = {urls[n].rstrip("/"): fleet.state(n).ledger.queries for n in fleet.names}
    assert code == 0
    result = Result.from_json(json.loads(capsys.readouterr().out))
    assert result.winner.model_id == BEST
    by_url = {e.url: e for e in result.cost.endpoints}
    measured, configured = (
        by_url[endpoints[0]["url"].rstrip("/")],
        by_url[endpoints[1]["url"].rstrip("/")],
    )
    assert measured.query_s_measured and not configured.query_s_measured
    # The fleet sleeps 30 ms per request; the measured time is that plus the round trip.
    assert 0.03 <= measured.query_s < 0.03 + 0.25
    assert measured.measured_queries == measured.queries == sent[measured.url] > 0
    assert configured.query_s == 0.2 and configured.measured_queries == 0
    assert result.cost.gpu_seconds == pytest.approx(measured.gpu_seconds + configured.gpu_seconds)
    assert "query time measured from responses at " + measured.url in gem_report(result)


def test_the_replayed_budget_is_bounded_and_the_same_at_every_start(monkeypatch):
    """300 adapters on 8 endpoints, the default budget: the start replays the search at most
    MAX_REPLAYS times and REPLAY_PULLS pulls in all, and plans the same budget each time (a
    resume plans it again and must lay the rounds out as the start did)."""
    n = 300
    cands = [Candidate(f"org/m{k}", f"http://e{k % 8}:80", adapter_id=f"a{k}") for k in range(n)]
    model = CostModel(model_load_s=30, adapter_load_s=2, swap_s=0.5, query_s=0.2, max_loras=4,
                      max_cpu_loras=16)  # fmt: skip
    configs = {
        f"http://e{e}:80": EndpointConfig(
            f"http://e{e}:80", adapters=tuple(f"a{k}" for k in range(e, n, 8)), cost=model
        )
        for e in range(8)
    }
    spec = SearchSpec(cands, make_items(200, tasks=("mmlu",)), budget=50 * n, gpu_seconds=2000.0)
    spec.validate()
    replays: list[int] = []
    replay = plan.replayed_spend

    def counted(spec, configs, correct):
        replays.append(spec.budget)
        return replay(spec, configs, correct)

    monkeypatch.setattr(plan, "replayed_spend", counted)
    budget = gpu_budget.planned(spec, configs).budget
    assert 0 < len(replays) <= gpu_budget.MAX_REPLAYS
    assert sum(replays) <= gpu_budget.REPLAY_PULLS
    assert gpu_budget.planned(spec, configs).budget == budget < spec.budget
    spent, _, _ = replay(dataclasses.replace(spec, budget=budget), configs,
                         plan.synthetic_answers(spec))  # fmt: skip
    assert spent <= 2000.0
    monkeypatch.setattr(gpu_budget, "REPLAY_PULLS", spec.budget - 1)  # not one replay: formula
    replays.clear()
    loads, formula = gpu_budget.plan_queries(spec, SearchCost.of(plan._Configs(configs), cands,
                                                                 2000.0))  # fmt: skip
    assert gpu_budget.planned(spec, configs).budget == formula and replays == []
