"""`gemfinder discover` end to end against the Hub stand-in, and `gemfinder fleet hub`'s input."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from gemfinder.candidates import load_candidates
from gemfinder.cli import main
from gemfinder.errors import UserError
from gemfinder.oracles.endpoints import load_endpoint_configs
from gemfinder.sim.fleet.hub import load_hub_models, models_from_synthetic
from gemfinder.sim.matrix import load_matrix, save_npz
from gemfinder.sim.trees import generate

from tests.hub_support import expected_tree, running_hub

INSTRUCT = 1


@pytest.fixture(scope="module")
def tree():
    return generate("qwen2.5-3b", 1, models=120, items=50)


@pytest.fixture(scope="module")
def hub(tree):
    with running_hub(models_from_synthetic(tree), page_size=25) as hub:
        yield hub


def argv(hub, out, *extra):
    return ["discover", "--hub-endpoint", hub.url, "--endpoint", "http://tgi-{slug}:8080",
            "--out", str(out), *extra]  # fmt: skip


def test_discover_writes_candidates_the_loader_accepts(tree, hub, tmp_path, capsys):
    base = tree.matrix.models[INSTRUCT]
    out = tmp_path / "c.jsonl"
    extra = ["--base-model", base, "--adapter-endpoint", "http://lora:8080", "--max-depth", "2"]
    assert main(argv(hub, out, *extra)) == 0
    captured = capsys.readouterr()
    candidates = load_candidates(out)
    want = expected_tree(tree, INSTRUCT, ("finetune", "adapter", "merge"), 2)
    relation = {m: r for m, (_, r, _) in want.items()}
    parent = {m: p for m, (p, _, _) in want.items()}
    servable = [m for m in want if relation[m] != "adapter" or parent[m] == base]
    assert {c.model_id for c in candidates} == set(servable)
    assert candidates[0].model_id == base and candidates[0].official
    for cand in candidates:
        if relation[cand.model_id] == "adapter":
            assert (cand.endpoint, cand.adapter_id) == ("http://lora:8080", cand.model_id)
        else:
            assert cand.endpoint == f"http://tgi-{cand.model_id.replace('/', '--')}:8080"
    nested = len(want) - len(servable)
    assert nested > 0
    out_text = captured.out
    assert f"{len(want)} models under {base}" in out_text
    assert f"wrote {len(candidates)} candidates" in out_text
    assert f"skipped {nested}:" in out_text and "most downloaded" in out_text
    assert "depth 1:" in captured.err and "depth 2:" in captured.err


def test_discover_refuses_to_overwrite_unless_forced(tree, hub, tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    out.write_text("keep me\n", encoding="utf-8")
    base = ["--base-model", tree.matrix.models[INSTRUCT], "--max-depth", "1"]
    assert main(argv(hub, out, *base)) == 2
    assert "--out" in capsys.readouterr().err and out.read_text() == "keep me\n"
    assert main(argv(hub, out, *base, "--force", "--max-models", "5")) == 0
    assert len(load_candidates(out)) <= 5
    assert "--max-models 5" in capsys.readouterr().out


def test_endpoints_out_lists_the_adapters_each_endpoint_must_load(tree, hub, tmp_path, capsys):
    out, settings = tmp_path / "c.jsonl", tmp_path / "endpoints.json"
    base = tree.matrix.models[INSTRUCT]
    extra = ["--base-model", base, "--adapter-endpoint", "http://lora:8080", "--max-depth", "2"]
    assert main(argv(hub, out, *extra, "--endpoints-out", str(settings))) == 0
    assert f"wrote the endpoint settings to {settings}" in capsys.readouterr().out
    candidates = load_candidates(out)
    configs = {c.url: c for c in load_endpoint_configs(settings)}
    assert set(configs) == {c.endpoint for c in candidates}
    adapters = [c.model_id for c in candidates if c.adapter_id is not None]
    assert adapters and list(configs["http://lora:8080"].adapters) == adapters
    full = [c for c in candidates if c.adapter_id is None]
    assert all(configs[c.endpoint].adapters is None for c in full)
    # An existing settings file stops the run before anything is written or asked.
    again = tmp_path / "again.jsonl"
    assert main(argv(hub, again, *extra, "--endpoints-out", str(settings))) == 2
    assert "--endpoints-out" in capsys.readouterr().err and not again.exists()


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--base-model", "nobody/nothing"], "base_model: 'nobody/nothing' not found"),
        (["--base-model", "a/b", "--endpoint", "http://x/{id}"], "--endpoint: unknown placeholder"),
        (["--base-model", "a/b", "--max-depth", "0"], "--max-depth: must be at least 1"),
        (["--base-model", "a/b", "--min-downloads", "-1"], "--min-downloads"),
    ],
)
def test_bad_input_is_one_line(hub, tmp_path, capsys, extra, words):
    assert main(argv(hub, tmp_path / "c.jsonl", *extra)) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c.jsonl").exists()


def test_hub_down_names_the_endpoint(tmp_path, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        args = ["discover", "--hub-endpoint", url, "--base-model", "a/b", "--endpoint", "http://x",
                "--out", str(tmp_path / "c.jsonl")]  # fmt: skip
        assert main(args) == 2
    assert f"hub_endpoint: cannot reach {url}" in capsys.readouterr().err


def test_trees_generate_writes_the_tree_for_the_hub(tmp_path, capsys):
    out = tmp_path / "t.npz"
    assert (
        main(["trees", "generate", "--preset", "gsm8k", "--models", "40", "--out", str(out)]) == 0
    )
    tree = generate("gsm8k", 0, models=40)
    assert load_hub_models(out) == models_from_synthetic(tree)
    assert load_matrix(out).models == tree.matrix.models  # the extra arrays are ignored
    old = tmp_path / "old.npz"  # written before trees carried their shape: still a matrix
    save_npz(tree.matrix, old)
    assert np.array_equal(load_matrix(old).correct, tree.matrix.correct)
    with pytest.raises(UserError) as err:
        load_hub_models(old)
    assert err.value.field == "--tree" and "trees generate" in err.value.reason
    assert main(["fleet", "hub", "--tree", str(old)]) == 2


def test_fleet_hub_serves_a_preset(capsys):
    args = ["fleet", "hub", "--preset", "gsm8k", "--models", "20", "--duration", "0.05"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "20 models, root" in out and "gemfinder discover --hub-endpoint http://127.0.0.1:" in out
