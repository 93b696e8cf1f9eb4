"""One Budget value (gemfinder.budget): every caller turns what it was sent into a total the same
way, with one default and one split between the search and the gem check."""

from __future__ import annotations

import argparse

import pytest
from gemfinder.budget import DEFAULT_PER_MODEL, Budget, gem_check_reserve
from gemfinder.candidates import Candidate
from gemfinder.cli.search import register
from gemfinder.config import ServerConfig
from gemfinder.errors import UserError
from gemfinder.search.spec import Limits
from gemfinder.server.convert import spec_from_proto

from tests.fleet_support import make_items
from tests.pool_support import spec_proto


def pool(n_models: int) -> list[Candidate]:
    return [
        Candidate(f"m{k}", "http://h:80", adapter_id=f"a{k}", downloads=k) for k in range(n_models)
    ]


def test_per_model_total_and_default():
    assert Budget.of_total(20, "--budget").total == 20
    assert Budget.of_per_model(3, 10, "--budget-per-model").total == 30
    unset = Budget.of_per_model(None, 10, "--budget-per-model")
    assert (unset.total, unset.asked.per_model, unset.asked.default) == (500, 50, False)
    said = Budget.of_per_model(None, 10, "spec.budget.per_model", default=2, default_field="x")
    assert (said.total, said.asked.field, said.asked.default) == (20, "x", True)
    assert ServerConfig().default_queries_per_model == DEFAULT_PER_MODEL == 50


def test_the_cli_default_is_the_budget_default():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["search", "--query-set", "q.jsonl"])
    assert args.budget_per_model is None  # filled in by Budget, not by the flag


def test_whole_and_average_per_model_are_checked_in_their_own_terms():
    with pytest.raises(UserError, match="must be at least 1, got 0") as err:
        Budget.of_per_model(0, 10, "--budget-per-model")
    assert err.value.field == "--budget-per-model"
    with pytest.raises(UserError, match="must be positive, got 0.0"):
        Budget.of_per_model(0.0, 10, "budget_per_model", whole=False)
    with pytest.raises(UserError, match="too large, got inf"):
        Budget.of_per_model(float("inf"), 10, "budget_per_model", whole=False)
    # The simulator's average is rounded as it always was (Python's round: half to even).
    assert Budget.of_per_model(2.5, 3, "budget_per_model", whole=False).total == 8
    assert Budget.of_per_model(1.5, 3, "budget_per_model", whole=False).total == 4
    # A whole number too large for the cap is left to the range check, in the caller's unit.
    huge = Budget.of_per_model(2_000_000, 10, "spec.budget.per_model")
    with pytest.raises(UserError, match="lower spec.budget.per_model to at most 1,000,000"):
        huge.check_range(10, Limits().max_budget)


def test_the_gem_check_reserve_is_the_one_the_spec_keeps_back():
    assert [gem_check_reserve(t, 0.1) for t in (9, 10, 401)] == [0, 1, 40]
    msg = spec_proto(pool(10), make_items(25, tasks=("mmlu",)), per_model=30)
    spec = spec_from_proto(msg, {}, 7, Limits())
    assert spec.budget == 300 and spec.gem_check_reserve == gem_check_reserve(300, 0.1) == 30
    msg.ClearField("budget")
    assert spec_from_proto(msg, {}, 7, Limits()).budget == 70  # the server's default
