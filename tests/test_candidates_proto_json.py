"""Candidates files are proto JSON of gemfinder.v1.Candidate: every line `discover` and `fleet
serve --candidates-out` write goes through `json_format.ParseDict` as is and back through the
loader; the loader also reads what json_format writes by default and the old lower-case
backend spelling; the shipped k8s examples follow the rule."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from gemfinder.backends.registry import NAMES as BACKENDS
from gemfinder.candidates import (
    Candidate,
    candidate_from_dict,
    candidate_record,
    load_candidates,
)
from gemfinder.cli import main
from gemfinder.errors import UserError
from gemfinder.oracles import load_endpoint_configs
from gemfinder.server.convert import BACKENDS as ENUM_TO_SHORT
from gemfinder.sim.fleet.hub import models_from_synthetic
from gemfinder.sim.fleet.synthetic_items import write_jsonl
from gemfinder.sim.matrix import save_npz
from gemfinder.sim.trees import generate
from gemfinder.v1 import gemfinder_pb2 as pb
from google.protobuf import json_format

from tests.hub_support import running_hub
from tests.k8s.support import K8S
from tests.pool_support import clear_best_pool


def _parse(record: dict) -> pb.Candidate:
    """A line as a client would send it: ParseDict refuses unknown fields and bad enum names."""
    return json_format.ParseDict(record, pb.Candidate())


def _same(msg: pb.Candidate, cand: Candidate) -> None:
    """The message says what the loader read: the file means one thing to both readers."""
    assert msg.model_id == cand.model_id and msg.endpoint == cand.endpoint
    assert ENUM_TO_SHORT[msg.backend] == cand.backend
    assert (msg.adapter_id or None) == cand.adapter_id
    assert (msg.downloads if msg.HasField("downloads") else None) == cand.downloads
    assert msg.official == cand.official


def _check_file(path) -> list[Candidate]:
    lines = path.read_text().splitlines()
    loaded = load_candidates(path)
    assert len(lines) == len(loaded) > 0
    for line, cand in zip(lines, loaded, strict=True):
        record = json.loads(line)
        assert record["backend"].startswith("BACKEND_"), line
        _same(_parse(record), cand)
        assert candidate_from_dict(record) == cand
    return loaded


@pytest.mark.parametrize("backend", BACKENDS)
def test_discover_writes_proto_json(tmp_path, capsys, backend):
    tree = generate("qwen2.5-3b", 1, models=60, items=20)
    out = tmp_path / "c.jsonl"
    with running_hub(models_from_synthetic(tree), page_size=25) as hub:
        argv = ["discover", "--hub-endpoint", hub.url, "--base-model", tree.matrix.models[1],
                "--endpoint", "http://tgi-{dns}:8080", "--backend", backend,
                "--out", str(out), "--endpoints-out", str(tmp_path / "e.json")]  # fmt: skip
        assert main(argv) == 0
    loaded = _check_file(out)
    assert {c.backend for c in loaded} == {backend}
    assert any(c.adapter_id for c in loaded) and any(c.downloads for c in loaded)
    assert {c.backend for c in load_endpoint_configs(tmp_path / "e.json")} == {backend}


def test_fleet_serve_writes_proto_json(tmp_path):
    matrix, items = clear_best_pool(n_models=6, per_task=2)
    save_npz(matrix, tmp_path / "tree.npz")
    write_jsonl([{"id": i.id, "task": i.task, **i.fields} for i in items], tmp_path / "q.jsonl")
    cands, endpoints = tmp_path / "c.jsonl", tmp_path / "e.json"
    argv = [sys.executable, "-m", "gemfinder", "fleet", "serve", "--matrix",
            str(tmp_path / "tree.npz"), "--query-set", str(tmp_path / "q.jsonl"),
            "--endpoints", "2", "--duration", "30", "--backend", "openai_completions",
            "--candidates-out", str(cands), "--endpoints-out", str(endpoints)]  # fmt: skip
    fleet = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 30
        while "candidates written" not in fleet.stdout.readline():
            assert time.monotonic() < deadline and fleet.poll() is None
    finally:
        fleet.terminate()
        fleet.wait(10)
    loaded = _check_file(cands)
    assert len(loaded) == 6 and {c.backend for c in loaded} == {"openai_completions"}
    assert json.loads(endpoints.read_text())[0]["backend"] == "BACKEND_OPENAI_COMPLETIONS"


def test_records_round_trip_through_proto_json():
    cands = [
        Candidate("org/a", "http://h:80", "openai_completions", "lora-1", 12.0, True, 0.5),
        Candidate("org/b", "https://h.example/v1", downloads=0.25),
    ]
    for cand in cands:
        record = candidate_record(cand)
        assert candidate_from_dict(record) == cand
        msg = _parse(record)
        _same(msg, cand)
        # json_format's own output (lowerCamelCase names, as grpcurl prints) reads back too.
        assert candidate_from_dict(json_format.MessageToDict(msg)) == cand


def test_the_old_lower_case_spelling_and_enum_numbers_still_load(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text(
        '{"model_id": "org/a", "endpoint": "http://h:80", "backend": "tgi"}\n'
        '{"model_id": "org/b", "endpoint": "http://h:80", "backend": "openai_completions"}\n'
        '{"modelId": "org/c", "endpoint": "http://h:80", "backend": 2, "adapterId": "c"}\n'
        '{"model_id": "org/d", "endpoint": "http://h:80", "backend": "BACKEND_UNSPECIFIED"}\n'
    )
    got = load_candidates(path)
    assert [c.backend for c in got] == ["tgi", "openai_completions", "openai", "tgi"]
    assert got[2].adapter_id == "c"


@pytest.mark.parametrize(
    ("record", "field", "reason"),
    [
        ({"backend": "vllm"}, "x.backend", "must be one of BACKEND_TGI"),
        ({"backend": "BACKEND_openai"}, "x.backend", "got 'BACKEND_openai'"),
        ({"backend": "OPENAI"}, "x.backend", "got 'OPENAI'"),
        ({"backend": 7}, "x.backend", "got 7"),
        ({"adapterId": "a", "adapter_id": "a"}, "x.adapter_id", "given twice"),
    ],
)
def test_bad_backends_name_the_field(record, field, reason):
    with pytest.raises(UserError) as err:
        candidate_from_dict({"model_id": "m", "endpoint": "http://h:80", **record}, "x")
    assert err.value.field == field and reason in err.value.reason


@pytest.mark.parametrize("fleet", ["tgi-fleet", "vllm-fleet"])
def test_k8s_examples_are_proto_json(fleet):
    folder = K8S / "examples" / fleet
    records = json.loads((folder / "candidates.json").read_text())
    loaded = load_candidates(folder / "candidates.json")
    for record, cand in zip(records, loaded, strict=True):
        assert record["backend"].startswith("BACKEND_")
        _same(_parse(record), cand)
    for entry in json.loads((folder / "endpoints.json").read_text()):
        assert entry["backend"].startswith("BACKEND_")
