"""A frozen dataclass <-> a proto message, field by field by name (server.convert's values).

A `Fields` pairs a dataclass (search.values, cost, search.plan) with its message and converts
either way under one rule: each dataclass field goes to the message field of the same name, its
value as it is. A pair states only where it differs:
- `renamed`: the message spells the field otherwise (`elapsed_s` is `elapsed`);
- `convert`: a (to message, from message) pair of functions for a value of another form
  (seconds and a Duration, a short name and an enum number);
- `nested`: the `Fields` of a message-typed field, single or repeated;
- `skip`: dataclass fields the message does not carry (they read back as their defaults).
A dataclass field whose default is None is optional: None leaves the message field unset and an
unset field reads back as None, so the message field must track presence (proto3 `optional` or a
message) unless the pair converts it. Repeated fields read back as tuples.

Building a Fields checks that every field of both sides is accounted for: a field added to one
side and not to the other fails at import instead of being dropped on the wire.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

T = TypeVar("T")
Convert = tuple[Callable[[Any], Any], Callable[[Any], Any]]


@dataclass(frozen=True)
class _Field:
    name: str  # the dataclass's
    wire: str  # the message's
    optional: bool  # None <-> unset (presence)
    repeated: bool
    to: Callable[[Any], Any] | None
    back: Callable[[Any], Any] | None
    nested: Fields | None


class Fields(Generic[T]):
    def __init__(
        self,
        value_cls: type[T],
        message_cls: type[Message],
        *,
        renamed: Mapping[str, str] | None = None,
        convert: Mapping[str, Convert] | None = None,
        nested: Mapping[str, Fields] | None = None,
        skip: tuple[str, ...] = (),
    ) -> None:
        renamed, convert, nested = renamed or {}, convert or {}, nested or {}
        self.value_cls, self.message_cls = value_cls, message_cls
        wire_fields = message_cls.DESCRIPTOR.fields_by_name
        own = {f.name: f for f in dataclasses.fields(value_cls)}  # type: ignore[arg-type]
        where = f"{value_cls.__name__} <-> {message_cls.DESCRIPTOR.full_name}"
        stray = sorted({*renamed, *convert, *nested, *skip} - set(own))
        if stray:
            raise TypeError(f"{where}: no dataclass field {stray[0]!r}")
        plan = []
        for name, field in own.items():
            if name in skip:
                continue
            wire = renamed.get(name, name)
            desc = wire_fields.get(wire)
            if desc is None:
                raise TypeError(f"{where}: the message has no field {wire!r} (for {name!r})")
            optional = field.default is None
            if optional and name not in convert and not desc.has_presence:
                raise TypeError(f"{where}: {wire!r} has no presence to carry None; convert it")
            if desc.message_type is not None and name not in convert and name not in nested:
                raise TypeError(f"{where}: {wire!r} is a message; say how (nested or convert)")
            to, back = convert.get(name, (None, None))
            repeated = desc.is_repeated
            plan.append(_Field(name, wire, optional, repeated, to, back, nested.get(name)))
        unmapped = sorted(set(wire_fields) - {f.wire for f in plan})
        if unmapped:
            raise TypeError(f"{where}: message field {unmapped[0]!r} has no dataclass field")
        self._fields = tuple(plan)

    def to_message(self, value: T) -> Message:
        # One constructor call with keywords: the cheapest way to fill a message (a result
        # sends up to 7 estimates per model).
        out = {}
        for f in self._fields:
            v = getattr(value, f.name)
            if f.to is not None:
                v = f.to(v)
            elif f.nested is not None and v is not None:
                v = [f.nested.to_message(x) for x in v] if f.repeated else f.nested.to_message(v)
            if v is not None:  # None: unset
                out[f.wire] = v
        return self.message_cls(**out)

    def from_message(self, msg: Message) -> T:
        out = {}
        for f in self._fields:
            if f.back is not None:
                v = f.back(getattr(msg, f.wire))
            elif f.optional and not msg.HasField(f.wire):
                v = None
            elif f.nested is not None:
                nested = f.nested.from_message
                v = (
                    tuple(map(nested, getattr(msg, f.wire)))
                    if f.repeated
                    else nested(getattr(msg, f.wire))
                )
            else:
                v = getattr(msg, f.wire)
                if f.repeated:
                    v = tuple(v)
            out[f.name] = v
        return self.value_cls(**out)
