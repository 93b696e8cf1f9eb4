"""The samples log: one record per graded query of a search, and its export as JSONL.

The runner records a Sample for every graded answer (failures are not graded, so not logged):
the prompt's hash, the raw response and what the grader extracted from it, the 0/1 grade. A
query answered from the evaluation cache has no new response: it is recorded as `cached`, with
no text of its own; the export shows the original's response and extraction (the sample of the
search that paid for it, found by the cache key) when the store holds it, and null when the
answer predates the log (schema 5).

Each text is capped at SAMPLE_MAX_BYTES of UTF-8 in the log (cut at a character boundary; the
full size is kept): responses are already capped at --max-answer-bytes (1 MiB) on the wire, but
a log of 100,000 queries must not hold 100 GB. 8 KiB holds 512 generated tokens (GSM8K's cap,
about 2 KB) four times over.

Export (`gemfinder export`): the first line is the search's provenance, then one line per sample
in candidate order, then item order (the spec's): the same bytes for the same search, whatever
order the answers arrived in. Fields: docs/results-export.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gemfinder.tasks import Item, Prompt, task_label

SAMPLE_MAX_BYTES = 8192
FORMAT = "gemfinder.samples/1"
PAGE = 500  # samples read from the store at a time


@dataclass(frozen=True)
class Sample:
    """One graded query as the store keeps it (texts already capped)."""

    model: int  # candidate index in the spec
    item: int  # item index in the spec
    key: str  # evaluation-cache key: a cached sample's original is found by it
    prompt_sha256: str
    reward: int
    cached: bool
    gem_check: bool  # asked by the gem check after the search
    response: str | None  # None: cached, or an oracle without text (a correctness matrix)
    extracted: str | None
    response_bytes: int | None  # the full size before the cap
    extracted_bytes: int | None

    def row(self) -> tuple:
        return (
            self.model, self.item, self.key, self.prompt_sha256, self.reward, int(self.cached),
            int(self.gem_check), self.response, self.extracted, self.response_bytes,
            self.extracted_bytes,
        )  # fmt: skip


COLUMNS = (
    "model, item, key, prompt_sha256, reward, cached, gem_check, response, extracted,"
    " response_bytes, extracted_bytes"
)


def cap(text: str | None) -> tuple[str | None, int | None]:
    """(text as storable UTF-8 cut to SAMPLE_MAX_BYTES at a character boundary, its full size
    in bytes). A lone surrogate (JSON allows "\\ud800") becomes "?" and NUL U+FFFD: neither
    SQLite's nor PostgreSQL's text can hold them, and a sample must never fail a search."""
    if text is None:
        return None, None
    data = text.encode("utf-8", "replace").replace(b"\x00", "\ufffd".encode())
    if len(data) <= SAMPLE_MAX_BYTES:
        return data.decode("utf-8"), len(data)
    return data[:SAMPLE_MAX_BYTES].decode("utf-8", "ignore"), len(data)


def prompt_sha256(prompt: Prompt, requests: tuple[tuple[str, str], ...] = ()) -> str:
    """SHA-256 of what the model was asked: the prompt in both shapes (raw text, chat messages)
    and, for an item scored from log-likelihoods, every [context, continuation] request."""
    body = [prompt.text, prompt.messages, [list(r) for r in requests]]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def sample(
    model: int,
    item: int,
    key: str,
    prompt_hash: str,
    reward: int,
    *,
    cached: bool = False,
    gem_check: bool = False,
    response: str | None = None,
    extracted: str | None = None,
) -> Sample:
    text, text_bytes = cap(None if cached else response)
    ext, ext_bytes = cap(None if cached else extracted)
    return Sample(
        model, item, key, prompt_hash, reward, cached, gem_check, text, ext, text_bytes, ext_bytes
    )


def export(store: Any, search_id: str) -> Iterator[dict[str, Any]]:
    """The export's lines as objects: provenance first, then the samples (see the module)."""
    row = store.get_search(search_id)
    if row is None:
        from gemfinder.search.manager import SearchNotFound

        raise SearchNotFound(search_id)
    spec = row.spec
    recorded = store.provenance(search_id)
    yield {
        "format": FORMAT,
        "search_id": row.id,
        "request_id": row.request_id,
        "state": row.state,
        "created": row.created,
        "algorithm": spec.get("algorithm"),
        "seed": spec.get("seed"),
        "recommended_model_id": row.result.recommended_model_id if row.result else None,
        # null for a search stored before provenance was recorded (schema 5)
        "provenance": recorded,
        "spec": spec,
    }
    items = [Item(it["id"], it["task"], it["fields"]) for it in spec["items"]]
    labels = [_label(it) for it in items]
    models = [c["model_id"] for c in spec["candidates"]]
    after = (-1, -1)
    while True:
        page = store.samples(search_id, after, PAGE)
        if not page:
            return
        originals = store.original_samples([s.key for s in page if s.cached])
        for s in page:
            origin = originals.get(s.key) if s.cached else None
            yield _line(s, models[s.model], items[s.item].id, labels[s.item], origin)
        after = (page[-1].model, page[-1].item)


def _label(item: Item) -> str:
    try:
        return task_label(item)
    except Exception:  # noqa: BLE001 - a task this version no longer knows: its stored name
        return item.task


def _line(
    s: Sample, model_id: str, item_id: str, task: str, origin: tuple[str, Sample] | None
) -> dict[str, Any]:
    shown = s if origin is None else origin[1]
    return {
        "model_id": model_id,
        "item_id": item_id,
        "task": task,
        "prompt_sha256": s.prompt_sha256,
        "reward": s.reward,
        "cached": s.cached,
        "gem_check": s.gem_check,
        "response": shown.response,
        "extracted": shown.extracted,
        "response_bytes": shown.response_bytes,
        "truncated": _cut(shown),
        # a cached sample: the search whose query produced the response shown (null: unknown)
        "original_search_id": origin[0] if origin is not None else None,
    }


def _cut(s: Sample) -> bool:
    def over(text: str | None, size: int | None) -> bool:
        return text is not None and size is not None and len(text.encode()) < size

    return over(s.response, s.response_bytes) or over(s.extracted, s.extracted_bytes)


def dumps(line: dict[str, Any]) -> str:
    """One JSONL line: strict JSON, keys in the order written, non-ASCII kept."""
    return json.dumps(line, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
