"""Every port an inference endpoint is reached on, in the shipped examples and in the endpoint
URLs the docs tell readers to use, is one the NetworkPolicy lets gemfinder's egress through; and
a fleet in another namespace (`http://tgi-x.models.svc:8080`) is reached too, a pod without
the fleet's label is not."""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

import pytest

from tests.k8s.support import K8S, REPO_ROOT, load_docs

# The inference fleets (not postgres*/, not the lm-eval component).
EXAMPLES = sorted(p for p in (K8S / "examples").glob("*-fleet") if p.is_dir())
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
# An endpoint URL where the docs give one: a flag, a JSON field or a keyword argument.
ENDPOINT_URL = re.compile(
    r"""(?:--(?:adapter-)?endpoint[ =]|"(?:endpoint|url)":\s*|endpoint=)['"]?(https?://[^\s'"]+)"""
)
LOOPBACK = {"127.0.0.1", "localhost"}  # a local simulated fleet: no NetworkPolicy in between


def allowed_ports() -> set[int]:
    policy = load_docs(K8S / "networkpolicy.yaml")[0]
    fleet_rules = [
        rule
        for rule in policy["spec"]["egress"]
        if any(
            peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/part-of")
            == "inference-fleet"
            for peer in rule["to"]
        )
    ]
    assert len(fleet_rules) == 1
    return {p["port"] for p in fleet_rules[0]["ports"] if p.get("protocol", "TCP") == "TCP"}


def url_port(url: str) -> int:
    # Template placeholders ({dns}, {slug}) stand for host name labels or path segments.
    parsed = urlparse(re.sub(r"\{(\w+)\}", r"\1", url))
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def doc_endpoint_urls() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for url in ENDPOINT_URL.findall(path.read_text(encoding="utf-8")):
            url = url.rstrip(".,;:`)]}\\")
            if urlparse(re.sub(r"\{(\w+)\}", r"\1", url)).hostname not in LOOPBACK:
                found.append((path.name, url))
    return found


def test_the_docs_endpoint_templates_are_found():
    """Not vacuous: the templates readers copy (docs/discovery.md, README) are in the list."""
    urls = {url for _, url in doc_endpoint_urls()}
    assert "http://tgi-{dns}.fleet.svc:8080" in urls
    assert len(urls) >= 3


@pytest.mark.parametrize(("doc", "url"), doc_endpoint_urls())
def test_doc_endpoint_ports_are_allowed(doc, url):
    assert url_port(url) in allowed_ports(), f"{doc}: {url} (add the port to networkpolicy.yaml)"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_fleet_ports_are_allowed(example):
    allowed = allowed_ports()
    deployment = load_docs(example / "deployment.yaml")[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    service = load_docs(example / "service.yaml")[0]
    service_ports = {}
    for port in service["spec"]["ports"]:
        target = port.get("targetPort", port["port"])
        pod_port = named[target] if isinstance(target, str) else target
        assert pod_port in allowed, f"{example.name}: pod port {pod_port}"  # what the policy sees
        service_ports[port["port"]] = pod_port
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "inference-fleet"
    urls = [e["url"] for e in json.loads((example / "endpoints.json").read_text())]
    urls += [c["endpoint"] for c in json.loads((example / "candidates.json").read_text())]
    for url in urls:
        assert urlparse(url).hostname == service["metadata"]["name"], url
        assert url_port(url) in service_ports, f"{example.name}: {url} is no port of the Service"
        assert url_port(url) in allowed, f"{example.name}: {url}"


def _selects(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector's matchLabels (the only form networkpolicy.yaml uses) against labels."""
    assert set(selector or {}) <= {"matchLabels"}, selector
    return all(labels.get(k) == v for k, v in (selector or {}).get("matchLabels", {}).items())


def egress_admits(policy: dict, own_ns: str, ns: str, pod: dict, port: int) -> bool:
    """Kubernetes' rule for one egress peer: a podSelector alone selects pods in the policy's
    own namespace; with a namespaceSelector, pods of the namespaces it selects."""
    ns_labels = {"kubernetes.io/metadata.name": ns}
    for rule in policy["spec"]["egress"]:
        if port not in {p["port"] for p in rule.get("ports", [])}:
            continue
        for peer in rule["to"]:
            if "namespaceSelector" in peer:
                in_ns = _selects(peer["namespaceSelector"], ns_labels)
            else:
                in_ns = ns == own_ns
            if in_ns and _selects(peer.get("podSelector"), pod):
                return True
    return False


def svc_namespace(url: str) -> str | None:
    """The namespace of a cluster DNS name service.namespace.svc[.cluster.local]."""
    host = urlparse(re.sub(r"\{(\w+)\}", r"\1", url)).hostname or ""
    labels = host.split(".")
    return labels[1] if len(labels) >= 3 and labels[2] == "svc" else None


def test_a_fleet_in_another_namespace_is_reached_and_nothing_else_there():
    policy = load_docs(K8S / "networkpolicy.yaml")[0]
    namespaces = {svc_namespace(url) for _, url in doc_endpoint_urls()} - {None}
    assert "fleet" in namespaces  # docs/discovery.md: tgi-{dns}.fleet.svc
    fleet_pod = {"app.kubernetes.io/part-of": "inference-fleet"}
    for ns in sorted(namespaces):
        for port in allowed_ports():
            assert egress_admits(policy, "gemfinder", ns, fleet_pod, port), (ns, port)
            assert not egress_admits(policy, "gemfinder", ns, {"app": "other"}, port), (ns, port)
    assert egress_admits(policy, "gemfinder", "gemfinder", fleet_pod, 8080)  # beside gemfinder
    assert not egress_admits(policy, "gemfinder", "models", fleet_pod, 22)


def test_the_configmap_endpoints_are_allowed():
    data = load_docs(K8S / "configmap.yaml")[0]["data"]
    for entry in json.loads(data["endpoints.json"]):
        assert url_port(entry["url"]) in allowed_ports(), entry["url"]
