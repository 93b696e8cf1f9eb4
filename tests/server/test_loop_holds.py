"""Per-search work that held the event loop for tens of ms at 1,000 models (docs/service.md,
"Health under load") runs on worker threads; the value conversions that replaced asdict give
the same JSON; freezing the startup objects leaves memory flat across many searches."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import grpc
from gemfinder.candidates import Candidate
from gemfinder.cli.serve import freeze_startup_objects
from gemfinder.oracles import InferenceOracle
from gemfinder.search import manager as manager_module
from gemfinder.search import runner as runner_module
from gemfinder.search.manager import SearchManager
from gemfinder.search.spec import SearchSpec
from gemfinder.search.values import Estimate, Result, TaskResult
from gemfinder.server import convert
from gemfinder.server.app import Server
from gemfinder.store import Store
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc

from tests.fleet_support import FAST_RETRY, make_items
from tests.pool_support import (
    InstantOracle,
    clear_best_pool,
    server_config,
    spec_proto,
    start_fleet,
)


def _recording(calls: list[tuple[str, bool]], name: str, fn):
    """`fn`, noting for each call whether it ran on the main thread (the event loop's)."""

    def wrapper(*args, **kw):
        calls.append((name, threading.current_thread() is threading.main_thread()))
        return fn(*args, **kw)

    return wrapper


async def test_start_and_a_result_are_converted_off_the_event_loop(tmp_path, monkeypatch):
    calls: list[tuple[str, bool]] = []
    monkeypatch.setattr(
        convert, "spec_from_proto", _recording(calls, "spec", convert.spec_from_proto)
    )
    monkeypatch.setattr(
        manager_module, "_encoded", _recording(calls, "keys", manager_module._encoded)
    )

    def search_to_proto(row, with_result=True):
        if row.result is not None:  # only the heavy case must leave the loop
            calls.append(("result", threading.current_thread() is threading.main_thread()))
        return plain(row, with_result)

    # The result's stored JSON (manager._json) is the one json.dumps of the manager module.
    dumps = _recording(calls, "stored", json.dumps)
    monkeypatch.setattr(manager_module, "json", SimpleNamespace(dumps=dumps))
    plain = convert.search_to_proto
    monkeypatch.setattr(convert, "search_to_proto", search_to_proto)
    matrix, items = clear_best_pool()
    fleet, candidates, configs = await start_fleet(matrix, items)
    server = Server(
        server_config(tmp_path, configs), oracle=InferenceOracle(configs, policy=FAST_RETRY)
    )
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ModelSearchServiceStub(channel)
            request = pb.SelectBestModelRequest(spec=spec_proto(candidates, items))
            done = (await stub.SelectBestModel(request, timeout=60)).search
            assert done.state == pb.SEARCH_STATE_SUCCEEDED
            got = await stub.GetSearch(pb.GetSearchRequest(search_id=done.search_id))
            assert got.search.result == done.result
            # Cancelling a finished search answers with its result, converted off the loop too.
            await stub.CancelSearch(pb.CancelSearchRequest(search_id=done.search_id))
    finally:
        await server.stop(0)
        await fleet.stop()
    names = [name for name, _ in calls]
    assert names.count("spec") == 1 and names.count("keys") == 1, names
    assert names.count("result") == 3, names  # SelectBestModel, GetSearch, CancelSearch
    assert names.count("stored") == 1, names
    assert not [name for name, on_loop in calls if on_loop], calls


async def test_a_search_result_is_built_off_the_event_loop(tmp_path, monkeypatch):
    """At a search's end its result (ranking, gem verdict and certificate from the stored
    answers, per-task ranking) and the gem check's read of the stored answers run on worker
    threads: at 1,000 models they held the loop for 16-39 ms of CPU per search."""
    calls: list[tuple[str, bool]] = []
    for name in ("result", "with_per_task"):
        monkeypatch.setattr(
            runner_module, name, _recording(calls, name, getattr(runner_module, name))
        )
    for name in ("outcomes", "task_counts"):
        monkeypatch.setattr(Store, name, _recording(calls, name, getattr(Store, name)))
    items = make_items(6, tasks=("mmlu", "arc_challenge"))
    candidates = [
        Candidate(f"m{k}", "http://h:80", adapter_id=f"a{k}", downloads=10.0**k) for k in range(4)
    ]
    # A database file: a memory database has no other connection to read it (Store.off_loop).
    manager = SearchManager(Store(str(tmp_path / "r.db")), InstantOracle())
    try:
        row = await manager.start(SearchSpec(candidates, items, budget=40, seed=1))
        done = await manager.wait(row.id)
    finally:
        await manager.close()
    assert done.state == "succeeded" and len(done.result.per_task) == 2, done
    names = [name for name, _ in calls]
    assert names.count("result") == 1 and names.count("with_per_task") == 1, names
    assert names.count("task_counts") == 1, names
    assert names.count("outcomes") >= 2, names  # the gem check's and the verdict's
    assert not [name for name, on_loop in calls if on_loop], calls


def test_serve_builds_the_http_client_stack_before_it_serves():
    """`Server(...)` (which `gemfinder serve` builds before it accepts a request) imports the
    endpoint clients' library and builds the SSL context, which the first StartSearch of the
    process did on the event loop (~60 ms of CPU). A fresh interpreter: this one has them."""
    code = (
        "import sys\n"
        "from gemfinder.config import ServerConfig\n"
        "from gemfinder.oracles import transport\n"
        "from gemfinder.server.app import Server\n"
        "client = 'huggingface_hub.inference._generated._async_client'\n"
        "before = (client in sys.modules, transport._SSL is not None)\n"
        "Server(ServerConfig(address='127.0.0.1:0', db=':memory:', allow_any_endpoint=True))\n"
        "print(before, (client in sys.modules, transport._SSL is not None))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(False,", "False)", "(True,", "True)"], out.stdout


def test_values_convert_as_asdict_did():
    """Estimate.to_json and estimate_to_proto no longer go through asdict: same dict, same
    message; reading back keeps the old rules (unknown keys left out, non-finite as 0)."""
    e = Estimate("org/m", 2, 0.5, 0.25, 0.75, 40, 20, 3, None, True)
    assert e.to_json() == asdict(e)
    assert list(e.to_json()) == list(asdict(e))  # the stored key order too
    msg = convert.estimate_to_proto(e)
    assert msg == pb.ModelEstimate(**{k: v for k, v in asdict(e).items() if v is not None})
    assert not msg.HasField("downloads")
    back = Estimate.from_json(e.to_json() | {"accuracy": float("nan"), "later_field": 1})
    assert back == Estimate("org/m", 2, 0.0, 0.25, 0.75, 40, 20, 3, None, True)
    r = Result("org/m", (e,), winner=e, per_task=(TaskResult("mmlu", 1.0, 3, (e,)),), overall=(e,))
    assert Result.from_json(r.to_json()) == r


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


async def test_memory_stays_flat_across_many_searches_with_frozen_startup_objects(tmp_path):
    """200 small searches after gc.freeze (as `gemfinder serve` does): the second 100 leave no
    more tracked objects and no more resident memory behind than the first 100 did."""
    items = make_items(4, tasks=("mmlu",))
    candidates = [Candidate(f"m{k}", "http://h:80", adapter_id=f"a{k}") for k in range(4)]
    manager = SearchManager(Store(str(tmp_path / "m.db")), InstantOracle(), max_active=4)

    async def searches(n: int, first: int) -> None:
        for seed in range(first, first + n):
            spec = SearchSpec(candidates, items, budget=12, seed=seed)
            row = await manager.start(spec)
            assert (await manager.wait(row.id)).state == "succeeded"

    freeze_startup_objects()
    try:
        await searches(100, 0)
        gc.collect()
        objects, rss = len(gc.get_objects()), _rss_kb()
        await searches(100, 100)
        gc.collect()
        grown_objects, grown_kb = len(gc.get_objects()) - objects, _rss_kb() - rss
    finally:
        await manager.close()
        gc.unfreeze()
    # Under 10 per search: nothing of a search is kept (its spec, runner and result are hundreds
    # of objects). Alone this test sees under 2 per search; in the full suite other tests'
    # leftovers (closing servers, thread pools) add a few hundred in all.
    assert grown_objects < 1000, grown_objects
    assert grown_kb < 4096, grown_kb
