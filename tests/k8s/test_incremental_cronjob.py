"""The incremental-search CronJob example: its script runs under sh with the real CLI parser.

`gemfinder` is replaced by a shim that parses its arguments with gemfinder's own parser (an
unknown flag fails the run, as it would in the pod) and records them; the store directory is a
temporary one. The first run searches the whole tree; the next runs are incremental.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from tests.k8s.support import K8S, load_docs

CRONJOB = K8S / "examples" / "incremental-search-cronjob.yaml"
STATE = "/var/lib/gemfinder-incremental"

SHIM = """#!{python}
import json, sys
from gemfinder.cli import build_parser
args = build_parser().parse_args(sys.argv[1:])  # exits 2 on an unknown flag
with open({log!r}, "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def _job() -> tuple[dict, dict]:
    docs = load_docs(CRONJOB)
    cron = next(d for d in docs if d["kind"] == "CronJob")
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    return cron, pvc


def _container(cron: dict) -> dict:
    return cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]


def test_store_volume_is_the_claim_and_one_run_at_a_time():
    cron, pvc = _job()
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"  # one writer of the SQLite store
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in _container(cron)["volumeMounts"]}
    assert volumes[mounts[STATE]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_script_searches_everything_first_then_incrementally(tmp_path):
    cron, _ = _job()
    container = _container(cron)
    script = container["args"][0].replace(STATE, str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.jsonl"
    shim = bin_dir / "gemfinder"
    shim.write_text(SHIM.format(python=sys.executable, log=str(log)))
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env |= {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    for _ in range(2):
        run = subprocess.run(
            [*container["command"], script], env=env, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c[0] for c in calls] == ["discover", "search", "discover", "search"]
    first, second = calls[1], calls[3]
    assert "--incremental-from" not in first
    assert second[second.index("--incremental-from") + 1] == "latest"
    assert first[first.index("--budget-per-model") + 1] == env["QUERIES_PER_NEWCOMER"]
    discover = calls[0]
    assert discover[discover.index("--base-model") + 1] == env["BASE_MODEL"]
    # The search reads what discovery wrote.
    assert discover[discover.index("--out") + 1] == first[first.index("--candidates") + 1]
    assert discover[discover.index("--endpoints-out") + 1] == first[first.index("--endpoints") + 1]
