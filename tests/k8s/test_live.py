"""A real `gemfinder serve` and fleet on loopback, scraped directly and by a real Prometheus.

Checks that every metric the dashboard and the alert rules name is exported by the running
service, and that every dashboard query returns data in Prometheus after two searches (the
second one served from the evaluation cache). Prometheus scrapes as the Prometheus Operator does
from k8s/servicemonitor.yaml: with the target labels it adds (`endpoint` is the port's name,
which gemfinder's own `endpoint` label collides with) and the ServiceMonitor's honorLabels.
"""

from __future__ import annotations

import json
import math
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path

import grpc
import numpy as np
import pytest
from gemfinder.sim.fleet.build import fleet_dict_from_matrix
from gemfinder.v1 import gemfinder_pb2 as pb
from gemfinder.v1 import gemfinder_pb2_grpc as pb_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.k8s.support import (
    K8S,
    dashboard,
    dashboard_exprs,
    load_docs,
    metric_names,
    prometheus,
    rule_exprs,
)
from tests.pool_support import clear_best_pool

SCRAPE_S = 1
BACKENDS = {"tgi": pb.BACKEND_TGI, "openai": pb.BACKEND_OPENAI}
# Grafana's variables, as the dashboard would expand them over a short time range.
VARIABLES = {"$__rate_interval": "2m", "$__interval": "2m", "$__range": "5m", "$namespace": ".*"}


def _operator_scrape_config(metrics_port: int) -> str:
    """The scrape job the Prometheus Operator makes of k8s/servicemonitor.yaml, the Kubernetes
    discovery replaced by one static target carrying the labels its relabelling sets."""
    monitor = load_docs(K8S / "servicemonitor.yaml")[0]["spec"]
    (endpoint,) = monitor["endpoints"]
    labels = {
        "namespace": "gemfinder",
        "service": "gemfinder",
        "pod": "gemfinder-0",
        "container": "gemfinder",
        "endpoint": endpoint["port"],  # the operator's target label: the port's name
    }
    honor = "true" if endpoint.get("honorLabels", False) else "false"
    return (
        f"global: {{scrape_interval: {SCRAPE_S}s, evaluation_interval: {SCRAPE_S}s}}\n"
        "scrape_configs:\n  - job_name: gemfinder\n"
        f"    metrics_path: {endpoint['path']}\n    honor_labels: {honor}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}'], labels: "
        f"{json.dumps(labels)}}}]\n"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_line(proc: subprocess.Popen, pattern: str, timeout: float = 30) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args[:3]} exited with {proc.returncode}")
            continue
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"{proc.args[:3]}: no line matching {pattern!r} in {timeout}s")


