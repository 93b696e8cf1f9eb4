"""Every value converter of server.convert round-trips: message -> dataclass -> message is the
same message, with every field of the message (nested ones included) set to a value other than
its default, so a field the conversion drops, or sends under another field's name, fails.

The messages are filled from their descriptors, so a field added to the proto later is filled
too (and server.message_fields refuses to build a converter that does not map it).
"""

from __future__ import annotations

import itertools

import pytest
from gemfinder.search import gem
from gemfinder.search.values import Certificate, Estimate, Result
from gemfinder.server import convert
from gemfinder.v1 import gemfinder_pb2 as pb
from google.protobuf import duration_pb2
from google.protobuf.descriptor import FieldDescriptor

# Values the conversions only carry a few of (enum numbers the dataclass names).
ENUM_VALUES = {"GemVerdict": pb.GEM_VERDICT_NOT_A_GEM}


def filled(msg_cls, counter=None):
    """A message of `msg_cls` with every field set, each to a value of its own (not a default)."""
    counter = counter or itertools.count(1)
    msg = msg_cls()
    if msg_cls is duration_pb2.Duration:  # whole milliseconds: seconds as a float keep them
        msg.FromMilliseconds(next(counter) * 1000 + 250)
        return msg
    for field in msg_cls.DESCRIPTOR.fields:
        n = 2 if field.is_repeated else 1
        values = [_value(field, counter) for _ in range(n)]
        if field.is_repeated:
            getattr(msg, field.name).extend(values)
        elif field.message_type is not None:
            getattr(msg, field.name).CopyFrom(values[0])
        else:
            setattr(msg, field.name, values[0])
    return msg


def _value(field, counter):
    if field.message_type is not None:
        return filled(field.message_type._concrete_class, counter)
    if field.enum_type is not None:
        return ENUM_VALUES[field.enum_type.name]
    n = next(counter)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return True
    if field.type == FieldDescriptor.TYPE_STRING:
        return f"s{n}"
    if field.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return n + 0.5
    return n


def every_field_set(msg) -> bool:
    if len(msg.ListFields()) != len(msg.DESCRIPTOR.fields):
        return False
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        many = value if field.is_repeated else [value]
        if not all(every_field_set(v) for v in many):
            return False
    return True


CONVERTERS = {
    "Certificate": convert.CERTIFICATE,
    "ModelEstimate": convert.ESTIMATE,
    "Progress": convert.PROGRESS,
    "ServingCost": convert.COST,
    "IncrementalOutcome": convert.INCREMENTAL,
    "TaskResult": convert.TASK_RESULT,
    "SearchResult": convert.RESULT,
    "SearchPlan": convert.PLAN,
}


@pytest.mark.parametrize("name", CONVERTERS)
def test_a_message_with_every_field_set_round_trips(name):
    fields = CONVERTERS[name]
    msg = filled(fields.message_cls)
    assert every_field_set(msg)
    value = fields.from_message(msg)
    assert isinstance(value, fields.value_cls)
    assert fields.to_message(value) == msg


@pytest.mark.parametrize("name", ["Certificate", "ModelEstimate", "Progress", "SearchResult"])
def test_unset_optional_fields_stay_unset_and_read_back_as_none(name):
    fields = CONVERTERS[name]
    msg = filled(fields.message_cls)
    for field in msg.DESCRIPTOR.fields:
        if field.has_presence and field.name not in ("winner", "elapsed"):
            msg.ClearField(field.name)
    if name == "Certificate":
        msg.epsilon = 0  # no target: a fixed-budget search
    value = fields.from_message(msg)
    assert fields.to_message(value) == msg
    for name_ in ("downloads", "certificate", "gpu_seconds", "most_popular", "cost", "epsilon"):
        if hasattr(value, name_):
            assert getattr(value, name_) is None, name_


def test_the_fields_that_change_form_on_the_wire():
    result = Result(
        elapsed_s=2.5,
        gem_verdict=gem.HIDDEN_GEM,
        winner=Estimate("m", downloads=None),
        certificate=Certificate(0.02, 0.05, None, False),
    )
    msg = convert.result_to_proto(result)
    assert msg.elapsed.seconds == 2 and msg.elapsed.nanos == 500_000_000
    assert msg.gem_verdict == pb.GEM_VERDICT_HIDDEN_GEM
    assert not msg.winner.HasField("downloads") and not msg.HasField("most_popular")
    assert msg.certificate.epsilon == 0.0 and not msg.HasField("serving_cost")
    assert convert.result_from_proto(msg) == result
    # A verdict number this build does not know reads as no verdict, not as an error.
    msg.gem_verdict = 99
    assert convert.result_from_proto(msg).gem_verdict == ""
