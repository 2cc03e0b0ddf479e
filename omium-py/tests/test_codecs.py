"""State codecs round-trip the values agents keep in their state."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import importlib
import json
import os
import shlex
import subprocess
import sys
import uuid
import warnings
from collections import OrderedDict

import msgpack
import omium
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omium import UnregisteredTypeWarning, register_type
from omium import codecs as omium_codecs
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


# Stored types: the codecs rebuild only registered classes and never import or call by name.


@pytest.fixture
def registry(monkeypatch):
    """The codec registry for one test (restored after), and the once-per-type warnings reset."""
    fresh = dict(omium_codecs._registry)
    monkeypatch.setattr(omium_codecs, "_registry", fresh)
    monkeypatch.setattr(omium_codecs, "_warned", set())
    return fresh


def _stored(codec: str, tag: str, payload) -> bytes:
    """A tagged value as a store holds it (written by an older omium, or forged)."""
    if codec == "json":
        return json.dumps({"__omium__": tag, "v": payload}).encode()
    return msgpack.packb(msgpack.ExtType(1, msgpack.packb([tag, payload], use_bin_type=True)), use_bin_type=True)


@pytest.mark.parametrize("codec", ["msgpack", "json"])
@pytest.mark.parametrize("tag", ["enum", "dataclass", "pydantic"])
def test_stored_type_names_are_never_called(codec, tag, tmp_path, registry):
    marker = tmp_path / "ran"
    command = f"touch {shlex.quote(str(marker))}"
    data = command if tag == "enum" else {"command": command}
    with pytest.warns(UnregisteredTypeWarning, match="'os:system'"):
        back = get_codec(codec).decode(_stored(codec, tag, ["os:system", data]))
    assert back == data and type(back) is type(data)
    assert not marker.exists()


@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_stored_type_names_are_never_imported(codec, tmp_path, monkeypatch, registry):
    marker = tmp_path / "imported"
    module = f"omium_test_side_effect_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').close()\n\nclass Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(UnregisteredTypeWarning):
        assert get_codec(codec).decode(_stored(codec, "enum", [f"{module}:Thing", 1])) == 1
    assert not marker.exists() and module not in sys.modules


@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_tag_shaped_dicts_round_trip_unchanged(codec, tmp_path, registry):
    marker = tmp_path / "ran"
    shaped = {"__omium__": "enum", "v": ["os:system", f"touch {shlex.quote(str(marker))}"]}
    values = [
        shaped,
        [shaped, {"__omium__": "dict", "v": [["a", 1]]}],
        {"__omium__": "bytes", "v": "AAAA"},
        {"__omium__": "nope", "v": 1},
        {"__omium__": "x"},
        {"outer": {"__omium__": "dataclass", "v": {"__omium__": "pydantic", "v": [b"raw", dt.date(2026, 1, 2)]}}},
        {"__omium__": {"__omium__": "tuple", "v": [1, 2]}, "v": (1, {"__omium__": "set"}), "when": dt.datetime(2026, 1, 2, 3)},
    ]
    c = get_codec(codec)
    for value in values:
        back = c.decode(c.encode(value))
        assert back == value and type(back) is type(value)
    assert not marker.exists()


def test_msgpack_extension_values_a_step_returns_decode_as_data_and_run_nothing(tmp_path, registry):
    # A msgpack.ExtType with the codec's own code reads back as a tagged value: since tags never
    # import or call what they name, the worst it can do is come back as plain data.
    marker = tmp_path / "ran"
    forged = msgpack.ExtType(1, msgpack.packb(["enum", ["os:system", f"touch {shlex.quote(str(marker))}"]]))
    c = get_codec("msgpack")
    with pytest.warns(omium.UnregisteredTypeWarning):
        back = c.decode(c.encode({"x": [forged]}))
    assert back == {"x": [f"touch {shlex.quote(str(marker))}"]}
    assert not marker.exists()
    assert c.decode(c.encode(msgpack.ExtType(5, b"ab"))) == msgpack.ExtType(5, b"ab")


@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_unknown_tags_are_a_clear_error(codec):
    with pytest.raises(ValueError, match="unknown tagged value 'nope'"):
        get_codec(codec).decode(_stored(codec, "nope", 1))


@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_types_not_registered_decode_as_plain_data_until_registered(codec, registry):
    c = get_codec(codec)
    issued = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    value = {
        "tier": Tier.GOLD,
        "offer": Offer(1000, Tier.SILVER, issued, {"vip"}),
        "customer": Customer(id=uuid.UUID(int=7), name="Ann", born=dt.date(1990, 5, 1)),
    }
    data = c.encode(value)
    registry.clear()  # as in a process that has not encoded these types
    with pytest.warns(UnregisteredTypeWarning) as warned:
        plain = c.decode(data)
    assert plain == {
        "tier": "gold",
        "offer": {"limit": 1000, "tier": "silver", "issued": issued, "tags": {"vip"}},
        "customer": {"id": uuid.UUID(int=7), "name": "Ann", "born": dt.date(1990, 5, 1), "offers": []},
    }
    messages = [str(w.message) for w in warned]
    for cls in (Tier, Offer, Customer):
        (message,) = [m for m in messages if f"'{cls.__module__}:{cls.__qualname__}'" in m]
        assert f"omium.register_type({cls.__qualname__})" in message and "omium.init(codec_types=[" in message
    c.decode(data)  # warned once per type: nothing more to record

    register_type(Tier, Offer, Customer)
    back = c.decode(data)
    assert back == value and type(back["customer"]) is Customer and type(back["offer"]) is Offer


def test_a_registered_name_of_another_kind_is_not_used(registry):
    register_type(Tier)
    data = _stored("msgpack", "dataclass", [f"{Tier.__module__}:Tier", {"limit": 1}])
    with pytest.warns(UnregisteredTypeWarning, match="is not a dataclass"):
        assert get_codec("msgpack").decode(data) == {"limit": 1}


def test_register_type_takes_enums_dataclasses_and_models_only(registry):
    class Plain:
        pass

    def function():
        pass

    for bad in (function, Plain, Plain(), Offer(1, Tier.GOLD, dt.datetime(2026, 1, 1)), print, "os:system"):
        with pytest.raises(TypeError, match="is not an Enum subclass, a dataclass or a pydantic model class"):
            register_type(bad)
    with pytest.raises(TypeError, match="function"):
        register_type(function)
    with pytest.raises(TypeError):
        register_type()

    class Fresh(enum.Enum):
        A = 1

    with pytest.raises(TypeError, match="Plain"):
        register_type(Fresh, Plain)
    assert f"{Fresh.__module__}:{Fresh.__qualname__}" not in registry  # all or nothing

    @register_type
    class Color(enum.Enum):
        RED = "red"

    assert isinstance(Color, type) and registry[f"{Color.__module__}:{Color.__qualname__}"] is Color
    assert register_type(Tier, Offer, Customer) is None


def test_init_registers_codec_types(tmp_path, registry):
    class Local(enum.Enum):
        A = 1

    data = get_codec("msgpack").encode(Local.A)
    registry.clear()
    omium.init(path=tmp_path / "store", durability="buffered", codec_types=[Local])
    try:
        assert get_codec("msgpack").decode(data) is Local.A
    finally:
        omium.shutdown()
    with pytest.raises(TypeError, match="list of classes"):
        omium.init(path=tmp_path / "store", codec_types=Local)
    with pytest.raises(TypeError, match="is not an Enum subclass"):
        omium.init(path=tmp_path / "store", codec_types=[print])


def test_a_step_returning_a_tag_shaped_dict_replays_it_unchanged(store, tmp_path):
    marker = tmp_path / "ran"
    shaped = {"__omium__": "enum", "v": ["os:system", f"touch {shlex.quote(str(marker))}"]}

    @omium.checkpoint("parse", codec="json")
    def parse():
        return shaped

    with omium.execution("tag-shaped"):
        first = parse()
    with omium.execution("tag-shaped"):
        again = parse()
    assert first == again == shaped and not marker.exists()


TYPES_MODULE = """
import dataclasses
import enum

