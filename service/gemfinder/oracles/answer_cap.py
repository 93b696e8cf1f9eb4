"""A cap on the bytes of one endpoint answer, in the HTTP client the oracle's calls go through.

huggingface_hub reads a whole answer into memory and parses it on the event loop: a hostile or
broken endpoint answering 100 MB took the server from 82 MB to 1.7 GB and stalled every other
call for 15 s. The transport under its clients (oracles.transport) stops reading past the cap (a
declared Content-Length above it is refused before any byte is read) and raises AnswerTooLarge,
which the oracle counts as an endpoint failure (`too_large`), never as a wrong answer. Answers
are asked for uncompressed (`Accept-Encoding: identity`) and a compressed one is refused as
garbage: the cap counts bytes on the wire, and a small gzip body can expand a thousandfold.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from gemfinder import bounded_json

# TGI's /generate with details for 512 tokens is about 50 KB; chat answers are smaller.
DEFAULT_MAX_ANSWER_BYTES = 1024 * 1024
# The pre-search probes (/info, /v1/models of a server with many adapters): a few KB.
MAX_PROBE_BYTES = 1024 * 1024


class AnswerTooLarge(Exception):
    """An answer longer than the cap (an endpoint failure, not retried: it would answer the
    same again)."""


class CompressedAnswer(ValueError):
    """A compressed answer although `identity` was asked (garbage: its size is unknowable)."""


def reason(url: str, max_bytes: int, how: str) -> str:
    return f"answer from {url} is over {max_bytes} bytes ({how}; --max-answer-bytes)"


async def probe_json(response: aiohttp.ClientResponse, max_bytes: int = MAX_PROBE_BYTES) -> Any:
    """The JSON body of a probe's answer (aiohttp), read up to `max_bytes` and parsed with a
    bound on nesting; ValueError when longer, nested deeper, or not JSON. (A 100,000-deep /info
    raised RecursionError out of the probe: an internal error for the caller's request.)"""
    body = await response.content.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise ValueError(f"answer over {max_bytes} bytes")
    return bounded_json.loads(body)
