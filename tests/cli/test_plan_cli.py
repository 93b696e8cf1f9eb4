"""`gemfinder plan`: the plan of a search from its files and flags, no connection made; bad
input names the flag or the file's line."""

from __future__ import annotations

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


def test_a_plan_under_a_gpu_second_cap(files, capsys):
    """12 adapters through 4 slots on one endpoint (54 GPU-s of loads, 0.2 s a query): 240
    queries would spend about 114 GPU-seconds; at 80 the budget is planned down (reloads between
    rounds counted) and no simulated search passes the cap."""
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
    assert main([*argv, "--gpu-seconds", "80"]) == 0
    assert "GPU-second cap 80.0: query budget planned to" in capsys.readouterr().out
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected
