"""Candidate models of a search: who they are and how to reach them, plus a JSON/JSONL loader.

A candidate is one arm of the bandit: a model id, the endpoint that serves it (URL and backend:
TGI `/generate`, OpenAI chat or OpenAI completions), an optional LoRA adapter id on that
endpoint, optional popularity data (downloads, official/base flag) so a result can say whether
the winner is a hidden gem, and an optional public score in [0, 1] (e.g. a leaderboard average
on other benchmarks) that gem search uses as a prior (SearchSpec.priors).

Candidates files are proto JSON of `gemfinder.v1.Candidate`, so a line can go straight into a
request (grpcurl, `json_format.ParseDict`): `candidate_record` writes the proto field names and
the enum name of the backend (`"BACKEND_TGI"`). The loader reads what ParseDict reads (field
names or their lowerCamelCase JSON names, enum names or numbers) and also the lower-case backend
spelling (`"tgi"`) that files written before that rule use. Inside gemfinder the backend is
that short name (gemfinder.backends.registry has them all).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from gemfinder.backends.registry import DEFAULT, enum_name, parse_backend
from gemfinder.errors import UserError

# lowerCamelCase JSON names of the proto fields (what json_format writes by default).
_JSON_NAMES = {"modelId": "model_id", "adapterId": "adapter_id", "priorScore": "prior_score"}
_FIELDS = {"model_id", "endpoint", "backend", "adapter_id", "downloads", "official", "prior_score"}


@dataclass(frozen=True)
class Candidate:
    """One model to evaluate. `endpoint` is the server's base URL (no `/generate` suffix)."""

    model_id: str
    endpoint: str
    backend: str = DEFAULT  # a short name of gemfinder.backends.registry
    adapter_id: str | None = None
    downloads: float | None = None
    official: bool = False
    prior_score: float | None = None

    @property
    def served_name(self) -> str:
        """The name that selects this model on its endpoint (chat `model=` field)."""
        return self.adapter_id or self.model_id


MAX_URL = 2048
# A DNS name (RFC 1123: labels of letters, digits and hyphens, at most 63 characters, 253 in
# all; underscores too, as some service names have them), or an IP address checked below.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.%A-Za-z]+)\](?::[0-9]+)?")


def check_endpoint_url(url: str, field: str) -> None:
    """UserError(field, why) unless `url` is a plain http(s) base URL: scheme, a valid host, an
    optional port and path; no credentials, query, fragment, spaces or control characters.

    A malformed URL must be refused here: the HTTP clients fail on it later in ways that were
    reported as internal errors (`http://[::1`, a label over 63 characters, `user:pass@`)."""

    def bad(why: str) -> UserError:
        shown = url if len(url) <= 100 else url[:100] + "..."
        return UserError(field, f"{why}: {shown!r}")

    if len(url) > MAX_URL:
        raise UserError(field, f"at most {MAX_URL} characters, got {len(url)}")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise bad("spaces and control characters are not allowed in an endpoint URL")
    try:
        parsed = urlparse(url)
        port = parsed.port  # ValueError when not a number in 0..65535
        host = parsed.hostname
    except ValueError as err:
        raise bad(f"not a valid URL ({err})") from None
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise bad("not an http(s) URL")
    if "@" in parsed.netloc:
        # Not echoed: the password would land in the terminal, CI logs and the server's logs.
        hidden = url.replace(parsed.netloc, "***@" + parsed.netloc.rsplit("@", 1)[1], 1)
        raise UserError(
            field,
            "credentials in the URL are not allowed (give a token in the endpoints file): "
            f"{hidden[:100]!r}",
        )
    if parsed.query or parsed.fragment or url.endswith(("?", "#")):
        raise bad("a query or fragment is not allowed in an endpoint's base URL")
    if not host:
        raise bad("no host")
    if port == 0:
        raise bad("port 0 is not a port to connect to")
    if parsed.netloc.startswith("["):
        literal = _BRACKETED.fullmatch(parsed.netloc)
        try:
            ipaddress.IPv6Address(literal.group(1).split("%", 1)[0] if literal else "")
        except ValueError:
            raise bad("not a valid IPv6 address in brackets (then only :port)") from None
        return
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise bad(
            "not a valid host name (labels of letters, digits and hyphens, each at most 63 "
            "characters, 253 in all)"
        )


