"""State codecs round-trip the values agents keep in their state."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import uuid
from collections import OrderedDict

import omium
import pydantic
import pytest
from omium.codecs import get_codec


class Tier(enum.Enum):
    GOLD = "gold"
    SILVER = "silver"


@dataclasses.dataclass
class Offer:
    limit: int
    tier: Tier
    issued: dt.datetime
    tags: set[str] = dataclasses.field(default_factory=set)


class Customer(pydantic.BaseModel):
    id: uuid.UUID
    name: str
    born: dt.date
    offers: list[Offer] = []


VALUES = [
    None,
    True,
    0,
    -(2**63),
    2**64 - 1,
    3.5,
    "text ✓",
    b"\x00\xffbytes",
    [1, [2, [3]]],
    (1, "two", (3.0,)),
    {"nested": {"a": [1, {"b": None}]}},
    {1: "int keys", 2: "too"},
    dt.datetime(2026, 11, 27, 4, 44, 18, 123456, tzinfo=dt.timezone.utc),
    dt.datetime(2026, 11, 27, 4, 44, 18),
    dt.date(2026, 11, 27),
    dt.time(4, 44, 18),
    dt.timedelta(days=2, seconds=5, microseconds=7),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    decimal.Decimal("12.3400"),
    {1, 2, 3},
    frozenset({"a"}),
    Tier.GOLD,
    Offer(1000, Tier.SILVER, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), {"vip"}),
    Customer(id=uuid.UUID(int=7), name="Ann", born=dt.date(1990, 5, 1), offers=[Offer(5, Tier.GOLD, dt.datetime(2026, 2, 2))]),
]


@pytest.mark.parametrize("codec", ["msgpack", "pickle"])
@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_round_trips_exactly(codec, value):
    c = get_codec(codec)
    back = c.decode(c.encode(value))
    assert back == value and type(back) is type(value)


@pytest.mark.parametrize("value", [v for v in VALUES if not (isinstance(v, dict) and 1 in v)], ids=lambda v: type(v).__name__)
def test_json_round_trips_everything_with_string_keys(value):
    c = get_codec("json")
    back = c.decode(c.encode(value))
    assert back == value and type(back) is type(value)


def test_json_rejects_non_string_keys_clearly():
    with pytest.raises(TypeError, match="keys must be str"):
        get_codec("json").encode({1: "x"})


def test_subclasses_of_wire_types_encode_as_their_base():
    c = get_codec("msgpack")
    assert c.decode(c.encode(OrderedDict(a=1))) == {"a": 1}


def test_unknown_codec_names_the_choices():
    with pytest.raises(ValueError, match="unknown codec 'yaml'; expected one of 'msgpack', 'json', 'pickle'"):
        get_codec("yaml")


def test_steps_return_the_same_types_on_replay(store):
    @omium.checkpoint("make")
    def make():
        return VALUES[-1]

    with omium.execution("t"):
        first = make()
    with omium.execution("t"):
        again = make()
    assert again == first and isinstance(again, Customer)


def test_custom_codecs_plug_in_and_must_implement_both_methods(store):
    from omium.codecs import Codec

    class Upper(Codec):
        name = "upper"

        def encode(self, value):
            return value.upper().encode()

        def decode(self, data):
            return data.decode()

    @omium.checkpoint("shout", codec=Upper())
    def shout():
        return "hi"

    with omium.execution("cc"):
        assert shout() == "hi"
    with omium.execution("cc"):
        assert shout() == "HI"  # replayed through the custom codec

    class Half(Codec):
        def encode(self, value):
            return b""

    with pytest.raises(TypeError, match="abstract"):
        Half()
