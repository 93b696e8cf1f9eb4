"""server.message_fields: a dataclass <-> message pair maps fields by name, states what differs,
and refuses at build time a pair that would drop a field or lose a None."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from gemfinder.search.plan import Plan
from gemfinder.search.values import Estimate
from gemfinder.server.message_fields import Fields
from gemfinder.v1 import gemfinder_pb2 as pb


@dataclass(frozen=True)
class Spread:
    mean: float
    p10: float
    p90: float


@dataclass(frozen=True)
class Named:
    average: float  # the message's `mean`
    p10: float
    p90: float
    note: str = ""  # not on the wire


@dataclass(frozen=True)
class NoP90:
    mean: float
    p10: float


def test_fields_map_by_name_and_renamed_ones_by_their_wire_name():
    assert Fields(Spread, pb.Spread).to_message(Spread(1, 2, 3)) == pb.Spread(mean=1, p10=2, p90=3)
    named = Fields(Named, pb.Spread, renamed={"average": "mean"}, skip=("note",))
    msg = named.to_message(Named(1.5, 2, 3, note="kept home"))
    assert msg == pb.Spread(mean=1.5, p10=2, p90=3)
    assert named.from_message(msg) == Named(1.5, 2, 3)  # a skipped field reads back as its default


def test_a_converted_field_goes_through_its_functions_both_ways():
    tenths = Fields(Spread, pb.Spread, convert={"p90": (lambda v: v / 10, lambda v: v * 10)})
    assert tenths.to_message(Spread(1, 2, 30)).p90 == 3
    assert tenths.from_message(pb.Spread(mean=1, p10=2, p90=3)) == Spread(1, 2, 30)


def test_none_is_an_unset_field_and_an_unset_field_is_none():
    estimate = Fields(Estimate, pb.ModelEstimate)
    value = estimate.from_message(pb.ModelEstimate(model_id="m"))
    assert value.downloads is None
    assert not estimate.to_message(value).HasField("downloads")
    zero = estimate.from_message(pb.ModelEstimate(model_id="m", downloads=0))
    assert zero.downloads == 0  # set to 0 is not unset
    assert estimate.to_message(zero).HasField("downloads")


def test_a_field_on_one_side_only_is_refused():
    with pytest.raises(TypeError, match="message field 'p90' has no dataclass field"):
        Fields(NoP90, pb.Spread)
    with pytest.raises(TypeError, match="the message has no field 'note'"):
        Fields(Named, pb.Spread, renamed={"average": "mean"})
    with pytest.raises(TypeError, match="no dataclass field 'nope'"):
        Fields(Spread, pb.Spread, renamed={"nope": "mean"})


def test_a_none_the_message_cannot_carry_is_refused():
    @dataclass(frozen=True)
    class MaybeMean:
        p10: float
        p90: float
        mean: float | None = None  # pb.Spread.mean has no presence: None would become 0

    with pytest.raises(TypeError, match="'mean' has no presence to carry None"):
        Fields(MaybeMean, pb.Spread)
    keep = Fields(MaybeMean, pb.Spread, convert={"mean": (lambda v: v or 0.0, lambda v: v or None)})
    assert keep.from_message(pb.Spread(p10=1, p90=2)).mean is None


def test_a_message_field_without_its_nested_pair_is_refused():
    with pytest.raises(TypeError, match="'queries' is a message; say how"):
        Fields(Plan, pb.SearchPlan, renamed={"wall_s": "wall_seconds"})
