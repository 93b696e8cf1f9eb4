"""Budget errors speak of the number the caller sent (total or per model), say what the gem check
keeps back, and name a budget that works: over gRPC (INVALID_ARGUMENT naming the budget field)
and on the command line (naming the flag)."""

from __future__ import annotations

import json
import re

import grpc
import pytest
from gemfinder import _core
from gemfinder.budget import BudgetAsked
from gemfinder.candidates import Candidate
from gemfinder.cli import main
from gemfinder.config import ServerConfig
from gemfinder.errors import UserError
from gemfinder.oracles import InferenceOracle
from gemfinder.search.spec import SearchSpec
from gemfinder.server.app import Server
from gemfinder.server.errors import DETAILS_KEY
from gemfinder.sim.matrix import save_npz
from gemfinder.sim.simulation import simulate
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2

from tests.fleet_support import make_items
from tests.pool_support import clear_best_pool, spec_proto

FIX = re.compile(r"raise (\S+) to ([\d,]+)")


def pool(n_models: int, downloads: bool = True) -> list[Candidate]:
    return [
        Candidate(f"m{k}", "http://h:80", adapter_id=f"a{k}", downloads=k if downloads else None)
        for k in range(n_models)
    ]


def refused(spec: SearchSpec, asked: BudgetAsked) -> UserError:
    with pytest.raises(UserError) as err:
        spec.validate(asked=asked)
    return err.value


def test_the_issue_example_reports_what_the_caller_sent():
    # sh with 2 queries per model on 10 models with downloads: the core sees 18 of the 20.
    spec = SearchSpec(pool(10), make_items(25, tasks=("mmlu",)), budget=20, algorithm="sh")
    err = refused(spec, BudgetAsked("--budget-per-model", 2, share_field="--gem-check-share"))
    assert err.field == "--budget-per-model"
    assert err.reason.startswith(
        "budget 2 per model (20 queries for 10 models; the gem check keeps back 2, leaving 18 "
        "for the search) is below the 20 queries that sh needs to search 10 models"
    )
    assert err.reason.endswith("raise --budget-per-model to 3 or set --gem-check-share 0")


