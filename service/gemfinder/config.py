"""Server configuration: every setting has a default, an environment variable and a flag.

Flags override environment variables, which override defaults. The variable of a setting is
`GEMFINDER_` + its name in upper case (e.g. `max_active_searches` -> GEMFINDER_MAX_ACTIVE_SEARCHES,
flag --max-active-searches). docs/service.md lists them all.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from gemfinder.errors import UserError
from gemfinder.search.spec import Limits

HELP = {
    "address": "gRPC listen address host:port (port 0: pick a free one)",
    "metrics_port": "Prometheus /metrics port on the same host (0: disabled)",
    "db": "SQLite database of searches, snapshots and the evaluation cache",
    "token": "bearer token required from clients (empty: no auth)",
    "tls_cert": "PEM certificate chain for TLS (with tls_key; empty: plaintext)",
    "tls_key": "PEM private key for TLS",
    "endpoints": "JSON file of endpoint settings (token, adapters, max_concurrency)",
    "query_sets": "registered query sets, name=path.jsonl[,name=path...]",
    "max_active_searches": "searches running at once; more are RESOURCE_EXHAUSTED",
    "max_candidates": "candidates per request",
    "max_items": "items per query set",
    "max_budget": "queries per search",
    "max_message_bytes": "largest request message",
    "default_queries_per_model": "budget per candidate when a request sets none",
    "endpoint_concurrency": "requests per endpoint when neither its config nor /info set it",
    "request_timeout_s": "timeout of one endpoint attempt",
    "grace_s": "graceful-shutdown grace period (keep below the pod's terminationGracePeriod)",
}


@dataclass(frozen=True)
class ServerConfig:
    address: str = "127.0.0.1:50051"
    metrics_port: int = 9464
    db: str = "gemfinder.db"
    token: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    endpoints: str = ""
    query_sets: str = ""
    max_active_searches: int = 8
    max_candidates: int = 5000
    max_items: int = 100_000
    max_budget: int = 10_000_000
    max_message_bytes: int = 64 * 1024 * 1024
    default_queries_per_model: int = 50
    endpoint_concurrency: int = 8
    request_timeout_s: float = 120.0
    grace_s: float = 10.0

    @property
    def limits(self) -> Limits:
        return Limits(self.max_candidates, self.max_items, self.max_budget)

    def query_set_paths(self) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for part in filter(None, (p.strip() for p in self.query_sets.split(","))):
            name, sep, path = part.partition("=")
            if not sep or not name or not path:
                raise UserError("query_sets", f"expected name=path, got {part!r}")
            out[name] = Path(path)
        return out


def env_name(name: str) -> str:
    return f"GEMFINDER_{name.upper()}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for f in fields(ServerConfig):
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None,
            help=f"{HELP[f.name]} (env {env_name(f.name)}, default {f.default!r})",
        )


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] = os.environ):
    """Build the config from flags, then environment, then defaults; bad values are UserErrors."""
    values = {}
    for f in fields(ServerConfig):
        raw = getattr(args, f.name, None) if args is not None else None
        if raw is None:
            raw = environ.get(env_name(f.name))
        if raw is None:
            continue
        kind = type(f.default)
        try:
            value = kind(raw)
        except ValueError:
            raise UserError(f.name, f"expected {kind.__name__}, got {raw!r}") from None
        if kind in (int, float) and value < 0:
            raise UserError(f.name, "must be >= 0")
        values[f.name] = value
    config = ServerConfig(**values)
    if bool(config.tls_cert) != bool(config.tls_key):
        raise UserError("tls_cert", "give both tls_cert and tls_key, or neither")
    if config.max_active_searches < 1:
        raise UserError("max_active_searches", "must be >= 1")
    return config
