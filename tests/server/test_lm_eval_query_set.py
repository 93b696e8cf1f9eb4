"""A search whose query set names an lm-eval task, through a real server and the simulated fleet.

The operator registers each task's data files (--lm-eval-tasks); a request names the task and
its options only. Unregistered names, paths and YAML are refused before lm-eval sees them
(INVALID_ARGUMENT), registered data that cannot serve a request is FAILED_PRECONDITION naming
the field and the split needed, and the build runs off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from gemfinder.oracles import InferenceOracle
from gemfinder.server.app import Server
from gemfinder.server.errors import DETAILS_KEY
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.tasks import parse_item
from gemfinder.tasks.lmeval import catalog
from gemfinder.tasks.lmeval.build import build_query_set
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2

from tests import lm_eval_support as sup
from tests.fleet_support import FAST_RETRY
from tests.pool_support import server_config, start_fleet

MODELS = ["org/base", "org/ft-a", "org/gem", "org/ft-b"]
BEST = "org/gem"


@pytest.fixture
def registered(tmp_path: Path, shared_data: Path) -> tuple[Path, dict[str, dict[str, Path]]]:
    """tasks.json: arc_challenge as a directory of split files, gsm8k as a test file only."""
    arc = tmp_path / "data" / "arc"
    arc.mkdir(parents=True)
    sup.write_jsonl(arc / "test.jsonl", sup.ARC_TEST)
    sup.write_jsonl(arc / "train.jsonl", sup.ARC_TRAIN)
    gsm = sup.write_jsonl(
        tmp_path / "data" / "gsm.jsonl",
        sup.shared_rows(shared_data / "gsm8k" / "test.jsonl", 0, 10),
    )
    path = tmp_path / "data" / "tasks.json"
    path.write_text(json.dumps({"arc_challenge": "arc", "gsm8k": {"test": "gsm.jsonl"}}))
    files = {
        "arc_challenge": {"test": arc / "test.jsonl", "train": arc / "train.jsonl"},
        "gsm8k": {"test": gsm},
    }
    return path, files


def _matrix(items) -> CorrectnessMatrix:
    rng = np.random.default_rng(5)
    correct = (rng.random((len(MODELS), len(items))) < 0.4).astype(np.uint8)
    correct[MODELS.index(BEST)] = 1
    return CorrectnessMatrix(correct, MODELS, [it.id for it in items])


def _spec(candidates, lm_eval: pb.LmEvalQuerySet, per_model: int) -> pb.SearchSpec:
    return pb.SearchSpec(
        candidates=[
            pb.Candidate(model_id=c.model_id, endpoint=c.endpoint, adapter_id=c.adapter_id or "")
            for c in candidates
        ],
        query_set=pb.QuerySet(lm_eval=lm_eval),
        budget=pb.Budget(per_model=per_model),
        algorithm="uniform",
        gem_check_share=0.0,
    )


def _violation(err: grpc.aio.AioRpcError) -> tuple[str, str]:
    status = status_pb2.Status.FromString(dict(err.trailing_metadata())[DETAILS_KEY])
    if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
        detail = error_details_pb2.PreconditionFailure()
        assert status.details[0].Unpack(detail)
        return detail.violations[0].subject, detail.violations[0].description
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    return detail.field_violations[0].field, detail.field_violations[0].description


async def test_a_search_names_a_registered_lm_eval_task(
    registered, tmp_path: Path, monkeypatch
) -> None:
    tasks_json, files = registered
    arc = build_query_set("arc_challenge", files["arc_challenge"], num_fewshot=2)
    gsm = build_query_set("gsm8k", files["gsm8k"], num_fewshot=0, filter_name="flexible-extract")
    items = [parse_item(json.dumps(r), "r") for r in arc + gsm]
    fleet, candidates, configs = await start_fleet(_matrix(items), items)
    config = server_config(tmp_path, configs, lm_eval_tasks=str(tasks_json))
    server = Server(config, oracle=InferenceOracle(configs, policy=FAST_RETRY))
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            # multiple choice (log-likelihoods), 2-shot from the registered train split
            ask = pb.LmEvalQuerySet(task="arc_challenge", num_fewshot=2)
            reply = await stub.SelectBestModel(
                pb.SelectBestModelRequest(spec=_spec(candidates, ask, len(arc)))
            )
            result = reply.search.result
            assert result.recommended_model_id == BEST
            assert result.queries_spent == len(arc) * len(MODELS)
            served = server.manager.get(reply.search.search_id)
            assert served.spec["query_set"] == "lm_eval:arc_challenge"
            assert [it["id"] for it in served.spec["items"]] == [r["id"] for r in arc]

            # generated text, with a filter and a limit the caller chose
            ask = pb.LmEvalQuerySet(task="gsm8k", num_fewshot=0, limit=6, filter="flexible-extract")
            reply = await stub.SelectBestModel(
                pb.SelectBestModelRequest(spec=_spec(candidates, ask, 6))
            )
            assert reply.search.result.recommended_model_id == BEST
            assert reply.search.result.queries_spent == 6 * len(MODELS)

            # a build blocks no other call: the event loop answers while it runs
            real = catalog.Catalog._build

            def slow_build(self, req, field):
                time.sleep(2.0)
                return real(self, req, field)

            monkeypatch.setattr(catalog.Catalog, "_build", slow_build)
            ask = pb.LmEvalQuerySet(task="gsm8k", num_fewshot=0, limit=3)
            start = asyncio.ensure_future(
                stub.StartSearch(pb.StartSearchRequest(spec=_spec(candidates, ask, 3)))
            )
            await asyncio.sleep(0.3)
            t0 = time.perf_counter()
            await stub.ListSearches(pb.ListSearchesRequest())
            assert time.perf_counter() - t0 < 1.0 and not start.done()
            await start
    finally:
        await server.stop(0)
        await fleet.stop()


async def test_what_a_request_may_not_do(registered, tmp_path: Path) -> None:
    tasks_json, _ = registered
    marker = tmp_path / "pwned"
    # A task YAML carrying code: lm-eval would import evil.py to resolve the !function.
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\ndef doc_to_text(doc):\n    return 'x'\n"
    )
    (evil / "evil.yaml").write_text(
        "task: evil\ndataset_path: json\noutput_type: generate_until\ntest_split: test\n"
        "doc_to_text: !function evil.doc_to_text\ndoc_to_target: answer\n"
    )
    config = server_config(tmp_path, [], lm_eval_tasks=str(tasks_json))
    server = Server(config)
    port = await server.start()
    cands = [pb.Candidate(model_id=f"m{i}", endpoint="http://127.0.0.1:9") for i in range(2)]

    async def refused(lm_eval: pb.LmEvalQuerySet) -> tuple[grpc.StatusCode, str, str]:
        spec = pb.SearchSpec(candidates=cands, query_set=pb.QuerySet(lm_eval=lm_eval))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.StartSearch(pb.StartSearchRequest(spec=spec))
        return (err.value.code(), *_violation(err.value))

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            invalid = grpc.StatusCode.INVALID_ARGUMENT
            field = "spec.query_set.lm_eval.task"
            # names lm-eval knows but the operator did not register, a path to YAML with code,
            # the directory holding it, a relative path: all refused by name, nothing loaded
            for name in ["hellaswag", str(evil / "evil.yaml"), str(evil), "../evil/evil.yaml",
                         "evil", ""]:  # fmt: skip
                code, where, why = await refused(pb.LmEvalQuerySet(task=name))
                assert (code, where) == (invalid, field), name
                assert "registered" in why and "arc_challenge, gsm8k" in why
            assert not marker.exists()
            # inline items cannot bring Python either: filters are looked up by name only
            item = json.loads(json.dumps(build_query_set(
                "gsm8k", {"test": sup.write_jsonl(tmp_path / "g.jsonl", [
                    {"question": "1+1?", "answer": "#### 2"}])}, num_fewshot=0)[0]))  # fmt: skip
            item["filter"]["steps"] = [["evil.doc_to_text", None], ["take_first", None]]
            fields = {k: v for k, v in item.items() if k not in ("id", "task")}
            spec = pb.SearchSpec(
                candidates=cands,
                query_set=pb.QuerySet(inline=pb.InlineQuerySet(items=[
                    pb.QueryItem(id="x", task="lm_eval", fields_json=json.dumps(fields))])),
            )  # fmt: skip
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.StartSearch(pb.StartSearchRequest(spec=spec))
            assert err.value.code() == invalid and "filter" in err.value.details()
            assert not marker.exists()

            # registered, but the data cannot serve this request: the operator's to fix
            code, where, why = await refused(pb.LmEvalQuerySet(task="gsm8k", num_fewshot=5))
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert where == "spec.query_set.lm_eval.num_fewshot"
            assert "split(s) train" in why and "--lm-eval-tasks" in why
            assert "--data-files" not in why
            # options lm-eval refuses, named by field
            code, where, why = await refused(
                pb.LmEvalQuerySet(task="gsm8k", num_fewshot=0, metric="bleu")
            )
            assert (code, where) == (invalid, "spec.query_set.lm_eval.metric")
            code, where, _ = await refused(
                pb.LmEvalQuerySet(task="gsm8k", num_fewshot=0, filter="nope")
            )
            assert (code, where) == (invalid, "spec.query_set.lm_eval.filter")
            code, where, why = await refused(
                pb.LmEvalQuerySet(task="arc_challenge", num_fewshot=50)
            )
            assert (code, where) == (invalid, "spec.query_set.lm_eval.num_fewshot")
            assert "50 few-shot examples" in why and "fewer documents" in why
            code, where, _ = await refused(pb.LmEvalQuerySet(task="gsm8k", limit=10**9))
            assert (code, where) == (invalid, "spec.query_set.lm_eval.limit")
    finally:
        await server.stop(0)


def test_the_registration_file_is_checked_at_start(tmp_path: Path) -> None:
    from gemfinder.errors import UserError

    # a directory is read as SPLIT.jsonl / .parquet / .csv files; the registration beside them
    # is not a split
    (tmp_path / "test.jsonl").write_text("{}\n")
    (tmp_path / "train.parquet").write_bytes(b"")
    (tmp_path / "tasks.json").write_text('{"gsm8k": "."}')
    cat = catalog.Catalog.load(str(tmp_path / "tasks.json"), (), "--lm-eval-tasks")
    assert sorted(cat.tasks["gsm8k"]) == ["test", "train"]

    f = tmp_path / "tasks.json"
    for body, reason in [
        ("[1]", "expected an object"),
        ('{"gsm8k": {"test": "missing.jsonl"}}', "no such file"),
        ('{"gsm8k": "nodir"}', "is not a directory"),
        ('{"gsm8k": {"test": "tasks.json.txt"}}', "expected .jsonl"),
        ("{", "not JSON"),
    ]:
        f.write_text(body)
        with pytest.raises(UserError, match=reason) as err:
            catalog.Catalog.load(str(f), (), "--lm-eval-tasks")
        assert err.value.field == "--lm-eval-tasks"


def test_the_service_path_does_not_import_lm_eval(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, gemfinder.server.app, gemfinder.cli.serve\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lm_eval', 'datasets')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_a_server_with_registered_tasks_warms_lm_evals_index(
    registered, tmp_path: Path, monkeypatch
) -> None:
    from gemfinder.tasks.lmeval import index

    tasks_json, _ = registered
    monkeypatch.setenv("GEMFINDER_CACHE_DIR", str(tmp_path / "cache"))
    index._memo.clear()
    server = Server(server_config(tmp_path, [], lm_eval_tasks=str(tasks_json)))
    await server.start()
    try:
        await server._warm  # started with the server, on a worker thread
        assert () in index._memo and list((tmp_path / "cache").glob("lm-eval-index-*.json"))
    finally:
        await server.stop(0)
        index._memo.clear()


def test_a_registered_name_lm_eval_does_not_know_is_logged_at_start(tmp_path: Path, caplog):
    # `serve --lm-eval-tasks` with {"gsm8kk": ...} started silently; the typo showed only when
    # a caller named the task.
    (tmp_path / "test.jsonl").write_text('{"question": "q", "answer": "1"}\n')
    (tmp_path / "tasks.json").write_text('{"gsm8kk": ".", "gsm8k": "."}')
    cat = catalog.Catalog.load(str(tmp_path / "tasks.json"), (), "--lm-eval-tasks")
    cat.warm()
    warned = [
        r.getMessage() for r in caplog.records if "--lm-eval-tasks registers" in r.getMessage()
    ]
    assert len(warned) == 1 and "'gsm8kk', which is not an lm-eval task" in warned[0]
