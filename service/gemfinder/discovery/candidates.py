"""Turn a discovered model tree into search candidates: who is served where, who is skipped.

Full models (the base, fine-tunes, merges, and quantized models when asked for) each get the
endpoint template with their id filled in (`{model_id}`; `{slug}`: the id with "/" -> "--";
`{dns}`: a lower-case DNS label such as a Kubernetes Service name), so each may have its own
server. LoRA adapters of the base model go to the adapter endpoint
(default: the base's endpoint) with `adapter_id`, as TGI's multi-LoRA serves adapters of its
own base only; adapters of any other model are skipped unless `nested_adapters`, which puts
them on their parent's endpoint. GGUF repositories (which TGI cannot serve) and models under
`min_downloads` are skipped too; every skip is recorded with its reason.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from gemfinder.backends.registry import DEFAULT, enum_name
from gemfinder.candidates import Candidate, candidate_from_dict, candidate_record
from gemfinder.discovery.walk import Discovery, FoundModel
from gemfinder.errors import UserError
from gemfinder.outputs import write_whole

PLACEHOLDERS = ("model_id", "slug", "dns")
DNS_LABEL_MAX = 63  # RFC 1123: one label of a host name
DNS_PLACEHOLDER_MAX = 50  # what {dns} may use, leaving room for a prefix such as "tgi-"

SKIP_NESTED_ADAPTER = "adapter of a model other than the base (not servable on the base's endpoint)"
SKIP_ADAPTER_OF_ADAPTER = "adapter of an adapter (no endpoint can serve it)"
SKIP_GGUF = "GGUF repository (TGI cannot serve it)"
SKIP_FEW_DOWNLOADS = "fewer downloads than --min-downloads"


@dataclass(frozen=True)
class Serving:
    """Where candidates are served: URL templates, the backend, and what to keep."""

    endpoint: str
    backend: str = DEFAULT
    adapter_endpoint: str | None = None  # default: `endpoint` filled in for the base model
    min_downloads: float = 0.0
    nested_adapters: bool = False


@dataclass
class Mapped:
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[tuple[FoundModel, str]] = field(default_factory=list)


def slug(model_id: str) -> str:
    return model_id.replace("/", "--")


def dns_label(model_id: str) -> str:
    """`meta-llama/Llama-3.1-8B` -> `meta-llama-llama-3-1-8b-69332380`: lower case, runs of
    anything but letters and digits as one "-", cut to at most 50 characters in all, then the
    first 8 hex digits of the id's SHA-1, since the folding alone is not one-to-one
    (`a-b/c` and `a/b-c`). The endpoints file (`--endpoints-out`) lists the resulting URLs."""
    label = re.sub(r"[^a-z0-9]+", "-", model_id.lower()).strip("-")
    digest = hashlib.sha1(model_id.encode()).hexdigest()[:8]
    return f"{label[: DNS_PLACEHOLDER_MAX - 9].rstrip('-')}-{digest}"


def check_template(template: str, field_name: str) -> None:
    """A URL template may use {model_id} and {slug} only, and must give an http(s) URL."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise UserError(field_name, f"bad template {template!r}: {err}") from None
    for name in names:
        if name not in PLACEHOLDERS:
            raise UserError(
                field_name,
                f"unknown placeholder {{{name}}}; use {{model_id}}, {{slug}} or {{dns}}",
            )
    parsed = urlparse(fill(template, "org/model"))
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserError(field_name, f"not an http(s) URL: {template!r}")


def fill(template: str, model_id: str) -> str:
    """The URL of `model_id`; a host name label over 63 characters is refused (no resolver
    would find it)."""
    url = template.format(model_id=model_id, slug=slug(model_id), dns=dns_label(model_id))
    host = urlparse(url).hostname or ""
    for label in host.split("."):
        if len(label) > DNS_LABEL_MAX:
            raise UserError(
                "endpoint",
                f"host name label {label!r} for {model_id} is longer than {DNS_LABEL_MAX} "
                "characters; use {dns} there, or {slug} in the URL's path",
            )
    return url


def to_candidates(discovery: Discovery, serving: Serving) -> Mapped:
    """Candidates for every servable model of `discovery`, in its (breadth-first) order."""
    check_template(serving.endpoint, "endpoint")
    if serving.adapter_endpoint is not None:
        check_template(serving.adapter_endpoint, "adapter_endpoint")
    base = discovery.base_model
    by_id = {m.model_id: m for m in discovery.models}
    adapter_url = fill(serving.adapter_endpoint or serving.endpoint, base)
    out = Mapped()
    for model in discovery.models:
        endpoint, adapter_id = fill(serving.endpoint, model.model_id), None
        reason = None
        if model.relation == "adapter":
            adapter_id = model.model_id
            parent = by_id[model.parent] if model.parent is not None else None
            if model.parent == base:
                endpoint = adapter_url
            elif parent is not None and parent.relation == "adapter":
                reason = SKIP_ADAPTER_OF_ADAPTER
            elif serving.nested_adapters and model.parent is not None:
                endpoint = fill(serving.endpoint, model.parent)
            else:
                reason = SKIP_NESTED_ADAPTER
        elif model.relation == "quantized" and "gguf" in model.tags:
            reason = SKIP_GGUF
        if reason is None and model.depth > 0 and (model.downloads or 0) < serving.min_downloads:
            reason = SKIP_FEW_DOWNLOADS
        if reason is not None:
            out.skipped.append((model, reason))
            continue
        record = {
            "model_id": model.model_id,
            "endpoint": endpoint,
            "backend": serving.backend,
            "adapter_id": adapter_id,
            "downloads": model.downloads,
            "official": model.official,
        }
        where = f"candidate {model.model_id}"
        out.candidates.append(
            candidate_from_dict({k: v for k, v in record.items() if v is not None}, where)
        )
    return out


def endpoint_records(candidates: Iterable[Candidate]) -> list[dict]:
    """The endpoints file (docs/oracles.md) for `candidates`: one entry per URL, listing the
    LoRA adapters it must be launched with (TGI's `LORA_ADAPTERS`), since a search refuses
    adapter ids its endpoint settings do not name. `load_endpoint_configs` reads it back."""
    by_url: dict[str, dict] = {}
    for cand in candidates:
        entry = by_url.setdefault(
            cand.endpoint, {"url": cand.endpoint, "backend": enum_name(cand.backend)}
        )
        if cand.adapter_id is not None:
            entry.setdefault("adapters", []).append(cand.adapter_id)
    return list(by_url.values())


def write_candidates(candidates: list[Candidate], path: str | Path, force: bool = False) -> None:
    """Write JSONL whole (gemfinder.outputs); an existing file is replaced only with `force`."""
    text = "".join(json.dumps(candidate_record(c)) + "\n" for c in candidates)
    write_whole(path, text, "--out", overwrite=force)


def write_endpoints(candidates: list[Candidate], path: str | Path, force: bool = False) -> None:
    """Write the endpoints JSON of `endpoint_records`, under the same rules as the candidates."""
    text = json.dumps(endpoint_records(candidates), indent=2) + "\n"
    write_whole(path, text, "--endpoints-out", overwrite=force)
