"""Backends: the ways of calling an inference server, one registry entry each.

`registry` holds them keyed by the proto's `Backend` enum; `base` says what an entry holds;
`tgi`, `openai_chat` and `openai_completions` are the three wire protocols; `probe` and
`checks` are what the pre-search check asks a server and how a candidate is checked against
its answer. Importing the registry is cheap (no HTTP stack): the HTTP clients are imported when
one is built.
"""

from gemfinder.backends.base import Backend, Call, Completion
from gemfinder.backends.registry import (
    BY_NAME,
    DEFAULT,
    NAMES,
    REGISTRY,
    backend,
    enum_name,
    help_text,
    parse_backend,
)

__all__ = [
    "BY_NAME",
    "DEFAULT",
    "NAMES",
    "REGISTRY",
    "Backend",
    "Call",
    "Completion",
    "backend",
    "enum_name",
    "help_text",
    "parse_backend",
]
