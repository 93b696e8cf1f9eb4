"""Server configuration: every setting has a default, an environment variable and a flag.

Flags override environment variables, which override defaults. The variable of a setting is
`GEMFINDER_` + its name in upper case (e.g. `max_active_searches` -> GEMFINDER_MAX_ACTIVE_SEARCHES,
flag --max-active-searches). docs/service.md lists them all. An error names the flag, or the
variable when the value came from the environment.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from gemfinder.budget import DEFAULT_PER_MODEL
from gemfinder.errors import UserError
from gemfinder.oracles.allowlist import compile_pattern
from gemfinder.oracles.answer_cap import DEFAULT_MAX_ANSWER_BYTES
from gemfinder.oracles.grading_pool import DEFAULT_SIZE as DEFAULT_GRADING_WORKERS
from gemfinder.oracles.grading_pool import DEFAULT_TIMEOUT_S as DEFAULT_GRADING_TIMEOUT_S
from gemfinder.search.spec import Limits

HELP = {
    "address": "gRPC listen address host:port (port 0: pick a free one)",
    "metrics_port": "Prometheus /metrics port on the same host (0: disabled)",
    "health_port": "plaintext port on the same host serving only the gRPC health service, for "
    "probes that speak no TLS (Kubernetes' gRPC probes) when --tls-cert is set (0: none; "
    "health is always on the gRPC port too)",
    "db": "database of searches, snapshots and the evaluation cache: a SQLite file, or a "
    "postgresql://user:password@host:port/dbname URL",
    "token": "bearer token required from clients (empty: no auth)",
    "tls_cert": "PEM certificate chain for TLS (with tls_key; empty: plaintext)",
    "tls_key": "PEM private key for TLS",
    "endpoints": "JSON file of the endpoints callers may name, with their settings (token, "
    "adapters, max_concurrency)",
    "allow_endpoint_patterns": "more endpoints callers may name: URL patterns with * inside a "
    "host label, pattern[,pattern...] (e.g. http://tgi-*.models.svc:8080)",
    "allow_any_endpoint": "let callers name any endpoint URL, which the server then connects to "
    "(development and demos only; logged as a warning)",
    "query_sets": "registered query sets, name=path.jsonl[,name=path...]",
    "lm_eval_tasks": "JSON file registering the lm-eval tasks callers may name, with each "
    "one's data files: {task: {split: path} or directory} (docs/grading.md; the lm-eval extra)",
    "lm_eval_include": "directories of your own lm-eval task YAML, dir[,dir...] (lm-eval's "
    "include_path; they may run !function code, so only the operator names them)",
    "max_active_searches": "searches running at once; more are RESOURCE_EXHAUSTED",
    "max_candidates": "candidates per request",
    "max_items": "items per query set",
    "max_budget": "queries per search",
    "max_message_bytes": "largest request message (larger: RESOURCE_EXHAUSTED, before auth)",
    "default_queries_per_model": "budget per candidate when a request sets none",
    "endpoint_concurrency": "requests per endpoint when neither its config nor /info set it",
    "request_timeout_s": "timeout of one endpoint attempt",
    "max_answer_bytes": "largest endpoint answer read; a longer one is a failed query (too_large)",
    "grace_s": "graceful-shutdown grace period (keep below the pod's terminationGracePeriod)",
    "log_level": "DEBUG, INFO, WARNING, ERROR or CRITICAL; HTTP clients log each request only "
    "at DEBUG",
    "replica_id": "this replica's name in the searches' leases (empty: hostname-pid); unique "
    "among the replicas sharing a database",
    "lease_seconds": "lease of a running search: renewed every third of it; a replica that "
    "stops renewing loses its searches to another after this long",
    "executor": "URL of a `gemfinder executor` that runs MBPP code (empty: run it in-process)",
    "grading_timeout_s": "time limit for grading one answer whose grader is not known linear "
    "(an lm-eval pattern of your own YAML, or a quadratic one lm-eval ships); past it the "
    "grading process is killed and the query fails as grading_timeout (docs/grading.md)",
    "grading_workers": "grading processes for such answers (per oracle process; started on "
    "first use)",
    "workers": "oracle worker processes that send the queries and grade the answers, each on "
    "its own core (0: in the server process)",
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Settings that must be at least 1 (0 would refuse every search, or stall every endpoint) and
# settings that must be above 0 (a zero timeout fails every attempt). Others may be 0.
AT_LEAST_ONE = (
    "max_active_searches",
    "max_candidates",
    "max_items",
    "max_budget",
    "max_message_bytes",
    "default_queries_per_model",
    "endpoint_concurrency",
    "max_answer_bytes",
    "grading_workers",
)
POSITIVE = ("request_timeout_s", "lease_seconds", "grading_timeout_s")
MAX_MESSAGE_BYTES = 2**31 - 1  # gRPC's message size options are C ints


@dataclass(frozen=True)
class ServerConfig:
    address: str = "127.0.0.1:50051"
    metrics_port: int = 9464
    health_port: int = 0
    db: str = "gemfinder.db"
    token: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    endpoints: str = ""
    allow_endpoint_patterns: str = ""
    allow_any_endpoint: bool = False
    query_sets: str = ""
    lm_eval_tasks: str = ""
    lm_eval_include: str = ""
    max_active_searches: int = 8
    max_candidates: int = 5000
    max_items: int = 100_000
    max_budget: int = 10_000_000
    # gRPC's own default: 5,000 candidates take 0.55 MB, GSM8K's 1,319 test items inline
    # 0.75 MB; bigger query sets belong in --query-sets. A caller with the token can make the
    # server hold this much per call in flight.
    max_message_bytes: int = 4 * 1024 * 1024
    default_queries_per_model: int = DEFAULT_PER_MODEL
    endpoint_concurrency: int = 8
    request_timeout_s: float = 120.0
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    grace_s: float = 10.0
    log_level: str = "INFO"
    executor: str = ""
    replica_id: str = ""
    lease_seconds: float = 15.0
    grading_timeout_s: float = DEFAULT_GRADING_TIMEOUT_S
    grading_workers: int = DEFAULT_GRADING_WORKERS
    workers: int = 0

    @property
    def limits(self) -> Limits:
        return Limits(self.max_candidates, self.max_items, self.max_budget)

    def endpoint_patterns(self) -> list[str]:
        return [p for p in (p.strip() for p in self.allow_endpoint_patterns.split(",")) if p]

    def lm_eval_include_paths(self, field: str = "--lm-eval-include") -> tuple[str, ...]:
        from gemfinder.tasks.lmeval.loading import include_paths

        return include_paths(
            [p.strip() for p in self.lm_eval_include.split(",") if p.strip()], field
        )

    def query_set_paths(self, field: str = "--query-sets") -> dict[str, Path]:
        out: dict[str, Path] = {}
        for part in filter(None, (p.strip() for p in self.query_sets.split(","))):
            name, sep, path = (x.strip() for x in part.partition("="))
            if not sep or not name or not path:
                raise UserError(field, f"expected name=path, got {part!r}")
            if name in out:
                raise UserError(
                    field,
                    f"query set {name!r} is given twice ({out[name]} and {path}); "
                    "each name must be unique",
                )
            out[name] = Path(path)
        return out


def env_name(name: str) -> str:
    return f"GEMFINDER_{name.upper()}"


# GEMFINDER_* variables that other parts of gemfinder read (not settings of `serve`), and where.
OTHER_VARIABLES = {
    "GEMFINDER_CACHE_DIR": "tasks/lmeval/index.py",
    "GEMFINDER_EXECUTOR_ADDRESS": "cli/executor.py",
    "GEMFINDER_SANDBOX_NAMESPACES": "tasks/sandbox.py",
    "GEMFINDER_LOCKS_DIR": "provenance.py",
    "GEMFINDER_GIT_COMMIT": "provenance.py",
}

# Read by the test suite (paths from the repository's root), so set in developers' and CI's
# environments: not settings, and no cause for a warning when such a shell starts `serve`.
SUITE_VARIABLES = {
    "GEMFINDER_SHARED_DATA": "tests/conftest.py",
    "GEMFINDER_REQUIRE_SHARED_DATA": "tests/conftest.py",
    "GEMFINDER_REQUIRE_POSTGRES": "tests/conftest.py",
    "GEMFINDER_REQUIRE_CHROMIUM": "tests/report_html/test_chromium.py",
    "GEMFINDER_FUZZ_SEED": "tests/server/test_fuzz_hostile.py",
    "GEMFINDER_FUZZ_CASES": "tests/server/test_fuzz_hostile.py",
    "GEMFINDER_PRINT_HASHES": "tests/core/test_pick_hashes.py",
}


def known_variables() -> set[str]:
    known = {env_name(f.name) for f in fields(ServerConfig)}
    return known | set(OTHER_VARIABLES) | set(SUITE_VARIABLES)


def unknown_variables(environ: Mapping[str, str] = os.environ) -> list[str]:
    """A warning line per GEMFINDER_* variable nothing reads. A misspelt setting is otherwise
    ignored without a word, and the server runs on its default: GEMFINDER_TOKENS=... serves
    without authentication, GEMFINDER_LEASE_SECOND=... with the 15 s lease."""
    known = known_variables()
    lines = []
    for name in sorted(n for n in environ if n.startswith("GEMFINDER_") and n not in known):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"{name} is not a gemfinder setting; ignored{hint}")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for f in fields(ServerConfig):
        if f.type == "bool":  # a switch: given means on
            parser.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f.name,
                action="store_const",
                const="true",
                default=None,
                help=f"{HELP[f.name]} (env {env_name(f.name)}=true)",
            )
            continue
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None,
            help=f"{HELP[f.name]} (env {env_name(f.name)}, default {f.default!r})",
        )


def _parse_bool(raw: str) -> bool:
    word = raw.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


def _check_token(token: str, where: str) -> None:
    """A token no client can send is refused at start. gRPC metadata values are visible ASCII
    and spaces, without spaces at the ends; a Secret made with `kubectl create secret
    --from-file` keeps the file's last newline, and every call was then UNAUTHENTICATED."""
    if token != token.strip():
        raise UserError(
            where,
            "begins or ends with whitespace (a newline kept from a file?), which no client can "
            "send in its authorization header; remove it",
        )
    bad = next((c for c in token if not " " <= c <= "~"), None)
    if bad is not None:
        raise UserError(
            where,
            f"contains {bad!r}: a bearer token is printable ASCII (no client can send others)",
        )


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] = os.environ):
    """Build the config from flags, then environment, then defaults; bad values are UserErrors
    naming the flag, or the environment variable the value came from."""
    values = {}
    source: dict[str, str] = {}  # setting -> the flag or variable its value came from
    for f in fields(ServerConfig):
        raw = getattr(args, f.name, None) if args is not None else None
        source[f.name] = flag_name(f.name)
        if raw is None:
            raw = environ.get(env_name(f.name))
            if raw is None:
                continue
            source[f.name] = env_name(f.name)
        kind = type(f.default)
        where = source[f.name]
        try:
            value = _parse_bool(raw) if kind is bool else kind(raw)
        except ValueError:
            expected = "true or false" if kind is bool else kind.__name__
            raise UserError(where, f"expected {expected}, got {raw!r}") from None
        if kind is bool:
            values[f.name] = value
            continue
        if kind is float and not math.isfinite(value):
            raise UserError(where, f"must be a finite number, got {raw!r}")
        if f.name in AT_LEAST_ONE and value < 1:
            raise UserError(where, f"must be >= 1, got {raw!r}")
        if f.name in POSITIVE and value <= 0:
            raise UserError(where, f"must be > 0, got {raw!r}")
        if kind in (int, float) and value < 0:
            raise UserError(where, f"must be >= 0, got {raw!r}")
        if f.name == "max_message_bytes" and value > MAX_MESSAGE_BYTES:
            raise UserError(
                where, f"must be at most {MAX_MESSAGE_BYTES} (gRPC's limit), got {raw!r}"
            )
        if f.name in ("metrics_port", "health_port") and value > 65535:
            raise UserError(where, f"must be a port number (0 to 65535; 0: disabled), got {raw!r}")
        if f.name == "log_level":
            value = value.strip().upper()
            if value not in LOG_LEVELS:
                raise UserError(where, f"must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
        if f.name == "token" and value:
            _check_token(value, where)
        if f.name == "executor" and value and not value.startswith(("http://", "https://")):
            raise UserError(where, f"must be an http:// or https:// URL, got {raw!r}")
        values[f.name] = value
    config = ServerConfig(**values)
    if bool(config.tls_cert) != bool(config.tls_key):
        given, missing = ("tls_cert", "tls_key") if config.tls_cert else ("tls_key", "tls_cert")
        raise UserError(
            source[given], f"needs {flag_name(missing)} too (give both for TLS, or neither)"
        )
    for i, pattern in enumerate(config.endpoint_patterns()):
        compile_pattern(pattern, f"{source['allow_endpoint_patterns']} (pattern {i + 1})")
    config.lm_eval_include_paths(source["lm_eval_include"])
    if config.lm_eval_tasks and not Path(config.lm_eval_tasks).is_file():
        raise UserError(source["lm_eval_tasks"], f"no such file {config.lm_eval_tasks}")
    paths = config.query_set_paths(source["query_sets"])
    for name, path in paths.items():
        if path.is_dir():
            raise UserError(source["query_sets"], f"query set {name!r}: {path} is a directory")
        if not path.is_file():
            raise UserError(source["query_sets"], f"query set {name!r}: no such file {path}")
    return config
