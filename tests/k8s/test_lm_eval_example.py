"""k8s/examples/lm-eval: the kustomize Component that registers lm-eval tasks with the server.
Its copies of the custom example are the example's files, the ConfigMap mounts them in the
layout its tasks.json names, the server's catalog builds the same items from that layout as the
CLI builds from docs/examples, the example request names a registered task (and nothing else),
and the component renders with k8s/ from an overlay outside it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml
from gemfinder.tasks.lmeval.build import build_query_set
from gemfinder.tasks.lmeval.catalog import Catalog, Request
from gemfinder.v1 import gemfinder_pb2 as pb
from google.protobuf import json_format

from tests.k8s.support import K8S, REPO_ROOT, kustomize

COMPONENT = K8S / "examples" / "lm-eval"
EXAMPLE = REPO_ROOT / "docs" / "examples" / "lm-eval-custom"


def _kustomization() -> dict:
    return yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())


def _generated() -> dict[str, Path]:
    (gen,) = _kustomization()["configMapGenerator"]
    out = {}
    for entry in gen["files"]:
        key, _, src = entry.rpartition("=")
        out[key or Path(src).name] = COMPONENT / src
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

    request = json_format.Parse(
        (COMPONENT / "request.json").read_text(), pb.SelectBestModelRequest()
    )
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


def test_the_component_renders_with_k8s_from_an_overlay_outside(tmp_path: Path) -> None:
    """What docs/kubernetes.md tells: an overlay of your own with k8s/ and the component."""
    overlay = tmp_path / "mine"
    overlay.mkdir()
    rel = os.path.relpath  # kustomize takes no absolute paths
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [rel(K8S, overlay)], "components": [rel(COMPONENT, overlay)]})
    )
    docs = kustomize(overlay)
    (deployment,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gemfinder"
    ]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "gemfinder"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env["GEMFINDER_LM_EVAL_TASKS"] == "/etc/gemfinder/lm-eval/tasks.json"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["lm-eval"]["mountPath"] == "/etc/gemfinder/lm-eval"
    # the index cache is on a writable volume of the pod (the root filesystem is read-only)
    cache = env["GEMFINDER_CACHE_DIR"]
    assert any(cache.startswith(m["mountPath"] + "/") and not m.get("readOnly")
               for m in container["volumeMounts"])  # fmt: skip
    volume = next(v for v in pod["volumes"] if v["name"] == "lm-eval")
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"
                     and d["metadata"]["name"] == volume["configMap"]["name"]]  # fmt: skip
    assert set(config_map["data"]) == set(_generated())
    assert config_map["metadata"]["name"].startswith("gemfinder-lm-eval-")  # hashed: rolls pods
    # the base is unchanged otherwise: still its own env and mounts
    base = next(
        d
        for d in kustomize(K8S)
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "gemfinder"
    )
    base_mounts = {
        m["name"] for m in base["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert base_mounts < set(mounts)