def _spawn(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def _write_inputs(tmp: Path) -> None:
    matrix, items = clear_best_pool()
    np.savez(tmp / "tree.npz", correct=matrix.correct, models=np.array(matrix.models),
             items=np.array(matrix.items))  # fmt: skip
    with open(tmp / "items.jsonl", "w", encoding="utf-8") as handle:
        for it in items:
            handle.write(json.dumps({"id": it.id, "task": it.task, **it.fields}) + "\n")
    fleet = fleet_dict_from_matrix(matrix, 2, latency_median_s=0.002, latency_sigma=0.3)
    fleet["matrix"] = str(tmp / "tree.npz")
    (tmp / "fleet.json").write_text(json.dumps(fleet), encoding="utf-8")


def _endpoints_from_candidates(candidates: list[dict], path: Path) -> None:
    """One endpoint per URL; the last one speaks the OpenAI chat API (prompt tokens come only
    from there: TGI's /generate does not report them)."""
    adapters: dict[str, list[str]] = defaultdict(list)
    for cand in candidates:
        adapters[cand["endpoint"]] += [cand["adapter_id"]] if cand.get("adapter_id") else []
    chat = sorted(adapters)[-1]
    for cand in candidates:
        cand["backend"] = "openai" if cand["endpoint"] == chat else "tgi"
    data = [
        {
            "url": u,
            "adapters": a,
            "max_concurrency": 16,
            "backend": "openai" if u == chat else "tgi",
        }
        for u, a in adapters.items()
    ]
    path.write_text(json.dumps(data), encoding="utf-8")


def _search(address: str, candidates: list[dict], seed: int) -> None:
    spec = pb.SearchSpec(
        candidates=[
            pb.Candidate(
                model_id=c["model_id"],
                endpoint=c["endpoint"],
                backend=BACKENDS[c["backend"]],
                adapter_id=c.get("adapter_id", ""),
            )  # fmt: skip
            for c in candidates
        ],
        query_set=pb.QuerySet(name="demo"),
        budget=pb.Budget(per_model=20),
        seed=seed,
    )
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.ModelSearchServiceStub(channel)
        response = stub.SelectBestModel(pb.SelectBestModelRequest(spec=spec), timeout=90)
    assert response.search.state == pb.SEARCH_STATE_SUCCEEDED


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Fleet, service and Prometheus (scraping every second) running; two searches done."""
    tmp = tmp_path_factory.mktemp("live")
    _write_inputs(tmp)
    procs = []
    try:
        fleet = _spawn(
            [sys.executable, "-m", "gemfinder", "fleet", "serve", "--config", "fleet.json",
             "--query-set", "items.jsonl", "--candidates-out", "candidates.jsonl"], tmp,
        )  # fmt: skip
        procs.append(fleet)
        _wait_line(fleet, r"candidates written")
        lines = (tmp / "candidates.jsonl").read_text().splitlines()
        candidates = [json.loads(line) for line in lines]
        _endpoints_from_candidates(candidates, tmp / "endpoints.json")

        metrics_port = _free_port()
        server = _spawn(
            [sys.executable, "-m", "gemfinder", "serve", "--address", "127.0.0.1:0",
             "--metrics-port", str(metrics_port), "--db", "gemfinder.db", "--endpoints",
             "endpoints.json", "--query-sets", "demo=items.jsonl", "--grace-s", "1"], tmp,
        )  # fmt: skip
        procs.append(server)
        port = int(_wait_line(server, r"listening on [\d.]+:(\d+)").group(1))

        prom_port = _free_port()
        (tmp / "prometheus.yml").write_text(_operator_scrape_config(metrics_port))
        prom = subprocess.Popen(
            [prometheus(), "--config.file=prometheus.yml", "--storage.tsdb.path=tsdb",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(prom)
        prom_url = f"http://127.0.0.1:{prom_port}"
        _until(lambda: _query(prom_url, 'up{job="gemfinder"} == 1'), "Prometheus scrapes")

        # Counters are born at their first value, so rate() needs a second search that sends
        # more queries; the third repeats the first one's items: cache hits.
        for seed in (1, 2, 1):
            _search(f"127.0.0.1:{port}", candidates, seed)
            time.sleep(2.5 * SCRAPE_S)
        scrape = _get(f"http://127.0.0.1:{metrics_port}/metrics").decode()
        _until(lambda: _query(prom_url, "gemfinder_searches_finished_total"), "final scrape")
        time.sleep(2 * SCRAPE_S)
        yield scrape, prom_url
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _query(prom_url: str, expr: str) -> list[dict]:
    url = f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = json.loads(_get(url))
    except OSError:
        return []
    assert body["status"] == "success", body
    return body["data"]["result"]


def _until(check, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for: {what}")


def _exported(scrape: str) -> set[str]:
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    names = set()
    for family in text_string_to_metric_families(scrape):
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def test_running_service_exports_every_metric_of_dashboard_and_rules(live):
    scrape, _ = live
    exported = _exported(scrape) | {"up"}
    for where, expr in dashboard_exprs(dashboard()) + rule_exprs():
        missing = metric_names(expr) - exported
        assert not missing, f"{where}: {sorted(missing)} not in the service's /metrics"


# Panels of events these searches never cause, so with no data here: the metric is still
# required to be exported (the test above); a histogram of no observation has no quantile.
NO_EVENT_HERE = {
    # No endpoint of this fleet registers adapters on demand (max_cpu_loras): no query waits.
    "Adapter registration slot wait (p50, p95)",
}


def test_every_dashboard_query_returns_data_after_a_search(live):
    _, prom_url = live
    empty = []
    for where, expr in dashboard_exprs(dashboard()):
        if where in NO_EVENT_HERE and expr.startswith("histogram_quantile("):
            continue  # its rate of waits is still queried: 0, not absent
        for var, value in VARIABLES.items():
            expr = expr.replace(var, value)
        values = [float(r["value"][1]) for r in _query(prom_url, expr)]
        if not any(math.isfinite(v) for v in values):
            empty.append(f"{where}: {expr} -> {values}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_search_cost_is_visible_in_prometheus(live):
    _, prom_url = live
    spent = float(_query(prom_url, "sum(gemfinder_budget_spent_total)")[0]["value"][1])
    allocated = float(_query(prom_url, "sum(gemfinder_budget_allocated_total)")[0]["value"][1])
    cached = _query(prom_url, "sum(gemfinder_queries_cached_total)")
    assert 0 < spent <= allocated
    assert cached and float(cached[0]["value"][1]) > 0, "second search hit no cache"


def test_endpoint_label_survives_the_operators_target_labels(live):
    """The dashboard's per-endpoint panels group by gemfinder's `endpoint` label; the Prometheus
    Operator's own `endpoint` target label (the port name) took its place, every inference
    endpoint summed into one series `endpoint="metrics"`."""
    _, prom_url = live
    series = _query(prom_url, "sum by (endpoint) (gemfinder_queries_sent_total)")
    endpoints = {r["metric"].get("endpoint") for r in series}
    assert len(endpoints) >= 2 and all(re.fullmatch(r"127\.0\.0\.1:\d+", e) for e in endpoints), (
        endpoints
    )
    assert _query(prom_url, 'up{job="gemfinder", namespace="gemfinder", pod="gemfinder-0"}')
