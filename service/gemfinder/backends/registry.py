"""The backend registry: gemfinder.v1.Backend value -> Backend, and the spellings of a backend.

Adding a backend: its value in the proto's `Backend` enum (then `python proto/generate.py`), a
module defining `BACKEND = Backend(...)` (client, query, probe, check), and its line below.
Candidates files, the gRPC conversion, the oracle, the pre-search check, the CLI's choices and
the simulated fleet's files all read it from here; importing this module fails when the enum
and the registry disagree, so neither can be added without the other.

Inside gemfinder a backend is its short name (`"tgi"`, `Candidate.backend`); files and
requests carry the proto enum's name (`"BACKEND_TGI"`) or number, and older files the short
name.
"""

from __future__ import annotations

from typing import Any

from gemfinder.backends import openai_chat, openai_completions, tgi
from gemfinder.backends.base import Backend
from gemfinder.errors import UserError
from gemfinder.v1 import gemfinder_pb2 as pb

REGISTRY: dict[int, Backend] = {
    b.enum: b for b in (tgi.BACKEND, openai_chat.BACKEND, openai_completions.BACKEND)
}
DEFAULT = REGISTRY[pb.BACKEND_TGI].name  # what BACKEND_UNSPECIFIED (or no backend) means
BY_NAME: dict[str, Backend] = {b.name: b for b in REGISTRY.values()}
NAMES = tuple(b.name for b in sorted(REGISTRY.values(), key=lambda b: b.enum))


def _check_against_the_enum() -> None:
    values = {v for v in pb.Backend.values() if v != pb.BACKEND_UNSPECIFIED}
    if values != set(REGISTRY):
        missing = [pb.Backend.Name(v) for v in sorted(values - set(REGISTRY))]
        raise RuntimeError(
            f"gemfinder.v1.Backend and the backend registry differ: no entry for "
            f"{missing or 'none'}, entries for values {sorted(set(REGISTRY) - values)} not in "
            "the enum (gemfinder/backends/registry.py)"
        )
    for b in REGISTRY.values():
        if pb.Backend.Name(b.enum) != b.enum_name:
            raise RuntimeError(f"backend {b.name!r} has enum {pb.Backend.Name(b.enum)}")


_check_against_the_enum()


def backend(name: str) -> Backend:
    """The registry entry of a short name (one that `parse_backend` returned)."""
    return BY_NAME[name]


def enum_name(name: str) -> str:
    """`openai` -> `BACKEND_OPENAI`: the proto JSON spelling files are written with."""
    return BY_NAME[name].enum_name


def parse_backend(value: Any, field: str) -> str:
    """The short name of a backend given as an enum name (`BACKEND_OPENAI`), an enum number
    (proto JSON allows both) or the short name itself (`openai`, older files)."""
    if isinstance(value, str):
        if value == "BACKEND_UNSPECIFIED":  # the proto default
            return DEFAULT
        for b in REGISTRY.values():
            if value in (b.name, b.enum_name):
                return b.name
    elif isinstance(value, int) and not isinstance(value, bool):
        if value == pb.BACKEND_UNSPECIFIED:
            return DEFAULT
        if value in REGISTRY:
            return REGISTRY[value].name
    names = ", ".join(enum_name(n) for n in NAMES)
    raise UserError(field, f"must be one of {names} (or {', '.join(NAMES)}), got {value!r}")


def help_text(lead: str) -> str:
    """`lead` and every backend with what it sends, for a CLI --backend option."""
    return f"{lead}: " + "; ".join(f"{b.name} ({b.summary})" for b in REGISTRY.values())
