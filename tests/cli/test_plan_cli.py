"""`gemfinder plan`: the plan of a search from its files and flags, no connection made; bad
input names the flag or the file's line."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from gemfinder.cli import main

from tests.fleet_support import make_items


@pytest.fixture
def files(tmp_path):
    """Candidates on an endpoint that listens and counts nothing but would see a connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    items = make_items(10, tasks=("mmlu", "gsm8k"))
    lines = [json.dumps({"id": it.id, "task": it.task, **it.fields}) for it in items]
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cands = [{"model_id": f"org/m{k}", "endpoint": url, "adapter_id": f"a{k}"} for k in range(12)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cands), "utf-8")
    cost = {"model_load_s": 30, "swap_s": 2, "query_s": 0.2, "max_loras": 4}
    endpoints = [{"url": url, "adapters": [c["adapter_id"] for c in cands], "cost": cost}]
    (tmp_path / "e.json").write_text(json.dumps(endpoints), encoding="utf-8")
    yield tmp_path, listener
    listener.close()


def plan(tmp_path, *extra: str) -> list[str]:
    return ["plan", "--query-set", str(tmp_path / "items.jsonl"),
            "--candidates", str(tmp_path / "c.jsonl"), *extra]  # fmt: skip


def test_a_plan_prices_the_search_and_connects_to_nothing(files, capsys):
    tmp_path, listener = files
    argv = plan(tmp_path, "--endpoints", str(tmp_path / "e.json"), "--budget", "120")
    assert main([*argv, "--json", "--trials", "4"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["trials"] == 4 and found["models"] == 12 and found["accounted"]
    assert 0 < found["queries"]["mean"] <= 120
    assert found["model_loads"]["mean"] == 1  # one endpoint, its base model up once
    # 12 adapters through 4 slots, at 2 s a swap: more than one round's worth of swaps
    assert found["swaps"]["mean"] > 12
    gpu = found["gpu_seconds"]["mean"]
    assert gpu == pytest.approx(30 + 2 * found["swaps"]["mean"] + 0.2 * found["queries"]["mean"])
    assert found["wall_s"]["mean"] == pytest.approx(gpu)  # one endpoint: its clock is the wall
    assert "max_new_tokens" in found["token_source"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "GPU-seconds" in out and "P(best)" in out and "max_new_tokens" in out
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected


def test_without_endpoint_settings_queries_and_tokens_only(files, capsys):
    tmp_path, _ = files
    # TGI adapters cannot be checked without the list of adapters: say the backend is vLLM's
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    rows = [{**json.loads(line), "backend": "BACKEND_OPENAI_COMPLETIONS"} for line in lines]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    assert main(plan(tmp_path, "--budget-per-model", "10", "--trials", "2")) == 0
    out = capsys.readouterr().out
    assert "no candidate's endpoint has a cost model" in out


def test_tgi_adapters_without_endpoint_settings_say_which_flag_lists_them(files, capsys):
    # The error said "list the adapters ... was launched with" and not where: a user who ran
    # the command without --endpoints could not tell what to give.
    tmp_path, _ = files
    assert main(plan(tmp_path, "--budget-per-model", "10")) == 2
    err = capsys.readouterr().err
    assert "search.candidates[0].adapter_id: org/m0: adapter 'a0' cannot be checked" in err
    assert '"adapters" in the endpoints file (--endpoints FILE' in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--trials", "0"], "--trials: must be 1-64"),
        (["--budget", "3000000"], "--budget: a plan simulates searches of at most 2,000,000"),
        (["--budget-per-model", "200000"], "--budget-per-model: a plan simulates"),
        (["--budget", "5"], "--budget:"),
        (["--algorithm", "nope"], "--algorithm: unknown"),
        (["--param", "first_cut"], "--param: expected name=number"),
        (["--seed", "-1"], "--seed"),
        (["--endpoints", "missing.json"], "missing.json"),
        (["--gpu-seconds", "0"], "--gpu-seconds: must be"),
        (["--gpu-seconds", "50"], "--gpu-seconds: 50 GPU-seconds do not cover bringing"),
    ],
)
def test_bad_input_names_the_flag(files, capsys, extra, message):
    tmp_path, _ = files
    assert main(plan(tmp_path, "--endpoints", str(tmp_path / "e.json"), *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_an_adapter_the_endpoint_does_not_serve_names_the_line(files, capsys):
    tmp_path, _ = files
    endpoints = json.loads((tmp_path / "e.json").read_text())
    endpoints[0]["adapters"] = endpoints[0]["adapters"][1:]
    (tmp_path / "e.json").write_text(json.dumps(endpoints), encoding="utf-8")
    assert main(plan(tmp_path, "--endpoints", str(tmp_path / "e.json"))) == 2
    err = capsys.readouterr().err
    assert "search.candidates[0].adapter_id" in err and "'a0' is not served" in err, err


def test_a_plan_under_a_gpu_second_cap(files, capsys, monkeypatch):
    """12 adapters through 4 slots on one endpoint (54 GPU-s of loads, 0.2 s a query): 240
    queries would spend about 114 GPU-seconds; at 80 the budget is planned down (reloads between
    rounds counted), once per plan, and no simulated search passes the cap."""
    from gemfinder.search import gpu_budget

    replays = []
    replayed = gpu_budget._replayed
    monkeypatch.setattr(gpu_budget, "_replayed", lambda *a: replays.append(1) or replayed(*a))
    tmp_path, listener = files
    argv = plan(tmp_path, "--endpoints", str(tmp_path / "e.json"), "--budget", "240")
    assert main([*argv, "--json", "--trials", "8"]) == 0
    free = json.loads(capsys.readouterr().out)
    assert free["gpu_seconds_cap"] is None and free["capped"] == 0.0
    assert free["planned_budget"] == 240 and free["gpu_seconds"]["mean"] > 80
    assert main([*argv, "--json", "--trials", "8", "--gpu-seconds", "80"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["gpu_seconds_cap"] == 80.0 and found["budget"] == 240
    assert found["planned_budget"] < 240 and found["queries"]["mean"] <= found["planned_budget"]
    assert found["gpu_seconds"]["p90"] <= 80 + 1e-9
    assert len(replays) == 1  # the command's validation and the plan share one replay
    assert main([*argv, "--gpu-seconds", "80"]) == 0
    assert "GPU-second cap 80.0: query budget planned to" in capsys.readouterr().out
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected


async def test_a_plan_of_an_incremental_search(tmp_path, capsys):
    """`--incremental-from`: planned on the pool the search would narrow the current tree to
    (the earlier search's top `--incumbents` and the newcomers), the incumbents' answers in
    `--store`'s evaluation cache free; an earlier search the store lacks names the flag."""
    from gemfinder.sim.matrix import save_npz

    from tests.pool_support import clear_best_pool, start_fleet, write_endpoints

    matrix, items = clear_best_pool()
    save_npz(matrix, tmp_path / "m.npz")
    lines = [json.dumps({"id": it.id, "task": it.task, **it.fields}) for it in items]
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    fleet, candidates, configs = await start_fleet(matrix, items)
    try:
        records = [
            {k: v for k, v in vars(c).items() if v is not None and v is not False}
            for c in candidates
        ]
        (tmp_path / "old.json").write_text(json.dumps(records[:12]), "utf-8")  # yesterday's
        (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
        endpoints = str(write_endpoints(configs, tmp_path / "e.json"))
        with_cost = json.loads((tmp_path / "e.json").read_text())
        for e in with_cost:
            e["cost"] = {"model_load_s": 30, "swap_s": 2, "query_s": 0.2, "max_loras": 4}
        (tmp_path / "e.json").write_text(json.dumps(with_cost), encoding="utf-8")
        store = str(tmp_path / "s.db")
        searched = ["search", "--query-set", str(tmp_path / "items.jsonl"), "--json",
                    "--candidates", str(tmp_path / "old.json"), "--endpoints", endpoints,
                    "--store", store, "--budget-per-model", "10"]  # fmt: skip
        assert await asyncio.to_thread(main, searched) == 0
        capsys.readouterr()
        argv = plan(tmp_path, "--endpoints", endpoints, "--store", store, "--json")
        argv += ["--incremental-from", "latest", "--incumbents", "4", "--trials", "4"]
        assert main(argv) == 0
        found = json.loads(capsys.readouterr().out)
        assert found["models"] == 4 + 4  # the 4 incumbents and the 4 models new since
        assert found["cached"]["mean"] > 0 and found["queries"]["mean"] > 0
        assert found["gpu_seconds"]["mean"] > 0
        # The search itself: a cap is planned at its start, on the narrowed pool; too small,
        # it is refused naming the flag.
        again = ["search", "--query-set", str(tmp_path / "items.jsonl"), "--candidates",
                 str(tmp_path / "c.jsonl"), "--endpoints", endpoints, "--store", store,
                 "--incremental-from", "latest", "--gpu-seconds", "10"]  # fmt: skip
        assert await asyncio.to_thread(main, again) == 2
        assert "--gpu-seconds: 10 GPU-seconds do not cover" in capsys.readouterr().err
        argv[argv.index("latest")] = "nope"
        assert main(argv) == 2
        assert "--incremental-from: no search with id 'nope'" in capsys.readouterr().err
    finally:
        await fleet.stop()
