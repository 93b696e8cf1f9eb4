"""`gemfinder fleet`: the files a search needs (--endpoints-out), and one-line errors naming the
flag for unwritable outputs and ports in use (never a traceback)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time

import pytest
from gemfinder.cli import main
from gemfinder.oracles import load_endpoint_configs
from gemfinder.sim.fleet.synthetic_items import write_jsonl
from gemfinder.sim.matrix import save_npz

from tests.pool_support import BEST, clear_best_pool


@pytest.fixture
def files(tmp_path):
    matrix, items = clear_best_pool()
    save_npz(matrix, tmp_path / "tree.npz")
    write_jsonl(
        [{"id": it.id, "task": it.task, **it.fields} for it in items], tmp_path / "items.jsonl"
    )
    return tmp_path, matrix


def _serve(tmp_path, *extra: str) -> list[str]:
    return [
        "fleet", "serve", "--matrix", str(tmp_path / "tree.npz"),
        "--query-set", str(tmp_path / "items.jsonl"), "--endpoints", "2", *extra,
    ]  # fmt: skip


def _one_line_error(capsys, flag: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"gemfinder fleet: error: {flag}: "), err
    assert "Traceback" not in err
    return err


def test_serve_writes_the_endpoints_a_search_needs_and_the_search_runs(files, capsys):
    """The docs/oracles.md walkthrough: fleet serve writes both files, search uses them."""
    tmp_path, matrix = files
    cands, endpoints = tmp_path / "cands.jsonl", tmp_path / "endpoints.json"
    argv = [sys.executable, "-m", "gemfinder", *_serve(tmp_path), "--duration", "60"]
    argv += ["--candidates-out", str(cands), "--endpoints-out", str(endpoints)]
    fleet = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 30
        while not any("candidates written" in line for line in lines):
            assert time.monotonic() < deadline and fleet.poll() is None, lines
            lines.append(fleet.stdout.readline())
        assert any(f"endpoints written to {endpoints}" in line for line in lines)
        configs = load_endpoint_configs(endpoints)
        records = [json.loads(line) for line in cands.read_text().splitlines()]
        assert sorted(c.url for c in configs) == sorted({r["endpoint"] for r in records})
        adapters = {a for c in configs for a in c.adapters}
        assert adapters == {r["adapter_id"] for r in records if "adapter_id" in r}
        assert {c.backend for c in configs} == {"tgi"}
        capsys.readouterr()
        search = ["search", "--candidates", str(cands), "--endpoints", str(endpoints)]
        search += ["--query-set", str(tmp_path / "items.jsonl"), "--budget-per-model", "20"]
        assert main(search) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[1].split()[1] == BEST
    finally:
        fleet.terminate()
        fleet.wait(10)


def test_unwritable_outputs_are_one_line_errors_naming_the_flag(files, capsys):
    tmp_path, _ = files
    missing = tmp_path / "no-such-dir"
    assert main(["fleet", "items", "--out", str(missing / "x.jsonl")]) == 2
    assert "no-such-dir" in _one_line_error(capsys, "--out")
    argv = ["fleet", "config", "--matrix", str(tmp_path / "tree.npz")]
    assert main([*argv, "--out", str(missing / "f.json")]) == 2
    _one_line_error(capsys, "--out")
    assert main([*argv, "--out", str(tmp_path)]) == 2  # a directory
    _one_line_error(capsys, "--out")
    for flag in ("--candidates-out", "--endpoints-out"):
        assert main([*_serve(tmp_path), "--duration", "0", flag, str(missing / "c")]) == 2
        _one_line_error(capsys, flag)
    assert not missing.exists()


def test_port_in_use_is_a_one_line_error_naming_the_flag(files, capsys):
    tmp_path, matrix = files
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main([*_serve(tmp_path), "--base-port", str(port), "--duration", "0"]) == 2
        err = _one_line_error(capsys, "--base-port")
        assert f"127.0.0.1:{port}" in err and "endpoint-0" in err
        # A config with that port names the config's field.
        config = tmp_path / "fleet.json"
        assert main(["fleet", "config", "--matrix", str(tmp_path / "tree.npz"), "--endpoints",
                     "2", "--base-port", str(port), "--out", str(config)]) == 0  # fmt: skip
        capsys.readouterr()
        argv = ["fleet", "serve", "--config", str(config), "--query-set"]
        assert main([*argv, str(tmp_path / "items.jsonl"), "--duration", "0"]) == 2
        err = capsys.readouterr().err.strip()
        assert re.search(r"error: .*fleet\.json: endpoints\[0\]\.port: cannot listen", err), err
    assert main([*_serve(tmp_path), "--base-port", "70000", "--duration", "0"]) == 2
    _one_line_error(capsys, "--base-port")


def test_config_without_matrix_does_not_mention_a_missing_option(capsys):
    assert main(["fleet", "config", "--out", "x.json"]) == 2
    err = _one_line_error(capsys, "--matrix")
    assert "--config" not in err
    assert main(["fleet", "serve", "--query-set", "q.jsonl"]) == 2
    assert "--config" in _one_line_error(capsys, "--matrix")


@pytest.mark.parametrize(("flag", "value"), [("--latency-ms", "-1"), ("--latency-sigma", "-0.5")])
def test_a_negative_latency_setting_names_its_own_flag(files, capsys, flag, value):
    # A negative --latency-sigma was reported as "--latency-ms: latency and its sigma ...".
    tmp_path, _ = files
    argv = ["fleet", "config", "--matrix", str(tmp_path / "tree.npz"), "--out"]
    assert main([*argv, str(tmp_path / "f.json"), flag, value]) == 2
    assert f"{flag}: must be >= 0, got {value}" in capsys.readouterr().err
    assert not (tmp_path / "f.json").exists()