import pydantic


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int
    label: str = dataclasses.field(default="", init=False)


class Shape(pydantic.BaseModel):
    color: Color
    points: list[Point]


def expected():
    point = Point(1, 2)
    point.label = "moved"
    return {"color": Color.RED, "point": point, "shape": Shape(color=Color.RED, points=[Point(3, 4)])}
"""

READER = """
import importlib, pathlib, sys, warnings
sys.path.insert(0, sys.argv[1])
import omium
warnings.simplefilter("error", omium.UnregisteredTypeWarning)
types = importlib.import_module(sys.argv[2])
omium.register_type(types.Color, types.Point, types.Shape)
value = omium.get_codec(sys.argv[3]).decode(pathlib.Path(sys.argv[1], "value.bin").read_bytes())
assert value == types.expected(), value
assert type(value["color"]) is types.Color and type(value["point"]) is types.Point and type(value["shape"]) is types.Shape
assert value["point"].label == "moved"
print("rebuilt")
"""


@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_registered_types_are_rebuilt_in_a_fresh_process(codec, tmp_path, monkeypatch, registry):
    module = f"omium_test_types_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(TYPES_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    types = importlib.import_module(module)
    value = types.expected()
    (tmp_path / "value.bin").write_bytes(get_codec(codec).encode(value))
    out = subprocess.run([sys.executable, "-c", READER, str(tmp_path), module, codec], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "rebuilt"


WRITER = """
import dataclasses, enum, pathlib, sys
import omium
import pydantic


