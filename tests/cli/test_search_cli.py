"""`gemfinder search`: offline against a matrix, live against a simulated fleet, bad input."""

from __future__ import annotations

import asyncio
import json

import pytest
from gemfinder.cli import main
from gemfinder.sim.matrix import save_npz

from tests.pool_support import BEST, clear_best_pool, start_fleet, write_endpoints


@pytest.fixture
def files(tmp_path):
    matrix, items = clear_best_pool()
    save_npz(matrix, tmp_path / "m.npz")
    lines = [json.dumps({"id": it.id, "task": it.task, **it.fields}) for it in items]
    (tmp_path / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path, matrix, items


def search(tmp_path, *extra: str) -> list[str]:
    return ["search", "--query-set", str(tmp_path / "items.jsonl"), *extra]


def test_matrix_mode_prints_ranking_and_gem_report(files, capsys):
    tmp_path, _, _ = files
    assert main(search(tmp_path, "--matrix", str(tmp_path / "m.npz"))) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[1] == BEST
    assert "the winner is a hidden gem" in out
    assert "vs 768 for exhaustive" in out


def test_json_and_store_cache_and_rerun(files, capsys, new_db):
    tmp_path, _, _ = files
    argv = search(tmp_path, "--matrix", str(tmp_path / "m.npz"), "--json")
    argv += ["--store", new_db("s.db"), "--budget-per-model", "20", "--seed", "1"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["recommended_model_id"] == BEST
    assert first["queries_cached"] == 0 and first["queries_spent"] <= 20 * 16
    assert main(argv) == 0  # same spec: the stored result, nothing run again
    assert json.loads(capsys.readouterr().out) == first
    assert main([*argv[:-1], "2"]) == 0  # another seed: shared items come from the cache
    assert json.loads(capsys.readouterr().out)["queries_cached"] > 0


async def test_live_mode_against_a_simulated_fleet(files, capsys):
    tmp_path, matrix, items = files
    fleet, candidates, configs = await start_fleet(matrix, items)
    try:
        records = [
            {k: v for k, v in vars(c).items() if v is not None and v is not False}
            for c in candidates
        ]
        (tmp_path / "c.json").write_text(json.dumps(records), encoding="utf-8")
        endpoints = write_endpoints(configs, tmp_path / "endpoints.json")
        argv = search(tmp_path, "--candidates", str(tmp_path / "c.json"))
        argv += ["--endpoints", str(endpoints), "--budget", "400"]
        argv += ["--algorithm", "gem", "--param", "first_cut=8"]
        code = await asyncio.to_thread(main, argv)  # the CLI runs its own event loop
    finally:
        await fleet.stop()
    assert code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[1] == BEST
    assert "400 queries" in out or "queries (0 failed" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--candidates: required"),
        (["--matrix", "nope.npz"], "matrix: no such file"),
        (["--matrix", "{m}", "--algorithm", "magic"], "--algorithm: unknown"),
        (["--matrix", "{m}", "--param", "first_cut"], "--param: expected name=number"),
        (
            ["--matrix", "{m}", "--param", "bogus=1"],
            "--param bogus: sh_correlated has no parameter",
        ),
        (
            ["--matrix", "{m}", "--algorithm", "ttts", "--param", "max_resample=1e300"],
            "--param max_resample: must be a whole number from 1 to 1000, got 1e300",
        ),
        (["--matrix", "{m}", "--param", "max_attempts=nan"], "--param max_attempts: must be"),
        (["--matrix", "{m}", "--budget", "3"], "--budget: budget 3 is below the 30 queries"),
        (["--matrix", "{m}", "--candidates", "{q}"], "line 1.answer: unknown field"),
        (["--matrix", "{m}", "--epsilon", "0"], "--epsilon: must be above 0 and at most 1"),
        (["--matrix", "{m}", "--epsilon", "0.01", "--delta", "0.9"], "--delta: must be above 0"),
        (["--matrix", "{m}", "--delta", "0.1"], "--delta: applies to fixed-confidence"),
        (["--matrix", "{m}", "--gpu-seconds", "0"], "--gpu-seconds: must be a number of seconds"),
        (["--matrix", "{m}", "--gpu-seconds", "nan"], "--gpu-seconds: must be a number of seconds"),
        (["--matrix", "{m}", "--top", "-1"], "--top: must be 0 or more rows, got -1"),
        (["--candidates", "{one}"], "--candidates: need at least 2 candidates"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(files, capsys, extra, message):
    tmp_path, _, _ = files
    one = tmp_path / "one.jsonl"  # a single candidate: too few to search
    one.write_text('{"model_id": "org/a", "endpoint": "http://127.0.0.1:9"}\n', "utf-8")
    extra = [a.format(m=tmp_path / "m.npz", q=tmp_path / "items.jsonl", one=one) for a in extra]
    assert main(search(tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_items_outside_the_matrix_are_refused(files, capsys):
    tmp_path, _, items = files
    extra = json.dumps({"id": "arc-extra", "task": items[0].task, **items[0].fields})
    with (tmp_path / "items.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(extra + "\n")
    assert main(search(tmp_path, "--matrix", str(tmp_path / "m.npz"))) == 2
    assert "items not in the matrix: arc-extra" in capsys.readouterr().err


def test_fixed_confidence_stops_with_a_certificate(files, capsys):
    tmp_path, matrix, items = files
    argv = search(tmp_path, "--matrix", str(tmp_path / "m.npz"), "--epsilon", "0.05")
    argv += ["--budget-per-model", str(len(items)), "--gem-check-share", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "certificate: the winner is within" in out and "(target 5 points: certified)" in out
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["recommended_model_id"] == BEST
    assert result["certificate"]["certified"] and result["certificate"]["epsilon"] == 0.05
    assert result["queries_spent"] < len(items) * len(matrix.models)


async def test_a_capped_search_replays_its_plan_once(files, capsys, monkeypatch):
    """`--gpu-seconds`: the query budget the cap buys is laid out by replaying the search
    (search.gpu_budget); the command plans it once, refusing a cap too small before anything is
    stored, and the start takes that plan rather than replaying again (up to a second)."""
    from gemfinder.search import gpu_budget

    tmp_path, matrix, items = files
    replays = []
    replayed = gpu_budget._replayed

    def counted(*args):
        replays.append(args[0].budget)
        return replayed(*args)

    monkeypatch.setattr(gpu_budget, "_replayed", counted)
    fleet, candidates, configs = await start_fleet(matrix, items)
    try:
        records = [
            {k: v for k, v in vars(c).items() if v is not None and v is not False}
            for c in candidates
        ]
        (tmp_path / "c.json").write_text(json.dumps(records), encoding="utf-8")
        endpoints = json.loads(write_endpoints(configs, tmp_path / "e.json").read_text())
        for e in endpoints:
            e["cost"] = {"model_load_s": 30, "swap_s": 2, "query_s": 0.2, "max_loras": 4}
        (tmp_path / "e.json").write_text(json.dumps(endpoints), encoding="utf-8")
        argv = search(tmp_path, "--candidates", str(tmp_path / "c.json"), "--json")
        argv += ["--endpoints", str(tmp_path / "e.json"), "--budget", "400"]
        code = await asyncio.to_thread(main, [*argv, "--gpu-seconds", "150"])
        assert code == 0
        found = json.loads(capsys.readouterr().out)
        assert replays == [400]
        assert found["queries_spent"] < 400 and found["cost"]["gpu_seconds"] <= 150 + 1e-9
        # A cap too small: refused by the command's own plan, naming the flag, nothing run.
        code = await asyncio.to_thread(main, [*argv, "--gpu-seconds", "61"])
        assert code == 2 and "--gpu-seconds:" in capsys.readouterr().err
    finally:
        await fleet.stop()
    assert len(replays) == 1


def test_two_names_for_one_served_model_say_which_and_why(files, capsys):
    # The message read "candidates[0] already names this endpoint and adapter" for two base
    # models, neither named nor with an adapter.
    tmp_path, _, _ = files
    rows = [{"model_id": m, "endpoint": "http://127.0.0.1:9"} for m in ("org/a", "org/b")]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    assert main(search(tmp_path, "--candidates", str(tmp_path / "c.jsonl"))) == 2
    err = capsys.readouterr().err
    assert "candidates[1].adapter_id: org/b: candidates[0] (org/a) already names this" in err
    assert "endpoint and base model (no adapter_id): two names for one served model" in err


def test_credentials_in_an_endpoint_url_are_refused_without_echoing_them(files, capsys):
    # The error quoted the URL whole, password included, to stderr (and a server's logs).
    tmp_path, _, _ = files
    rows = [{"model_id": f"org/{m}", "endpoint": f"http://bob:s3cret@10.0.0.{k}:80"}
            for k, m in enumerate("ab")]  # fmt: skip
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    assert main(search(tmp_path, "--candidates", str(tmp_path / "c.jsonl"))) == 2
    err = capsys.readouterr().err
    assert "c.jsonl line 1.endpoint: credentials in the URL are not allowed" in err
    assert "'http://***@10.0.0.0:80'" in err and "s3cret" not in err and "bob" not in err