def candidate_from_dict(data: Any, where: str = "candidate") -> Candidate:
    """Build and validate one candidate; every problem is a UserError naming the field."""
    if not isinstance(data, dict):
        raise UserError(where, f"expected an object, got {type(data).__name__}")
    data = _field_names(data, where)
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise UserError(
            f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(_FIELDS))})"
        )
    model_id = data.get("model_id")
    if not isinstance(model_id, str) or not model_id.strip():
        raise UserError(f"{where}.model_id", "required, a non-empty string")
    endpoint = data.get("endpoint")
    if not isinstance(endpoint, str):
        raise UserError(f"{where}.endpoint", "required, an http(s) URL")
    check_endpoint_url(endpoint, f"{where}.endpoint")
    backend = parse_backend(data.get("backend", DEFAULT), f"{where}.backend")
    adapter_id = data.get("adapter_id")
    if adapter_id is not None and (not isinstance(adapter_id, str) or not adapter_id.strip()):
        raise UserError(f"{where}.adapter_id", "must be a non-empty string when given")
    downloads = data.get("downloads")
    if downloads is not None:
        if (
            isinstance(downloads, bool)
            or not isinstance(downloads, int | float)
            or not 0 <= downloads < math.inf  # JSON readers accept NaN and Infinity
        ):
            raise UserError(f"{where}.downloads", f"must be a finite number >= 0, got {downloads}")
        downloads = float(downloads)
    official = data.get("official", False)
    if not isinstance(official, bool):
        raise UserError(f"{where}.official", "must be true or false")
    prior_score = data.get("prior_score")
    if prior_score is not None:
        if isinstance(prior_score, bool) or not isinstance(prior_score, int | float):
            raise UserError(f"{where}.prior_score", "must be a number between 0 and 1")
        if not 0.0 <= prior_score <= 1.0:
            raise UserError(f"{where}.prior_score", f"must be between 0 and 1, got {prior_score}")
        prior_score = float(prior_score)
    return Candidate(
        model_id=model_id,
        endpoint=endpoint.rstrip("/"),
        backend=backend,
        adapter_id=adapter_id,
        downloads=downloads,
        official=official,
        prior_score=prior_score,
    )


def _field_names(data: dict, where: str) -> dict:
    """Proto field names for lowerCamelCase JSON names; both spellings of one field is an error
    (ParseDict refuses it too)."""
    out = dict(data)
    for json_name, name in _JSON_NAMES.items():
        if json_name in out:
            if name in out:
                raise UserError(f"{where}.{name}", f"given twice (as {name} and {json_name})")
            out[name] = out.pop(json_name)
    return out


def candidate_record(cand: Candidate) -> dict[str, Any]:
    """One line of a candidates file, proto JSON of `gemfinder.v1.Candidate` (field names,
    the backend's enum name): `candidate_from_dict` reads it back equal. Unset fields are left
    out; a whole download count is written as an integer."""
    record = {k: v for k, v in asdict(cand).items() if v is not None}
    record["backend"] = enum_name(cand.backend)
    if isinstance(record.get("downloads"), float) and record["downloads"].is_integer():
        record["downloads"] = int(record["downloads"])
    return record


def load_candidates(path: str | Path, field: str = "candidates") -> list[Candidate]:
    """Read candidates from a JSON list (`.json`) or one object per line (`.jsonl`)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(field, f"{path} is a directory, not a candidates file")
    if not path.is_file():
        raise UserError(field, f"no such file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(field, f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise UserError(
            field, f"{path.name} is not UTF-8 text (byte {err.start}); expected JSON or JSONL"
        ) from None
    records: list[tuple[str, Any]] = []
    if path.suffix.lower() == ".jsonl":
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((f"{path.name} line {line_no}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise UserError(
                    field, f"{path.name} line {line_no}: invalid JSON ({err.msg})"
                ) from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(
                field, f"{path.name}: invalid JSON ({err.msg}, line {err.lineno})"
            ) from None
        if not isinstance(data, list):
            raise UserError(field, f"{path.name}: expected a JSON list of candidates")
        records = [(f"{path.name}[{i}]", rec) for i, rec in enumerate(data)]
    if not records:
        raise UserError(field, f"{path.name}: no candidates")
    candidates = [candidate_from_dict(rec, where) for where, rec in records]
    seen: set[str] = set()
    for cand in candidates:
        if cand.model_id in seen:
            raise UserError(field, f"duplicate model_id {cand.model_id!r}")
        seen.add(cand.model_id)
    return candidates