@pytest.mark.parametrize("share", [0.0, 0.1, 0.25, 0.5])
@pytest.mark.parametrize(("algorithm", "n_models"), [("sh", 10), ("gem", 37), ("ucb", 7)])
@pytest.mark.parametrize("per_model", [True, False])
def test_the_suggested_budget_is_the_smallest_that_passes(share, algorithm, n_models, per_model):
    items = make_items(40, tasks=("mmlu",))
    step = n_models if per_model else 1  # the totals a caller can ask for

    def spec(total: int, share: float = share) -> SearchSpec:
        cands = pool(n_models)
        return SearchSpec(cands, items, budget=total, algorithm=algorithm, gem_check_share=share)

    def asked(total: int) -> BudgetAsked:
        if per_model:
            return BudgetAsked("per_model", total // n_models, share_field="share")
        return BudgetAsked("total", share_field="share")

    least = _core.min_budget(algorithm, n_models, len(items))  # what the search alone needs
    for total in (step, -(-least // step) * step, -(-least // step) * step + step):
        if total - int(share * total) >= least:  # the gem check's reserve leaves enough
            spec(total).validate(asked=asked(total))
            continue
        err = refused(spec(total), asked(total))
        field, value = FIX.search(err.reason).groups()
        assert field == ("per_model" if per_model else "total")
        enough = int(value.replace(",", "")) * step
        spec(enough).validate(asked=asked(enough))  # the suggestion passes
        refused(spec(enough - step), asked(enough - step))  # and one step less does not
        # Turning the gem check off is offered exactly when that alone would be enough.
        assert ("or set share 0" in err.reason) == (total >= least)
        if total >= least:
            spec(total, share=0.0).validate(asked=asked(total))


def test_a_budget_too_small_to_keep_anything_back_still_counts_the_reserve():
    spec = SearchSpec(pool(10), make_items(25, tasks=("mmlu",)), budget=3, algorithm="sh")
    err = refused(spec, BudgetAsked("--budget", share_field="--gem-check-share"))
    assert err.reason.startswith("budget 3 is below the 20 queries that sh needs")
    assert err.reason.endswith("raise --budget to 22 (the gem check keeps back 10% of it)")


def test_without_downloads_nothing_is_kept_back_or_offered():
    spec = SearchSpec(pool(10, downloads=False), make_items(25, tasks=("mmlu",)), budget=10)
    err = refused(spec, BudgetAsked("--budget", share_field="--gem-check-share"))
    assert err.reason.startswith("budget 10 is below the ")
    assert "gem check" not in err.reason and "--gem-check-share" not in err.reason


def test_above_the_limit_is_said_in_the_unit_sent():
    spec = SearchSpec(pool(10), make_items(5, tasks=("mmlu",)), budget=20_000_000)
    err = refused(spec, BudgetAsked("spec.budget.per_model", 2_000_000))
    assert err.reason == (
        "budget 2,000,000 per model (20,000,000 queries for 10 models) is above the limit of "
        "10,000,000 queries: lower spec.budget.per_model to at most 1,000,000"
    )


def test_simulate_speaks_per_model(tmp_path):
    matrix, _ = clear_best_pool(n_models=10, per_task=3)
    with pytest.raises(UserError) as err:
        simulate(matrix, "sh", 1.5, trials=1, seed=0)
    assert err.value.field == "budget_per_model"
    assert err.value.reason.startswith("budget 1.5 per model (15 queries for 10 models) is below")
    assert err.value.reason.endswith("raise budget_per_model to 2")
    simulate(matrix, "sh", 2, trials=1, seed=0)


@pytest.fixture
def files(tmp_path):
    matrix, items = clear_best_pool(n_models=10, per_task=5)  # with downloads: a gem check
    save_npz(matrix, tmp_path / "m.npz")
    lines = [json.dumps({"id": it.id, "task": it.task, **it.fields}) for it in items]
    (tmp_path / "q.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("flags", "start", "end"),
    [
        (
            ["--budget-per-model", "2"],
            "--budget-per-model: budget 2 per model (20 queries for 10 models; the gem check "
            "keeps back 2, leaving 18 for the search) is below the 20 queries",
            "raise --budget-per-model to 3 or set --gem-check-share 0",
        ),
        (
            ["--budget", "20"],
            "--budget: budget 20 (the gem check keeps back 2, leaving 18 for the search) is "
            "below the 20 queries",
            "raise --budget to 22 or set --gem-check-share 0",
        ),
        (["--budget", "0"], "--budget: budget 0 must be at least 1", ""),
    ],
)
def test_cli_names_the_flag_and_the_number_sent(files, capsys, flags, start, end):
    argv = ["search", "--matrix", str(files / "m.npz"), "--query-set", str(files / "q.jsonl")]
    assert main([*argv, "--algorithm", "sh", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"gemfinder search: error: {start}") and err.endswith(end), err
    for fixed in (
        ["--budget-per-model", "3"],
        ["--budget-per-model", "2", "--gem-check-share", "0"],
    ):
        assert main([*argv, "--algorithm", "sh", *fixed]) == 0  # both suggestions work
    capsys.readouterr()


async def test_grpc_names_the_budget_field_and_the_number_sent(tmp_path):
    matrix, items = clear_best_pool(n_models=10, per_task=5)
    candidates = [
        Candidate(m, "http://127.0.0.1:9", adapter_id=m, downloads=float(d))
        for m, d in zip(matrix.models, matrix.downloads, strict=True)
    ]
    per_model = spec_proto(candidates, items, per_model=2, algorithm="sh")
    total = spec_proto(candidates, items, per_model=2, algorithm="sh")
    total.budget.total = 20
    default = spec_proto(candidates, items, per_model=2, algorithm="sh")
    default.ClearField("budget")
    zero = spec_proto(candidates, items, per_model=0, algorithm="sh")
    huge = spec_proto(candidates, items, per_model=2_000_000, algorithm="sh")
    config = ServerConfig(
        address="127.0.0.1:0", metrics_port=0, db=str(tmp_path / "b.db"),
        default_queries_per_model=1,
    )  # fmt: skip
    server = Server(config, oracle=InferenceOracle())
    port = await server.start()
    cases = [
        (per_model, "spec.budget.per_model", "budget 2 per model (20 queries for 10 models; "
         "the gem check keeps back 2, leaving 18 for the search) is below the 20 queries",
         "raise spec.budget.per_model to 3 or set spec.gem_check_share 0"),
        (total, "spec.budget.total", "budget 20 (the gem check keeps back 2, leaving 18 for "
         "the search) is below the 20 queries",
         "raise spec.budget.total to 22 or set spec.gem_check_share 0"),
        (default, "spec.budget", "default budget 1 per model (10 queries for 10 models; the "
         "gem check keeps back 1, leaving 9 for the search)",
         "raise spec.budget.per_model to 3"),
        (zero, "spec.budget.per_model", "must be at least 1, got 0", ""),
        (huge, "spec.budget.per_model", "budget 2,000,000 per model (20,000,000 queries for 10 "
         "models) is above the limit", "lower spec.budget.per_model to at most 1,000,000"),
    ]  # fmt: skip
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            for spec, field, start, end in cases:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.StartSearch(pb.StartSearchRequest(spec=spec))
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                status = status_pb2.Status.FromString(
                    dict(err.value.trailing_metadata())[DETAILS_KEY]
                )
                bad = error_details_pb2.BadRequest()
                assert status.details[0].Unpack(bad)
                violation = bad.field_violations[0]
                assert violation.field == field
                assert violation.description.startswith(start), violation.description
                assert violation.description.endswith(end), violation.description
                assert start in err.value.details()
    finally:
        await server.stop(0)


def test_the_core_error_carries_the_numbers_to_restate():
    with pytest.raises(_core.SearchError) as err:
        _core.Scheduler("sh", 10, 100, 18, 0)
    assert (err.value.kind, err.value.field, err.value.needed) == ("budget_too_small", "budget", 20)
    assert err.value.why == "each round must give every survivor an item"


def test_demo_names_its_flag(tmp_path, capsys):
    argv = ["demo", "--models", "10", "--items", "100", "--per-model", "1"]
    assert main([*argv, "--no-progress", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "gemfinder demo: error: --per-model: budget 1 per model (10 queries for 10 models; the "
        "gem check keeps back 1, leaving 9 for the search) is below the 20 queries that "
        f"{_core.DEFAULT_ALGORITHM} needs"
    ), err
    assert err.endswith("raise --per-model to 3")
