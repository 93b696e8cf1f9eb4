"""The example fleets and gemfinder's config agree: same URLs, same adapters, loadable files."""

from __future__ import annotations

import json

from gemfinder.candidates import load_candidates
from gemfinder.oracles import load_endpoint_configs

from tests.k8s.support import K8S, load_docs


def _container(fleet: str) -> dict:
    deployment = load_docs(K8S / "examples" / fleet / "deployment.yaml")[0]
    return deployment["spec"]["template"]["spec"]["containers"][0]


def _served_adapters(fleet: str) -> set[str]:
    container = _container(fleet)
    if fleet == "tgi-fleet":
        env = {e["name"]: e.get("value") for e in container["env"]}
        return set(env["LORA_ADAPTERS"].split(","))
    args = container["args"]
    start = args.index("--lora-modules") + 1
    return {a.split("=", 1)[0] for a in args[start:] if not a.startswith("--")}


def test_example_files_load_and_match_their_fleet():
    for fleet in ("tgi-fleet", "vllm-fleet"):
        folder = K8S / "examples" / fleet
        endpoints = load_endpoint_configs(folder / "endpoints.json")
        candidates = load_candidates(folder / "candidates.json")
        served = _served_adapters(fleet)
        assert set(endpoints[0].adapters) == served, fleet
        assert {c.endpoint for c in candidates} == {e.url for e in endpoints}
        assert {c.adapter_id for c in candidates if c.adapter_id} == served
        assert any(c.official and c.adapter_id is None for c in candidates)
        assert all(c.backend == endpoints[0].backend for c in candidates)
        assert _container(fleet)["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_gemfinder_configmap_points_at_the_tgi_example():
    data = load_docs(K8S / "configmap.yaml")[0]["data"]
    example = json.loads((K8S / "examples" / "tgi-fleet" / "endpoints.json").read_text())
    assert json.loads(data["endpoints.json"]) == example
