"""Shared by the k8s tests: the manifests, dashboard and rules as data, and PromQL metric names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "k8s"
DASHBOARD = K8S / "dashboards" / "gemfinder.json"
RULES = K8S / "prometheusrule.yaml"
ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")
# CloudNativePG's Cluster CRD schema (v1.30.0, descriptions removed), for the offline check of
# k8s/examples/postgres-cnpg: see test_replicas.py.
CNPG_CLUSTER_SCHEMA = Path(__file__).with_name("schemas") / "cnpg-cluster-v1.30.0.json"
INSTALL_HINT = "run scripts/install.sh (it installs the Debian package `prometheus`)"

_FUNCTIONS_AND_KEYWORDS = {
    "sum", "avg", "min", "max", "count", "rate", "irate", "increase", "histogram_quantile",
    "absent", "vector", "scalar", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "clamp_min", "clamp_max", "label_values", "topk",
    "inf", "nan",
}  # fmt: skip


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def all_objects() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in manifest_files() for doc in load_docs(path)]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(dash: dict) -> list[dict]:
    out = []
    for panel in dash["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_exprs(dash: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every query, variable queries included."""
    exprs = [(p["title"], t["expr"]) for p in panels(dash) for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":  # label_values(metric, label): the metric is the selector
            selector = re.fullmatch(r"label_values\((.+),\s*\w+\)", var["definition"])
            assert selector, f"variable {var['name']}: unexpected query {var['definition']!r}"
            exprs.append((f"variable {var['name']}", selector.group(1)))
    return exprs


def rule_exprs() -> list[tuple[str, str]]:
    spec = load_docs(RULES)[0]["spec"]
    return [(r.get("alert") or r["record"], r["expr"]) for g in spec["groups"] for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression selects (label matchers, grouping and ranges removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        name = match.group(0)
        after = text[match.end() :].lstrip()
        if name.lower() in _FUNCTIONS_AND_KEYWORDS or after.startswith("("):
            continue
        if text[max(0, match.start() - 1)].isdigit():  # a unit like the "m" of 5m
            continue
        names.add(name)
    return names


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(f"promtool not found: {INSTALL_HINT}")
    return path


def prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail(f"prometheus not found: {INSTALL_HINT}")
    return path


def kustomize(path: Path) -> list[dict]:
    """`kubectl kustomize PATH` as objects (kubectl carries kustomize; no cluster needed)."""
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl not found: install kubectl (its `kustomize` builds k8s/)")
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]