class Mood(enum.Enum):
    HAPPY = "happy"


@dataclasses.dataclass
class Ticket:
    id: int
    mood: Mood


class Note(pydantic.BaseModel):
    text: str
    ticket: Ticket


value = {"mood": Mood.HAPPY, "ticket": Ticket(7, Mood.HAPPY), "note": Note(text="hi", ticket=Ticket(8, Mood.HAPPY))}
pathlib.Path(sys.argv[1]).write_bytes(omium.get_codec(sys.argv[2]).encode(value))
"""


@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_types_of_another_process_decode_as_plain_data_with_a_warning(codec, tmp_path, registry):
    path = tmp_path / "value.bin"
    subprocess.run([sys.executable, "-c", WRITER, str(path), codec], check=True, timeout=120)
    with pytest.warns(UnregisteredTypeWarning) as warned:
        value = get_codec(codec).decode(path.read_bytes())
    assert value == {
        "mood": "happy",
        "ticket": {"id": 7, "mood": "happy"},
        "note": {"text": "hi", "ticket": {"id": 8, "mood": "happy"}},
    }
    messages = " ".join(str(w.message) for w in warned)
    for name in ("Mood", "Ticket", "Note"):
        assert f"'__main__:{name}'" in messages and f"omium.register_type({name})" in messages


def _typed(value):
    """A value with the type of every part, so True and 1 (or a list and a tuple) differ."""
    if isinstance(value, dict):
        return ("dict", {k: _typed(v) for k, v in value.items()})
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, value)


_TAGS = ["__omium__", "v", "dict", "enum", "dataclass", "pydantic", "bytes", "tuple", "set"]
_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.sampled_from(_TAGS)
)
_JSON_LIKE = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_TAGS) | st.text(), inner, max_size=4)
        # Shaped like the codecs' own tagged values.
        | st.fixed_dictionaries({"__omium__": st.sampled_from(_TAGS) | inner, "v": inner})
    ),
    max_leaves=24,
)


@settings(deadline=None, max_examples=300)
@given(_JSON_LIKE)
def test_json_like_values_round_trip_through_both_codecs(value):
    for name in ("msgpack", "json"):
        c = get_codec(name)
        assert _typed(c.decode(c.encode(value))) == _typed(value)


# `make fuzz` runs the property tests below long (OMIUM_FUZZ_EXAMPLES); `make test` briefly.
_FUZZ_EXAMPLES = int(os.environ.get("OMIUM_FUZZ_EXAMPLES", "300"))
_CANARY: list = []


def _canary(*args, **kwargs):
    _CANARY.append((args, kwargs))


# Names a decoder that imports by name would resolve and call.
_HOSTILE_NAMES = [
    "os:system",
    "subprocess:Popen",
    "builtins:eval",
    "builtins:exec",
    "importlib:import_module",
    "pickle:loads",
    f"{__name__}:_canary",
    "tests.test_codecs:_canary",
]
_PAYLOAD = st.recursive(
    _LEAVES | st.sampled_from(_HOSTILE_NAMES),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_TAG = st.sampled_from([*_TAGS, "datetime", "timedelta", "uuid", "decimal", "frozenset", "date"]) | st.text(max_size=6)


def _hostile_json(tag, name, payload):
    return json.dumps({"__omium__": tag, "v": [name, payload]}, default=str).encode()


def _hostile_msgpack(tag, name, payload):
    inner = msgpack.packb([tag, [name, payload]], use_bin_type=True)
    return msgpack.packb([msgpack.ExtType(1, inner), payload], use_bin_type=True)


_STORED = (
    st.binary(max_size=400)
    | st.builds(_hostile_json, _TAG, st.sampled_from(_HOSTILE_NAMES), _PAYLOAD)
    | st.builds(_hostile_msgpack, _TAG, st.sampled_from(_HOSTILE_NAMES), _PAYLOAD)
    | st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n)
    | st.integers(1, 3000).map(lambda n: b"\x91" * n + b"\xc0")
)


@settings(deadline=None, max_examples=_FUZZ_EXAMPLES)
@given(_STORED)
def test_stored_bytes_decode_to_data_or_a_value_error_and_run_nothing(data):
    """Whatever a store holds, decoding it returns data or raises ValueError naming the problem;
    it imports nothing and calls nothing named by the bytes."""
    modules = set(sys.modules)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnregisteredTypeWarning)
        for name in ("msgpack", "json"):
            try:
                get_codec(name).decode(data)
            except ValueError as e:
                assert str(e), "the error says what is wrong"
    assert _CANARY == []
    # json.loads picks UTF-8, -16 or -32 from the first bytes and may load that text codec; no
    # other module may appear.
    imported = {m for m in set(sys.modules) - modules if not m.startswith("encodings.")}
    assert imported == set(), imported


@pytest.mark.parametrize(
    ("codec", "data", "message"),
    [
        # Found by the property test above: msgpack's StackError has no message at all.
        ("msgpack", b"\x91" * 1025 + b"\xc0", "cannot be decoded by the msgpack codec: StackError"),
        # Found by it too: uuid.UUID(a list) raises AttributeError from inside the uuid module.
        ("json", b'{"__omium__":"uuid","v":["",null]}', "cannot be decoded by the json codec: AttributeError"),
        ("json", b'{"__omium__":"timedelta","v":[1]}', "cannot be decoded by the json codec: IndexError"),
        ("json", b"[" * 100_000 + b"]" * 100_000, "cannot be decoded by the json codec: RecursionError"),
    ],
)
def test_malformed_stored_state_is_a_value_error_that_says_so(codec, data, message):
    with pytest.raises(ValueError, match=message):
        get_codec(codec).decode(data)


def test_a_state_is_read_with_the_codec_it_was_recorded_with(tmp_path):
    calls = []

    @omium.checkpoint("fetch")
    def fetch():
        calls.append(1)
        return {"a": 1}

    omium.init(path=str(tmp_path / "s"), codec="json")
    try:
        with omium.execution("c"):
            fetch()
        (info,) = omium.history("c")
        assert info.metadata["omium.codec"] == "json"
        assert omium.get_execution("c").labels["omium.codec"] == "json"
    finally:
        omium.shutdown()
    # Another default codec now: the recorded step still replays, and loads, as JSON.
    omium.init(path=str(tmp_path / "s"))
    try:
        with omium.execution("c"):
            assert fetch() == {"a": 1}
        assert calls == [1]
        assert info.load() == {"a": 1}
    finally:
        omium.shutdown()


def test_recorded_codec_names_what_it_cannot_decode():
    msgpack_codec = get_codec("msgpack")
    assert omium_codecs.recorded_codec(None, msgpack_codec, "x") is msgpack_codec
    assert omium_codecs.recorded_codec("json", msgpack_codec, "x").name == "json"
    with pytest.raises(ValueError, match=r"step 'a' was recorded with the 'yaml' codec, which this process does not have"):
        omium_codecs.recorded_codec("yaml", msgpack_codec, "step 'a'")


def test_msgpack_reads_what_node_writes():
    c = get_codec("msgpack")
    # A step that returned `undefined` is stored as no bytes.
    assert c.decode(b"") is None
    # A Date is msgpack's timestamp extension: an aware datetime in UTC.
    stamp = msgpack.packb(msgpack.Timestamp(1_764_756_000, 250_000_000))
    assert c.decode(stamp) == dt.datetime(2025, 12, 3, 10, 0, 0, 250000, tzinfo=dt.timezone.utc)
