"""The metrics module: names follow Prometheus conventions, labels stay bounded, hooks count."""

from __future__ import annotations

from gemfinder import metrics
from gemfinder.oracles import FailureKind, OracleResult, OracleStats
from prometheus_client import REGISTRY


def test_names_follow_conventions():
    for metric in metrics.ALL:
        for family in metric.describe():
            assert family.name.startswith("gemfinder_")
            assert not family.name.endswith("_total")  # client adds it to counters
            if family.type == "histogram":  # named by their base unit
                assert family.name.endswith(("_seconds", "_queries")), family.name


def test_no_unbounded_labels():
    allowed = {"endpoint", "outcome", "kind", "method", "code", "reason"}
    for metric in metrics.ALL:
        assert set(metric._labelnames) <= allowed


def test_endpoint_labels_are_capped():
    labels = metrics.EndpointLabels({"http://a:1": "fleet-a"}, cap=2)
    assert labels("http://a:1/") == "fleet-a"
    assert labels("http://b:2") == "b:2"
    assert labels("http://c:3") == "c:3"
    assert labels("http://d:4") == metrics.OTHER


def test_hook_and_results_are_counted():
    stats = metrics.hook_oracle_stats(OracleStats())
    before = REGISTRY.get_sample_value("gemfinder_oracle_retries_total", {"kind": "timeout"}) or 0
    stats.record("retry", "timeout")
    after = REGISTRY.get_sample_value("gemfinder_oracle_retries_total", {"kind": "timeout"})
    assert after == before + 1
    blocked = REGISTRY.get_sample_value("gemfinder_oracle_attempts_blocked_total") or 0
    stats.record("attempt_blocked")
    assert REGISTRY.get_sample_value("gemfinder_oracle_attempts_blocked_total") == blocked + 1
    metrics.observe_result("t", OracleResult("m", "i", 1, completion_tokens=5, latency_s=0.1))
    metrics.observe_result("t", OracleResult("m", "i", None, FailureKind.TIMEOUT))
    get = REGISTRY.get_sample_value
    assert get("gemfinder_generated_tokens_total", {"endpoint": "t"}) == 5
    assert get("gemfinder_queries_failed_total", {"endpoint": "t", "kind": "timeout"}) == 1
    assert get("gemfinder_endpoint_latency_seconds_count", {"endpoint": "t"}) == 2
