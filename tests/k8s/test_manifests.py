"""Every manifest against the Kubernetes schemas (offline), plus the conventions of style.md."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
import yaml
from gemfinder.config import ServerConfig

from tests.k8s.support import K8S, REPO_ROOT, all_objects, kustomize, load_docs, manifest_files

K8S_VERSION = "1.30"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "Cluster"}
WORKLOADS = ("Deployment", "StatefulSet")
RECOMMENDED = ("name", "component", "part-of", "version")
OBJECTS = all_objects()
IDS = [f"{p.relative_to(K8S)}:{d['kind']}" for p, d in OBJECTS]


def _validate(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize(("path", "doc"), OBJECTS, ids=IDS)
def test_manifest_matches_the_kubernetes_schema(path, doc):
    if doc["kind"] == "Cluster":
        assert doc["apiVersion"] == "postgresql.cnpg.io/v1"
        return  # against CloudNativePG's own CRD schema in test_replicas.py
    if doc["kind"] in CRD_KINDS:
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        return  # structure checked in test_monitoring.py
    _validate(doc)


def test_the_validator_rejects_a_misspelt_field():
    deployment = next(d for _, d in OBJECTS if d["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(broken)


@pytest.mark.parametrize(("path", "doc"), OBJECTS, ids=IDS)
def test_recommended_labels_on_every_object(path, doc):
    labels = doc["metadata"].get("labels", {})
    missing = [k for k in RECOMMENDED if f"app.kubernetes.io/{k}" not in labels]
    assert not missing, f"{path.name} {doc['kind']}: missing app.kubernetes.io/{missing}"
    template = doc.get("spec", {}).get("template")
    if template:
        tlabels = template["metadata"]["labels"]
        assert {k: v for k, v in labels.items() if k.startswith("app.kubernetes.io/")} == {
            k: v for k, v in tlabels.items() if k.startswith("app.kubernetes.io/")
        }


def _selectors(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    found = []
    if doc["kind"] == "Service":
        found.append(spec["selector"])
    for key in ("selector", "podSelector"):
        value = spec.get(key)
        if isinstance(value, dict) and "matchLabels" in value:
            found.append(value["matchLabels"])
    return found


@pytest.mark.parametrize(("path", "doc"), OBJECTS, ids=IDS)
def test_selectors_leave_the_version_out_and_match_the_pods(path, doc):
    for selector in _selectors(doc):
        assert "app.kubernetes.io/version" not in selector, f"{path.name}: version in selector"
        assert selector, f"{path.name}: empty selector"
    template = doc.get("spec", {}).get("template")
    if template:
        pod_labels = template["metadata"]["labels"]
        for key, value in doc["spec"]["selector"]["matchLabels"].items():
            assert pod_labels.get(key) == value


KUSTOMIZATIONS = [
    "",
    "examples/tgi-fleet",
    "examples/vllm-fleet",
    "examples/postgres",
    "examples/postgres-cnpg",
]


def test_every_kustomization_is_tested():
    found = {str(p.parent.relative_to(K8S)) for p in K8S.rglob("kustomization.yaml")}
    # sqlite/ and examples/lm-eval/ are Components, built with k8s/ (test_replicas.py,
    # test_lm_eval_example.py)
    assert found == {"." if k == "" else k for k in KUSTOMIZATIONS} | {"sqlite", "examples/lm-eval"}


@pytest.mark.parametrize("where", KUSTOMIZATIONS)
def test_kustomization_lists_every_file_and_builds(where):
    directory = K8S / where
    kustomization = load_docs(directory / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    own = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    assert own - listed <= {"namespace.yaml"}, f"not in kustomization: {own - listed}"
    built = kustomize(directory)
    for doc in built:
        if doc["kind"] not in CRD_KINDS:
            _validate(doc)
        assert "app.kubernetes.io/name" in doc["metadata"]["labels"], doc["metadata"]["name"]


def test_services_target_named_ports_of_their_pods():
    docs = [d for _, d in OBJECTS]
    for svc in (d for d in docs if d["kind"] == "Service"):
        deployment = next(
            d
            for d in docs
            if d["kind"] in WORKLOADS
            and all(
                d["spec"]["template"]["metadata"]["labels"].get(k) == v
                for k, v in svc["spec"]["selector"].items()
            )
        )
        names = {p["name"] for c in _containers(deployment) for p in c["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in names, f"{svc['metadata']['name']}: {port}"


def _containers(deployment: dict) -> list[dict]:
    return deployment["spec"]["template"]["spec"]["containers"]


def _gemfinder_deployment() -> dict:
    return load_docs(K8S / "deployment.yaml")[0]


def test_gemfinder_container_is_locked_down():
    pod = _gemfinder_deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "add" not in sc["capabilities"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts, "read-only root needs a writable /tmp"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_every_container_has_requests_limits_named_ports_and_probes():
    for path, doc in OBJECTS:
        if doc["kind"] not in WORKLOADS:
            continue
        for c in _containers(doc):
            where = f"{path.relative_to(K8S)} {c['name']}"
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]), where
            assert "memory" in res["limits"], where
            assert all(p.get("name") for p in c["ports"]), f"{where}: unnamed port"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in c, f"{where}: no {probe}"


def test_gemfinder_probes_use_the_grpc_health_service():
    container = _containers(_gemfinder_deployment())[0]
    grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port
    assert container["readinessProbe"]["grpc"]["service"] == "gemfinder.v1.ModelSearchService"


def _env(name: str) -> str | None:
    config = load_docs(K8S / "configmap.yaml")[0]["data"]
    return config.get(name)


def test_ports_and_paths_agree_with_the_configmap():
    container = _containers(_gemfinder_deployment())[0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert _env("GEMFINDER_ADDRESS") == f"0.0.0.0:{ports['grpc']}"
    assert int(_env("GEMFINDER_METRICS_PORT")) == ports["metrics"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for var in ("GEMFINDER_ENDPOINTS", "HF_HOME"):
        assert any(_env(var).startswith(m) for m in mounts), f"{var} is not on a mounted volume"
    # The database is a Secret's URL here (test_replicas.py), a path on the PVC with sqlite/.
    assert _env("GEMFINDER_DB") is None


def test_termination_grace_exceeds_the_server_shutdown_grace():
    grace = float(_env("GEMFINDER_GRACE_S") or ServerConfig.grace_s)
    pod = _gemfinder_deployment()["spec"]["template"]["spec"]
    # The server drains calls for `grace`, then stops runners and closes the store.
    assert pod["terminationGracePeriodSeconds"] >= grace + 10


def test_tokens_come_from_a_secret_reference_never_a_committed_secret():
    kinds = {d["kind"] for _, d in OBJECTS}
    assert "Secret" not in kinds
    env = {e["name"]: e for e in _containers(_gemfinder_deployment())[0]["env"]}
    assert env["GEMFINDER_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "gemfinder-tokens"
    assert _env("GEMFINDER_TOKEN") is None


def test_manifests_are_all_found():
    assert len(manifest_files()) >= 13
    assert (REPO_ROOT / "k8s" / "kustomization.yaml").is_file()


def test_every_gemfinder_variable_the_manifests_and_image_set_is_read():
    """A misspelt variable would be ignored by the pod (serve warns, but only in its log)."""
    from gemfinder.config import known_variables

    texts = {p: p.read_text(encoding="utf-8") for p in sorted(K8S.rglob("*.yaml"))}
    texts[REPO_ROOT / "Dockerfile"] = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    seen = {}
    for path, text in texts.items():
        for name in re.findall(r"\bGEMFINDER_[A-Z0-9_]+", text):
            seen.setdefault(name, path.relative_to(REPO_ROOT))
    assert len(seen) >= 10, seen  # the ConfigMap's settings at least
    unknown = {name: str(path) for name, path in seen.items() if name not in known_variables()}
    assert not unknown, unknown
