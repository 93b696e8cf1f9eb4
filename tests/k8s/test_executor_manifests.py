"""The executor's isolation in k8s/executor.yaml, checked statically (there is no cluster here).

What tests/tasks/test_sandbox_hostile.py reproduces locally (a non-root uid, no namespaces) is what
these manifests ship; the controls only a cluster enforces (no token, no secrets, no store, no
egress, read-only root, another uid) are asserted here.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.k8s.support import K8S, load_docs

EXECUTOR = {d["kind"]: d for d in load_docs(K8S / "executor.yaml")}
SERVICE_POD = load_docs(K8S / "deployment.yaml")[0]["spec"]["template"]["spec"]
CONFIG = load_docs(K8S / "configmap.yaml")[0]["data"]
POD = EXECUTOR["Deployment"]["spec"]["template"]["spec"]
POD_LABELS = EXECUTOR["Deployment"]["spec"]["template"]["metadata"]["labels"]


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_no_token_no_secret_no_store_no_service_links():
    assert POD["automountServiceAccountToken"] is False
    assert EXECUTOR["ServiceAccount"]["automountServiceAccountToken"] is False
    assert POD["serviceAccountName"] == EXECUTOR["ServiceAccount"]["metadata"]["name"]
    assert POD["enableServiceLinks"] is False
    for container in POD["containers"]:
        assert "envFrom" not in container
        assert all("valueFrom" not in e for e in container.get("env", []))
        assert not any(e["name"] == "GEMFINDER_TOKEN" for e in container.get("env", []))
    # Only scratch space: no PersistentVolumeClaim (the store), Secret or ConfigMap.
    for volume in POD["volumes"]:
        assert set(volume) == {"name", "emptyDir"}, volume


def test_another_non_root_uid_read_only_root_and_no_privileges():
    sc = POD["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] != SERVICE_POD["securityContext"]["runAsUser"]
    assert sc["runAsUser"] != 0
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    for container in POD["containers"]:
        csc = container["securityContext"]
        assert csc["readOnlyRootFilesystem"] is True
        assert csc["allowPrivilegeEscalation"] is False
        assert csc["capabilities"] == {"drop": ["ALL"]}
        assert csc.get("privileged") is not True


def test_work_space_is_a_size_capped_tmpfs():
    volumes = {v["name"]: v for v in POD["volumes"]}
    mounts = {m["mountPath"]: m["name"] for c in POD["containers"] for m in c["volumeMounts"]}
    tmp = volumes[mounts["/tmp"]]["emptyDir"]
    assert tmp["medium"] == "Memory" and tmp["sizeLimit"]


def test_network_policy_denies_all_egress_and_admits_only_the_service():
    policy = EXECUTOR["NetworkPolicy"]["spec"]
    assert _selects(policy["podSelector"], POD_LABELS)
    assert "Egress" in policy["policyTypes"] and policy["egress"] == []
    assert "Ingress" in policy["policyTypes"]
    service_labels = load_docs(K8S / "deployment.yaml")[0]["spec"]["template"]["metadata"]
    for rule in policy["ingress"]:
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, peer  # no namespaceSelector, no ipBlock
            assert _selects(peer["podSelector"], service_labels["labels"])


def test_the_service_is_configured_to_use_the_executor_and_may_reach_it():
    url = urlsplit(CONFIG["GEMFINDER_EXECUTOR"])
    service = EXECUTOR["Service"]
    assert url.scheme == "http" and url.hostname == service["metadata"]["name"]
    port = next(p for p in service["spec"]["ports"] if p["port"] == url.port)
    container = POD["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port["targetPort"] in named
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["GEMFINDER_EXECUTOR_ADDRESS"].endswith(f":{named[port['targetPort']]}")
    assert container["command"] == ["gemfinder", "executor"]
    # The service's own egress policy lets it reach the executor's port.
    egress = load_docs(K8S / "networkpolicy.yaml")[0]["spec"]["egress"]
    assert any(
        any(
            _selects(peer["podSelector"], POD_LABELS)
            for peer in rule["to"]
            if "podSelector" in peer
        )
        and any(p["port"] == named[port["targetPort"]] for p in rule["ports"])
        for rule in egress
    )


def test_gvisor_is_offered_as_an_option():
    assert "runtimeClassName: gvisor" in (K8S / "executor.yaml").read_text()
