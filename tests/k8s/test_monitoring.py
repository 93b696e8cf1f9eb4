"""Dashboard and alert rules: structure, metric names against gemfinder.metrics, promtool."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from gemfinder import metrics

from tests.k8s.support import (
    ALERT_TESTS,
    K8S,
    RULES,
    dashboard,
    dashboard_exprs,
    load_docs,
    metric_names,
    panels,
    promtool,
    rule_exprs,
)

# Series Prometheus itself adds to every target; the rules may use them.
SCRAPE_SERIES = {"up"}


def test_dashboard_datasource_is_templated_everywhere():
    dash = dashboard()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(dash):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_panel_ids_are_unique_and_layout_sane():
    all_panels = panels(dashboard())
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in all_panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


def test_every_dashboard_and_rule_metric_is_exported():
    exported = metrics.metric_names()
    for where, expr in dashboard_exprs(dashboard()) + rule_exprs():
        unknown = metric_names(expr) - exported - SCRAPE_SERIES
        assert not unknown, f"{where}: {sorted(unknown)} not exported by gemfinder.metrics"


def test_metric_name_parser_sees_through_promql():
    expr = 'histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="y(z)"}[5m]))) / on() b_total'
    assert metric_names(expr) == {"a_bucket", "b_total"}


def test_the_dashboard_covers_the_cost_and_health_signals():
    used = set().union(*(metric_names(e) for _, e in dashboard_exprs(dashboard())))
    for needed in (
        "gemfinder_budget_spent_total",
        "gemfinder_budget_allocated_total",
        "gemfinder_queries_cached_total",
        "gemfinder_endpoint_latency_seconds_bucket",
        "gemfinder_queries_failed_total",
        "gemfinder_active_searches",
        "gemfinder_search_survivors",
        "gemfinder_search_duration_seconds_bucket",
        "gemfinder_serving_gpu_seconds_total",
        "gemfinder_serving_loads_total",
        "gemfinder_lora_registrations_total",
        "gemfinder_lora_slot_wait_seconds_bucket",
        "gemfinder_lora_leases_lost_total",
    ):
        assert needed in used, needed


def test_dashboard_configmap_is_labelled_for_the_grafana_sidecar():
    kustomization = load_docs(K8S / "kustomization.yaml")[0]
    gen = next(g for g in kustomization["configMapGenerator"] if g["name"] == "gemfinder-dashboard")
    assert gen["files"] == ["dashboards/gemfinder.json"]
    assert gen["options"]["labels"]["grafana_dashboard"] == "1"


def test_crds_have_the_structure_the_operator_expects():
    monitor = load_docs(K8S / "servicemonitor.yaml")[0]
    service = load_docs(K8S / "service.yaml")[0]
    assert monitor["kind"] == "ServiceMonitor"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(service["metadata"]["labels"].get(k) == v for k, v in selector.items())
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        # Fields of the operator's Endpoint type (monitoring.coreos.com/v1) this file uses.
        assert set(endpoint) <= {
            "port",
            "path",
            "interval",
            "scrapeTimeout",
            "scheme",
            "honorLabels",
        }
    # job label = the Service's name label = what the rules select with job="gemfinder".
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "gemfinder"

    rule = load_docs(RULES)[0]
    assert rule["kind"] == "PrometheusRule" and set(rule["spec"]) == {"groups"}
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        for r in group["rules"]:
            assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert r["labels"]["severity"] in {"warning", "critical"}
            assert r["annotations"]["summary"] and r["annotations"]["runbook"]


@pytest.fixture
def rules_dir(tmp_path):
    spec = load_docs(RULES)[0]["spec"]
    (tmp_path / "gemfinder-rules.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    return tmp_path


def _promtool(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_check_rules(rules_dir):
    out = _promtool("check", "rules", "gemfinder-rules.yaml", cwd=rules_dir)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_test_rules(rules_dir):
    out = _promtool("test", "rules", ALERT_TESTS.name, cwd=rules_dir)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_unit_test_and_a_runbook_section():
    tested = set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        tested |= {t["alertname"] for t in case.get("alert_rule_test", [])}
    alerts = {name for name, _ in rule_exprs()}
    assert alerts <= tested, f"alerts without a promtool test: {alerts - tested}"
    docs = (K8S.parent / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    for name in alerts:
        assert f"### {name}" in docs, f"docs/kubernetes.md has no section for {name}"
