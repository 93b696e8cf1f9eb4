"""Replicas on PostgreSQL (k8s/), the PostgreSQL examples, and the one-replica SQLite component.

Everything is checked on what `kubectl kustomize` renders, as `kubectl apply -k` would send it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.k8s.support import CNPG_CLUSTER_SCHEMA, K8S, REPO_ROOT, kustomize, load_docs, rule_exprs

SEARCH_SERVICE = {
    "app.kubernetes.io/name": "gemfinder",
    "app.kubernetes.io/component": "search-service",
}
# The keys of the Secret CloudNativePG writes for a Cluster's application user: CreateSecret in
# pkg/specs/secrets.go of cloudnative-pg v1.30.0, named by GetApplicationSecretName
# (api/v1/cluster_funcs.go): the Cluster's name + "-app" when bootstrap names no secret.
CNPG_APP_SECRET_KEYS = {
    "username", "user", "password", "dbname", "host", "port", "pgpass", "uri", "jdbc-uri",
    "fqdn-uri", "fqdn-jdbc-uri",
}  # fmt: skip
KUBERNETES_DOC = REPO_ROOT / "docs" / "kubernetes.md"


def _one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.fixture(scope="module")
def default() -> list[dict]:
    return kustomize(K8S)


@pytest.fixture(scope="module")
def service_deployment(default) -> dict:
    return _one(default, "Deployment", "gemfinder")


def test_replicas_roll_without_losing_capacity(service_deployment):
    spec = service_deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    rolling = spec["strategy"]["rollingUpdate"]
    # A new pod is ready before an old one stops, and has free places for its searches.
    assert rolling["maxUnavailable"] == 0 and rolling["maxSurge"] >= 1


def test_the_disruption_budget_covers_exactly_the_search_pods(default, service_deployment):
    pdb = _one(default, "PodDisruptionBudget")
    selector = pdb["spec"]["selector"]["matchLabels"]
    pod_labels = service_deployment["spec"]["template"]["metadata"]["labels"]
    assert _selects(selector, pod_labels)
    for other in (d for d in default if d["kind"] == "Deployment" and d is not service_deployment):
        other_labels = other["spec"]["template"]["metadata"]["labels"]
        assert not _selects(selector, other_labels), other["metadata"]["name"]
    # One replica at a time, never all: maxUnavailable below the replica count.
    assert pdb["spec"]["maxUnavailable"] == 1 < service_deployment["spec"]["replicas"]
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_replicas_spread_over_nodes_and_zones(service_deployment):
    pod = service_deployment["spec"]["template"]
    constraints = {c["topologyKey"]: c for c in pod["spec"]["topologySpreadConstraints"]}
    assert set(constraints) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    # Hard on nodes, soft on zones (clusters with one zone, or no zone labels, still schedule).
    assert constraints["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert constraints["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
    for c in constraints.values():
        assert c["maxSkew"] == 1
        assert _selects(c["labelSelector"]["matchLabels"], pod["metadata"]["labels"])
        assert c["labelSelector"]["matchLabels"].items() >= SEARCH_SERVICE.items()
        assert c["matchLabelKeys"] == ["pod-template-hash"]
        assert c["nodeTaintsPolicy"] == "Honor"


def test_the_replica_id_is_the_pod_name(service_deployment):
    env = _env(_container(service_deployment))
    assert env["GEMFINDER_REPLICA_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_the_database_url_comes_from_the_cnpg_app_secret(default, service_deployment):
    ref = _env(_container(service_deployment))["GEMFINDER_DB"]["valueFrom"]["secretKeyRef"]
    cluster = _one(load_docs(K8S / "examples" / "postgres-cnpg" / "cluster.yaml"), "Cluster")
    assert "secret" not in cluster["spec"]["bootstrap"]["initdb"]  # else the name differs
    assert ref["name"] == cluster["metadata"]["name"] + "-app"
    assert ref["key"] in CNPG_APP_SECRET_KEYS
    assert not ref.get("optional"), "without a database the pods must not start"
    config = _one(default, "ConfigMap", "gemfinder-config")["data"]
    assert "GEMFINDER_DB" not in config  # envFrom would be overridden anyway: no dead setting
    assert "Secret" not in {d["kind"] for d in default}


def test_graceful_termination_leaves_time_for_the_lease_handover(default, service_deployment):
    config = _one(default, "ConfigMap", "gemfinder-config")["data"]
    grace = float(config["GEMFINDER_GRACE_S"])
    lease = float(config["GEMFINDER_LEASE_SECONDS"])
    pod = service_deployment["spec"]["template"]["spec"]
    # Drain calls, then stop runners and release their leases, before SIGKILL.
    assert pod["terminationGracePeriodSeconds"] >= grace + 10
    # The lease alert's threshold is the lease the replicas run with.
    expr = dict(rule_exprs())["GemfinderLeaseNotRenewed"]
    assert re.fullmatch(r"gemfinder_lease_age_seconds > (\d+)", expr.strip()).group(1) == str(
        int(lease)
    )


def test_no_store_volume_is_left_on_the_replicas(service_deployment):
    pod = service_deployment["spec"]["template"]["spec"]
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])
    assert "fsGroup" not in pod["securityContext"]  # only a volume of its own needed it
    mounts = {m["mountPath"] for m in _container(service_deployment)["volumeMounts"]}
    assert "/var/lib/gemfinder" not in mounts


# The PostgreSQL examples ----------------------------------------------------------------------


def _strict(schema):
    """A CRD's schema as `kubectl apply` (strict field validation) applies it: unknown fields
    are errors where the schema does not preserve them."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _validate_cluster(doc: dict) -> None:
    vendored = json.loads(CNPG_CLUSTER_SCHEMA.read_text(encoding="utf-8"))
    assert doc["apiVersion"] == f"{vendored['group']}/{vendored['version']}"
    schema = _strict(vendored["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # checked by the label tests
    jsonschema.Draft4Validator(schema).validate(doc)


def test_the_cnpg_cluster_matches_cloudnative_pgs_crd():
    cluster = _one(kustomize(K8S / "examples" / "postgres-cnpg"), "Cluster")
    _validate_cluster(cluster)
    broken = yaml.safe_load(yaml.safe_dump(cluster))
    broken["spec"]["bootstrap"]["initdb"]["ownr"] = "gemfinder"
    with pytest.raises(jsonschema.ValidationError, match="ownr"):
        _validate_cluster(broken)
    broken = yaml.safe_load(yaml.safe_dump(cluster))
    broken["spec"]["instances"] = "three"
    with pytest.raises(jsonschema.ValidationError):
        _validate_cluster(broken)


def _database_egress(default: list[dict]) -> dict:
    policy = _one(default, "NetworkPolicy", "gemfinder")
    rules = [r for r in policy["spec"]["egress"] if any(p["port"] == 5432 for p in r["ports"])]
    assert len(rules) == 1
    return rules[0]


def test_gemfinder_may_reach_both_databases_and_only_them(default):
    rule = _database_egress(default)
    (peer,) = rule["to"]
    selector = peer["podSelector"]["matchLabels"]
    cluster = _one(load_docs(K8S / "examples" / "postgres-cnpg" / "cluster.yaml"), "Cluster")
    assert _selects(selector, cluster["spec"]["inheritedMetadata"]["labels"])
    plain = kustomize(K8S / "examples" / "postgres")
    statefulset = _one(plain, "StatefulSet")
    assert _selects(selector, statefulset["spec"]["template"]["metadata"]["labels"])
    assert not _selects(selector, {**SEARCH_SERVICE, "app.kubernetes.io/part-of": "gemfinder"})
    port = _container(statefulset)["ports"][0]
    assert port["containerPort"] == 5432 and rule["ports"] == [{"port": 5432, "protocol": "TCP"}]
    # ... and the plain database admits gemfinder's search pods, nobody else, and calls nobody.
    db_policy = _one(plain, "NetworkPolicy")
    db_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert _selects(db_policy["spec"]["podSelector"]["matchLabels"], db_labels)
    (ingress,) = db_policy["spec"]["ingress"]
    assert ingress["from"] == [{"podSelector": {"matchLabels": SEARCH_SERVICE}}]
    assert db_policy["spec"]["egress"] == []


def _docs_secret_command() -> str:
    text = KUBERNETES_DOC.read_text(encoding="utf-8")
    match = re.search(r"kubectl create secret generic gemfinder-db-app(?:[^\n]*\\\n)*[^\n]*", text)
    assert match, "docs/kubernetes.md: no `kubectl create secret generic gemfinder-db-app`"
    return match.group(0)


def test_the_plain_example_and_the_documented_secret_agree(service_deployment):
    command = _docs_secret_command()
    literals = dict(re.findall(r"--from-literal=([\w-]+)=\"?([^\"\s]+)\"?", command))
    plain = kustomize(K8S / "examples" / "postgres")
    statefulset = _one(plain, "StatefulSet")
    env = _env(_container(statefulset))
    password_ref = env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    db_ref = _env(_container(service_deployment))["GEMFINDER_DB"]["valueFrom"]["secretKeyRef"]
    assert password_ref["name"] == db_ref["name"] == "gemfinder-db-app"
    assert {password_ref["key"], db_ref["key"]} <= set(literals)
    assert literals["password"] == "$password"
    url = urlparse(literals["uri"])
    service = _one(plain, "Service")
    assert url.scheme == "postgresql"
    assert url.hostname == service["metadata"]["name"]
    assert url.port == service["spec"]["ports"][0]["port"]
    assert url.username == env["POSTGRES_USER"]["value"] == literals["username"]
    assert url.password == "$password"
    assert url.path == "/" + env["POSTGRES_DB"]["value"]
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    db_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert _selects(service["spec"]["selector"], db_labels)


def test_the_plain_database_stops_fast_and_keeps_its_data():
    statefulset = _one(kustomize(K8S / "examples" / "postgres"), "StatefulSet")
    container = _container(statefulset)
    pgdata = _env(container)["PGDATA"]["value"]
    stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert stop[:2] == ["pg_ctl", "stop"] and "fast" in stop and pgdata in stop
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    assert pgdata.startswith(mount["mountPath"] + "/")  # a subdirectory: lost+found is not ours


# The one-replica SQLite component -------------------------------------------------------------


def _sqlite_enabled_in_a_copy(tmp_path) -> list[dict]:
    """What the docs tell: uncomment `components: [sqlite]` in k8s/kustomization.yaml."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    path = copy / "kustomization.yaml"
    text = path.read_text(encoding="utf-8")
    enabled = text.replace("# components:\n#   - sqlite\n", "components:\n  - sqlite\n")
    assert enabled != text, "k8s/kustomization.yaml: no commented `components: [sqlite]`"
    path.write_text(enabled, encoding="utf-8")
    return kustomize(copy)


def _sqlite_from_an_overlay_outside(tmp_path) -> list[dict]:
    """An overlay of one's own, outside the checkout, using k8s/ and its component."""
    overlay = tmp_path / "my-overlay"
    overlay.mkdir()
    k8s = os.path.relpath(K8S, overlay)  # kustomize takes no absolute paths
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [k8s], "components": [f"{k8s}/sqlite"]}), encoding="utf-8"
    )
    return kustomize(overlay)


