"""k8s/examples/lm-eval: the overlay that registers lm-eval tasks with the server. Its copies of
the custom example are the example's files, the ConfigMap mounts them in the layout its
tasks.json names, the server's catalog builds the same items from that layout as the CLI builds
from docs/examples, and the example request names a registered task (and nothing else)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from gemfinder.tasks.lmeval.build import build_query_set
from gemfinder.tasks.lmeval.catalog import Catalog, Request
from gemfinder.v1 import gemfinder_pb2 as pb
from google.protobuf import json_format

from tests.k8s.support import K8S, REPO_ROOT

OVERLAY = K8S / "examples" / "lm-eval"
EXAMPLE = REPO_ROOT / "docs" / "examples" / "lm-eval-custom"


def _kustomization() -> dict:
    return yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())


def _generated() -> dict[str, Path]:
    (gen,) = _kustomization()["configMapGenerator"]
    out = {}
    for entry in gen["files"]:
        key, _, src = entry.rpartition("=")
        out[key or Path(src).name] = OVERLAY / src
    return out


def _mount_items() -> list[dict[str, str]]:
    patch = yaml.safe_load(_kustomization()["patches"][0]["patch"])
    (volume,) = patch["spec"]["template"]["spec"]["volumes"]
    return volume["configMap"]["items"]


def test_the_copies_are_the_examples_files() -> None:
    for key, src in _generated().items():
        origin = (EXAMPLE / "tasks" / key) if key.endswith((".yaml", ".py")) else None
        if key.endswith(".jsonl"):
            origin = EXAMPLE / "data" / key
        if origin is not None:
            assert src.read_bytes() == origin.read_bytes(), key


def test_the_mounted_layout_serves_the_request(tmp_path: Path) -> None:
    generated = _generated()
    items = _mount_items()
    assert {i["key"] for i in items} == set(generated)
    mount = tmp_path / "lm-eval"  # what the pod sees at /etc/gemfinder/lm-eval
    for item in items:
        (mount / item["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(generated[item["key"]], mount / item["path"])
    patch = yaml.safe_load(_kustomization()["patches"][0]["patch"])
    env = {e["name"]: e["value"] for e in patch["spec"]["template"]["spec"]["containers"][0]["env"]}
    root = "/etc/gemfinder/lm-eval"
    assert env["GEMFINDER_LM_EVAL_TASKS"] == f"{root}/tasks.json"
    include = env["GEMFINDER_LM_EVAL_INCLUDE"].replace(root, str(mount))
    catalog = Catalog.load(str(mount / "tasks.json"), (include,), "--lm-eval-tasks")

    request = json_format.Parse((OVERLAY / "request.json").read_text(), pb.SelectBestModelRequest())
    ask = request.spec.query_set.lm_eval
    assert ask.task in catalog.tasks
    served = catalog.items(Request(ask.task, num_fewshot=ask.num_fewshot), "spec.query_set.lm_eval")
    files = {"test": EXAMPLE / "data" / "test.jsonl", "train": EXAMPLE / "data" / "train.jsonl"}
    cli = build_query_set(ask.task, files, num_fewshot=3, include=(str(EXAMPLE / "tasks"),))
    assert [{"id": i.id, "task": i.task, **i.fields} for i in served] == cli
    fleet = json.loads((K8S / "examples" / "tgi-fleet" / "candidates.json").read_text())
    sent = [json_format.MessageToDict(c, preserving_proto_field_name=True)
            for c in request.spec.candidates]  # fmt: skip
    assert sent == fleet
