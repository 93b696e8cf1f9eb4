"""`gemfinder plan` (gemfinder.search.plan): its replay of a search is the search's own
accounting, its predictions are within 20% of what a search then spends on the simulated fleet,
and its simulation is bounded."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest
from gemfinder.candidates import Candidate
from gemfinder.cost import CostModel
from gemfinder.errors import UserError
from gemfinder.oracles.endpoints import EndpointConfig
from gemfinder.oracles.preflight import CandidateProblems
from gemfinder.search import plan
from gemfinder.search.spec import SearchSpec

from bench.speed import plan_accuracy
from bench.speed.serving_cost import _fleet, _pool, _run
from tests.fleet_support import make_items


def _spec(n: int = 12, budget: int = 120, **kw) -> SearchSpec:
    cands = [Candidate(f"org/m{k}", f"http://e{k % 2}:80", adapter_id=f"a{k}") for k in range(n)]
    spec = SearchSpec(cands, make_items(10, tasks=("mmlu", "gsm8k")), budget=budget, **kw)
    spec.validate()
    return spec


def _configs(n: int = 12, **cost) -> dict[str, EndpointConfig]:
    model = CostModel(**{"model_load_s": 30, "swap_s": 2, "query_s": 0.2, "max_loras": 4, **cost})
    return {
        f"http://e{e}:80": EndpointConfig(
            f"http://e{e}:80", adapters=tuple(f"a{k}" for k in range(e, n, 2)), cost=model
        )
        for e in range(2)
    }


@pytest.mark.parametrize("full_models", [False, True], ids=["adapter-heavy", "full-model-heavy"])
def test_replayed_on_the_same_answers_the_plan_is_what_the_search_accounts(
    monkeypatch, full_models
):
    """The plan's replay on the search's own answers (its seed, trial 0, the gem check of a pool
    with downloads included) spends exactly what the runner accounted and the fleet measured:
    what remains between plan and search is the synthetic tree, not the replay."""
    matrix, items = _pool(24, 60, seed=5)
    matrix = dataclasses.replace(matrix, downloads=np.linspace(1e5, 10, 24))  # a gem check
    raw = _fleet(matrix, 2, full_models)
    found = {}

    def true_answers(spec):
        rows = [matrix.models.index(c.model_id) for c in spec.candidates]
        found["rows"] = rows
        return np.ascontiguousarray(matrix.correct[rows]), matrix.correct.shape[1]

    monkeypatch.setattr(plan, "_tree", true_answers)
    predicted = asyncio.run(plan_accuracy._plan(matrix, items, raw, 240, "gem", 1))
    result, measured, _ = asyncio.run(_run(matrix, items, raw, True, 240, "gem"))
    assert result.cost is not None and found["rows"] != sorted(found["rows"])
    assert result.queries_spent > result.cost.queries - 1 >= 0
    assert predicted.queries.mean == result.queries_spent == sum(m["queries"] for m in measured)
    for name in ("model_loads", "adapter_loads", "swaps"):
        assert getattr(predicted, name).mean == getattr(result.cost, name), name
    assert predicted.gpu_seconds.mean == pytest.approx(result.cost.gpu_seconds)
    assert predicted.wall_s.mean == pytest.approx(result.cost.wall_s)
    assert predicted.gpu_seconds.mean == pytest.approx(sum(m["gpu_seconds"] for m in measured))


@pytest.mark.parametrize("full_models", [False, True], ids=["adapter-heavy", "full-model-heavy"])
def test_the_plan_is_within_20_percent_of_the_search_on_the_simulated_fleet(full_models):
    """The issue's acceptance on a small fleet (24 models on 2 endpoints, 4 slots, 30 s per full
    model, 2 s per adapter, 0.2 s per query): queries, GPU-seconds and wall time."""
    matrix, items = _pool(24, 100, seed=3)
    raw = _fleet(matrix, 2, full_models)
    predicted = asyncio.run(plan_accuracy._plan(matrix, items, raw, 240, "gem", 16))
    _, measured, _ = asyncio.run(_run(matrix, items, raw, True, 240, "gem"))
    spent = plan_accuracy.actual(measured)
    for name, _label in plan_accuracy.FIGURES:
        assert getattr(predicted, name).mean == pytest.approx(spent[name], rel=0.2), name
    assert predicted.accounted and predicted.model_loads.mean > 0


@pytest.mark.parametrize(
    ("full_models", "cap"),
    [(False, 140.0), (True, 850.0)],
    ids=["adapter-heavy", "full-model-heavy"],
)
def test_under_a_gpu_second_cap_the_plan_is_within_20_percent_of_the_capped_search(
    full_models, cap
):
    """The same fleets under a cap below what the search spends without one (adapter-heavy
    ~168 GPU-s, full-model-heavy ~950): the plan lays the budget out as the start does and
    stops each simulated search where the runner's check stops it. Adapter-heavy, the replayed
    layout fits the cap and the search finishes its rounds under it; full-model-heavy, the
    reloads between rounds alone pass the cap whatever the layout, so the cap stops it."""
    matrix, items = _pool(24, 100, seed=3)
    raw = _fleet(matrix, 2, full_models)
    predicted = asyncio.run(plan_accuracy._plan(matrix, items, raw, 240, "gem", 16, cap))
    result, measured, _ = asyncio.run(_run(matrix, items, raw, True, 240, "gem", cap))
    spent = plan_accuracy.actual(measured)
    print(f"cap {cap}: plan {predicted.queries.mean:.0f} queries {predicted.gpu_seconds.mean:.0f}"
          f" GPU-s (budget {predicted.planned_budget}, capped {predicted.capped:.2f}); search "
          f"{spent['queries']} queries {spent['gpu_seconds']:.0f} GPU-s "
          f"(capped {result.cost.stopped_by_cap})")  # fmt: skip
    for name, _label in plan_accuracy.FIGURES:
        assert getattr(predicted, name).mean == pytest.approx(spent[name], rel=0.2), name
    assert predicted.gpu_seconds_cap == cap and result.cost.gpu_seconds <= cap
    # configured costs: a simulated search never passes the cap (but for float rounding)
    assert predicted.gpu_seconds.p90 <= cap + 1e-9
    assert predicted.budget == 240 and predicted.queries.mean < 240
    if full_models:
        assert predicted.planned_budget == 240  # no layout fits: the formula's budget (more)
        assert predicted.capped == 1.0 and result.cost.stopped_by_cap
    else:
        assert predicted.planned_budget < 240 and predicted.capped < 1.0
        assert not result.cost.stopped_by_cap
    uncapped = asyncio.run(plan_accuracy._plan(matrix, items, raw, 240, "gem", 16))
    assert uncapped.capped == 0.0 and uncapped.gpu_seconds.mean > cap


def test_quality_and_tokens():
    spec = _spec(budget=120)
    found = plan.plan(spec, _configs(), trials=4)
    assert found.trials == 4 and found.quality_trials == plan.QUALITY_TRIALS
    # 20 items: the last rounds cannot use all of the budget, as a search could not either
    assert 60 < found.queries.mean <= 120 and 0.0 <= found.p_best <= 1.0
    assert 0.0 <= found.loss_mean <= found.loss_p90 + 1e-9
    # max_new_tokens: 50 for multiple choice, 512 for GSM8K; half the items each
    queries = found.queries.mean
    assert 50 * queries < found.generated_tokens.mean < 512 * queries
    assert found.prompt_tokens.p10 <= found.prompt_tokens.mean <= found.prompt_tokens.p90
    assert found.prompt_tokens.mean > 10 * queries  # a prompt is more than a few tokens
    # A larger budget chooses better, on the same synthetic tree.
    more = plan.plan(_spec(budget=240), _configs(), trials=1)
    assert more.loss_mean <= found.loss_mean and more.p_best >= found.p_best
    # Without a cost model: queries and tokens, no seconds.
    bare = plan.plan(spec, {}, trials=2)
    assert not bare.accounted and bare.gpu_seconds.mean == 0 and bare.queries.mean == queries


def test_the_simulation_is_bounded(monkeypatch):
    with pytest.raises(UserError) as err:
        plan.plan(_spec(budget=plan.MAX_PULLS + 1), {}, trials=1)
    assert err.value.field == "spec.budget"
    for trials in (0, plan.MAX_TRIALS + 1):
        with pytest.raises(UserError) as err:
            plan.plan(_spec(), {}, trials=trials)
        assert err.value.field == "trials"
    monkeypatch.setattr(plan, "MAX_PULLS", 300)  # trials x budget: fewer trials
    assert plan.plan(_spec(budget=120), {}, trials=8).trials == 2
    monkeypatch.setattr(plan, "MAX_CELLS", 12 * 7)  # a tree too large: fewer items, said
    assert plan.plan(_spec(budget=60), {}, trials=1).items == 7
    # A sequential algorithm weighs every model at each pull: budget x models is its bound.
    monkeypatch.setattr(plan, "SEQUENTIAL_WORK", 3000)
    found = plan.plan(_spec(budget=120, algorithm="ucb_e"), {}, trials=8)
    assert found.trials == 2 == found.quality_trials  # 3000 // (120 x 12)
    monkeypatch.setattr(plan, "SEQUENTIAL_WORK", 1000)
    with pytest.raises(UserError) as err:
        plan.plan(_spec(budget=120, algorithm="ucb_e"), {}, trials=1)
    assert err.value.field == "spec.budget" and "1,440" in err.value.reason


def test_a_plan_checks_the_candidates_against_the_endpoint_settings():
    spec = _spec()
    configs = _configs()
    plan.check_offline(spec, configs)  # every adapter listed
    spec.candidates[3] = Candidate("org/m3", "http://e1:80", adapter_id="typo")
    with pytest.raises(CandidateProblems) as err:
        plan.check_offline(spec, configs)
    assert [f for f, _ in err.value.violations] == ["spec.candidates[3].adapter_id"]
    # An endpoint not in the settings: a TGI adapter cannot be checked, as at a start (TGI's
    # /info does not list adapters); a vLLM one would be checked against /v1/models, which a
    # plan does not ask, so it goes through.
    with pytest.raises(CandidateProblems) as err:
        plan.check_offline(spec, {})
    assert "cannot be checked" in err.value.violations[0][1]
    vllm = [dataclasses.replace(c, backend="openai_completions") for c in spec.candidates]
    plan.check_offline(dataclasses.replace(spec, candidates=vllm), {})


def test_tokens_of_items_scored_by_loglikelihood_and_generated():
    from gemfinder.tasks import Item
    from gemfinder.tasks.lmeval import TASK_KIND

    requests = [["Q: 2+2? A:", " 4"], ["Q: 2+2? A:", " 5"]]
    scored = Item("ll/0", TASK_KIND, {"output_type": "multiple_choice", "requests": requests})
    spec = _spec()
    spec = dataclasses.replace(spec, items=[scored, spec.items[0]])
    prompt, generated = plan._item_tokens(spec, 3)  # 3 simulated items: the first again
    assert prompt[0] == -(-2 * len("Q: 2+2? A: 4") // 4) == prompt[2] and generated[0] == 0
    assert generated[1] == 50 and prompt[1] > 10  # a multiple-choice prompt, 50 tokens at most


def test_a_fixed_confidence_search_is_planned_with_the_certified_elimination():
    spec = _spec(budget=240, epsilon=0.05)
    found = plan.plan(spec, _configs(), trials=2)
    assert found.algorithm == "certified" and 0 < found.queries.mean <= 240
    # No load-aware rounds: the certified elimination moves between models at every pull.
    assert found.swaps.mean > found.queries.mean / 2
    assert 0.0 <= found.p_best <= 1.0 and found.quality_trials >= 10