@pytest.mark.parametrize("render", [_sqlite_enabled_in_a_copy, _sqlite_from_an_overlay_outside])
def test_the_sqlite_component_renders_one_replica_on_a_volume(render, tmp_path, default):
    docs = render(tmp_path)
    for doc in docs:
        if doc["kind"] not in {"ServiceMonitor", "PrometheusRule"}:
            kubernetes_validate.validate(doc, "1.30", strict=True)
    deployment = _one(docs, "Deployment", "gemfinder")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in pod
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    pvc = _one(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    volume = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    container = _container(deployment)
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    env = _env(container)
    assert "valueFrom" not in env["GEMFINDER_DB"]
    assert env["GEMFINDER_DB"]["value"].startswith(mount["mountPath"] + "/")
    assert env["GEMFINDER_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    policy = _one(docs, "NetworkPolicy", "gemfinder")
    assert not any(p["port"] == 5432 for r in policy["spec"]["egress"] for p in r["ports"])
    # Nothing else changes: same objects but the PVC, the PDB gone.
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    expected = [(d["kind"], d["metadata"]["name"]) for d in default]
    expected.remove(("PodDisruptionBudget", "gemfinder"))
    assert kinds == sorted([*expected, ("PersistentVolumeClaim", "gemfinder-data")])
