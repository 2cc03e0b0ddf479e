"""State codecs: how step results and checkpoint state become bytes.

``msgpack`` (the default) and ``json`` round-trip dict, list, tuple, str, bytes, int, float,
bool, None, datetime/date/time/timedelta, Decimal, UUID and set/frozenset exactly. Enums,
dataclasses and pydantic models are stored with their type's ``module:qualname`` and rebuilt
only as types of the codec registry: those given to :func:`register_type` or
``omium.init(codec_types=[...])``, and every type this process has itself encoded. Decoding
never imports a module or calls anything the stored data names: a value of a type not in the
registry comes back as plain data (an enum as its value, a dataclass or a model as the dict of
its fields), with an :class:`UnregisteredTypeWarning` once per type.

``pickle`` handles anything picklable, but unpickling runs code chosen by whoever wrote the
store: use it only for stores you trust.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import datetime as _dt
import decimal
import enum
import json
import pickle
import threading
import uuid
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, overload

import msgpack

__all__ = ["Codec", "get_codec", "CODECS", "CODEC_KEY", "recorded_codec", "to_plain", "register_type", "UnregisteredTypeWarning"]

# msgpack extension type carrying a tagged value: ext data = msgpack([tag, payload]).
_EXT_TAGGED = 1


class UnregisteredTypeWarning(UserWarning):
    """A stored enum, dataclass or pydantic model was decoded as plain data because its type is
    not registered: ``omium.register_type(Cls)`` or ``omium.init(codec_types=[Cls])``."""


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_pydantic(obj: Any) -> bool:
    return hasattr(type(obj), "model_fields") and hasattr(obj, "model_dump")


def _is_pydantic_class(cls: type) -> bool:
    return hasattr(cls, "model_fields") and callable(getattr(cls, "model_validate", None))


# What a class must be for the codecs to rebuild a value of each tag with it.
_KINDS: dict[str, Callable[[type], bool]] = {
    "enum": lambda cls: issubclass(cls, enum.Enum),
    "dataclass": dataclasses.is_dataclass,
    "pydantic": _is_pydantic_class,
}
_KIND_NAMES = {"enum": "an Enum subclass", "dataclass": "a dataclass", "pydantic": "a pydantic model class"}

# The types the codecs may rebuild, by the ``module:qualname`` recorded in stored values.
_registry: dict[str, type] = {}
# Type names already warned about; stored data chooses them, so the set is bounded.
_warned: set[str] = set()
_MAX_WARNED = 1024
_warned_lock = threading.Lock()

_C = TypeVar("_C", bound=type)


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return f"class {obj.__module__}.{obj.__qualname__}"
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(qualname, str):
        return f"{getattr(obj, '__module__', None) or '?'}.{qualname} (a {type(obj).__name__}, not a class)"
    return f"{obj!r:.80} (a {type(obj).__name__}, not a class)"


@overload
def register_type(cls: _C, /) -> _C: ...
@overload
def register_type(cls: type, other: type, /, *more: type) -> None: ...
def register_type(*classes: type) -> Any:
    """Lets the ``msgpack`` and ``json`` codecs rebuild values of these classes from stored data.

    Each class must be an ``Enum`` subclass, a dataclass or a pydantic model class (else
    ``TypeError``). Stored values name their type by ``module:qualname``; only a class registered
    under exactly that name is rebuilt, others decode as plain data. Types this process encodes
    are registered automatically, so this is needed only to read values another process wrote
    (after a restart: ``recover()``, ``history()``, a resumed workflow). With one class it returns
    the class, so it also works as a decorator::

        @omium.register_type
        class Tier(enum.Enum): ...
    """
    if not classes:
        raise TypeError("omium.register_type() needs a class: omium.register_type(Cls), or @omium.register_type without parentheses")
    for cls in classes:
        if not isinstance(cls, type) or not any(ok(cls) for ok in _KINDS.values()):
            raise TypeError(
                f"omium.register_type: {_describe(cls)} is not an Enum subclass, a dataclass or a pydantic model class; "
                "the codecs rebuild only those"
            )
    for cls in classes:
        _registry[_qualname(cls)] = cls
    return classes[0] if len(classes) == 1 else None


def _encoded_type(cls: type) -> str:
    """The stored name of a class this process is encoding a value of; the application handed
    us that value, so its class is trusted to rebuild values under that name."""
    name = _qualname(cls)
    if _registry.get(name) is not cls:
        _registry[name] = cls
    return name


def _rebuilder(kind: str, payload: Any) -> tuple[Any, Any]:
    """The registered class to rebuild a stored ``[type name, data]`` of this kind with, or
    None (after warning) when there is none; and the data."""
    if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], str)):
        raise ValueError(f"malformed {kind!r} value in stored state: expected [type name, data]")
    name, data = payload
    cls = _registry.get(name)
    if cls is not None and _KINDS[kind](cls):
        return cls, data
    _warn_unregistered(kind, name, cls)
    return None, data


def _warn_unregistered(kind: str, name: str, found: type | None) -> None:
    with _warned_lock:
        if name in _warned:
            return
        if len(_warned) < _MAX_WARNED:
            _warned.add(name)
    what = {"enum": "enum member", "dataclass": "dataclass", "pydantic": "pydantic model"}[kind]
    plain = "its value" if kind == "enum" else "a dict of its fields"
    if found is not None:
        msg = (
            f"stored {what} of type {name!r} decoded as plain data ({plain}): the class registered under that name, "
            f"{_describe(found)}, is not {_KIND_NAMES[kind]}"
        )
    else:
        short = name.partition(":")[2]
        if not all(part.isidentifier() for part in short.split(".")):
            short = "Cls"
        msg = (
            f"stored {what} of type {name!r} decoded as plain data ({plain}): the type is not registered for decoding; "
            f"register it to get instances back: omium.register_type({short}) or omium.init(codec_types=[{short}])"
        )
    warnings.warn(msg, UnregisteredTypeWarning, stacklevel=2)


def _tag(obj: Any) -> tuple[str, Any] | None:
    """The (tag, payload) of a value the wire formats lack, or None."""
    if isinstance(obj, _dt.datetime):
        return "datetime", obj.isoformat()
    if isinstance(obj, _dt.date):
        return "date", obj.isoformat()
    if isinstance(obj, _dt.time):
        return "time", obj.isoformat()
    if isinstance(obj, _dt.timedelta):
        return "timedelta", [obj.days, obj.seconds, obj.microseconds]
    if isinstance(obj, uuid.UUID):
        return "uuid", str(obj)
    if isinstance(obj, decimal.Decimal):
        return "decimal", str(obj)
    if isinstance(obj, enum.Enum):
        return "enum", [_encoded_type(type(obj)), obj.value]
    if isinstance(obj, frozenset):
        return "frozenset", list(obj)
    if isinstance(obj, set):
        return "set", list(obj)
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return "tuple", list(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return "dataclass", [_encoded_type(type(obj)), fields]
    if _is_pydantic(obj):
        return "pydantic", [_encoded_type(type(obj)), obj.model_dump(mode="python")]
    return None


def _untag(tag: str, payload: Any) -> Any:
    if tag == "datetime":
        return _dt.datetime.fromisoformat(payload)
    if tag == "date":
        return _dt.date.fromisoformat(payload)
    if tag == "time":
        return _dt.time.fromisoformat(payload)
    if tag == "timedelta":
        return _dt.timedelta(days=payload[0], seconds=payload[1], microseconds=payload[2])
    if tag == "uuid":
        return uuid.UUID(payload)
    if tag == "decimal":
        return decimal.Decimal(payload)
    if tag == "enum":
        cls, value = _rebuilder("enum", payload)
        return value if cls is None else cls(value)
    if tag == "set":
        return set(payload)
    if tag == "frozenset":
        return frozenset(payload)
    if tag == "tuple":
        return tuple(payload)
    if tag == "dataclass":
        cls, fields = _rebuilder("dataclass", payload)
        if not isinstance(fields, dict):
            raise ValueError("malformed 'dataclass' value in stored state: its fields are not a dict")
        if cls is None:
            return fields
        declared = dataclasses.fields(cls)
        init = {f.name for f in declared if f.init}
        obj = cls(**{k: v for k, v in fields.items() if k in init})
        # Fields without init= are set as they were; names the class does not declare are not.
        for f in declared:
            if not f.init and f.name in fields:
                object.__setattr__(obj, f.name, fields[f.name])
        return obj
    if tag == "pydantic":
        cls, fields = _rebuilder("pydantic", payload)
        return fields if cls is None else cls.model_validate(fields)
    if tag == "bytes":
        return base64.b64decode(payload)
    raise ValueError(f"unknown tagged value {tag!r} in stored state (written by a newer omium?)")


def _decoding(codec: str, decode: Callable[[], Any]) -> Any:
    """Runs ``decode``: stored bytes decode to a value or raise ValueError naming the problem,
    whatever they hold (a type error deep in a malformed tagged value, nesting deeper than the
    interpreter's recursion limit, an unhashable map key)."""
    try:
        return decode()
    except ValueError as e:
        if str(e):
            raise
        # msgpack's StackError (nested too deeply) says nothing of itself.
        raise ValueError(f"stored state cannot be decoded by the {codec} codec: {type(e).__name__} (nested too deeply?)") from e
    except (TypeError, AttributeError, IndexError, KeyError, ArithmeticError, RecursionError) as e:
        raise ValueError(f"stored state cannot be decoded by the {codec} codec: {type(e).__name__}: {e}") from e


class Codec(abc.ABC):
    """Encodes Python values to bytes and back. Subclass it (both methods) to plug in your own."""

    name: str

    @abc.abstractmethod
    def encode(self, value: Any) -> bytes:
        """The bytes of ``value``; raises TypeError for a value the codec cannot encode."""

    @abc.abstractmethod
    def decode(self, data: bytes) -> Any:
        """The value ``encode`` turned into ``data``."""


class MsgpackCodec(Codec):
    name = "msgpack"

    @staticmethod
    def _pack(value: Any) -> bytes:
        # strict_types: tuples and subclasses go through _default, so they come back as they were.
        return msgpack.packb(value, default=MsgpackCodec._default, use_bin_type=True, strict_types=True)

    @staticmethod
    def _default(obj: Any) -> Any:
        tagged = _tag(obj)
        if tagged is None:
            # Subclasses of the wire types (OrderedDict, str enums handled above, ...).
            for base in (dict, list, str, bytes, int, float):
                if isinstance(obj, base):
                    return base(obj)
            raise TypeError(f"cannot encode a value of type {type(obj).__module__}.{type(obj).__qualname__}")
        return msgpack.ExtType(_EXT_TAGGED, MsgpackCodec._pack(list(tagged)))

    @staticmethod
    def _ext_hook(code: int, data: bytes) -> Any:
        if code != _EXT_TAGGED:
            return msgpack.ExtType(code, data)
        tagged = msgpack.unpackb(data, ext_hook=MsgpackCodec._ext_hook, raw=False, strict_map_key=False, timestamp=3)
        if not (isinstance(tagged, list) and len(tagged) == 2 and isinstance(tagged[0], str)):
            raise ValueError("malformed tagged value in stored state: expected [tag, payload]")
        return _untag(tagged[0], tagged[1])

    def encode(self, value: Any) -> bytes:
        return self._pack(value)

    def decode(self, data: bytes) -> Any:
        # Node stores a step that returned `undefined` as no bytes at all.
        if not data:
            return None
        return _decoding("msgpack", lambda: msgpack.unpackb(data, ext_hook=self._ext_hook, raw=False, strict_map_key=False, timestamp=3))


class JsonCodec(Codec):
    """JSON with tagged objects ``{"__omium__": tag, "v": payload}`` for non-JSON types.

    A dict of the application's that has the key ``"__omium__"`` is stored as the tagged object
    ``{"__omium__": "dict", "v": [[key, value], ...]}``, so it comes back as it was and is never
    read as a tag.
    """

    name = "json"

    @staticmethod
    def _prepare(obj: Any) -> Any:
        if isinstance(obj, bytes):
            return {"__omium__": "bytes", "v": base64.b64encode(obj).decode()}
        if isinstance(obj, (str, int, float, bool)) or obj is None:
            return obj
        if type(obj) is dict:
            for k in obj:
                if not isinstance(k, str):
                    raise TypeError(f"cannot encode a dict key of type {type(k).__qualname__} as JSON (keys must be str)")
            if "__omium__" in obj:
                return {"__omium__": "dict", "v": [[k, JsonCodec._prepare(v)] for k, v in obj.items()]}
            return {k: JsonCodec._prepare(v) for k, v in obj.items()}
        if type(obj) is list:
            return [JsonCodec._prepare(v) for v in obj]
        tagged = _tag(obj)
        if tagged is None:
            raise TypeError(f"cannot encode a value of type {type(obj).__module__}.{type(obj).__qualname__}")
        return {"__omium__": tagged[0], "v": JsonCodec._prepare(tagged[1])}

    @staticmethod
    def _hook(d: dict) -> Any:
        # json calls this innermost first: the values inside ``v`` are decoded already.
        if "__omium__" in d and len(d) == 2 and "v" in d:
            tag, payload = d["__omium__"], d["v"]
            if tag == "dict":
                if not (isinstance(payload, list) and all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in payload)):
                    raise ValueError("malformed 'dict' value in stored state: expected [[key, value], ...]")
                return {k: v for k, v in payload}
            return _untag(tag, payload)
        return d

    def encode(self, value: Any) -> bytes:
        return json.dumps(self._prepare(value), separators=(",", ":"), allow_nan=True).encode()

    def decode(self, data: bytes) -> Any:
        return _decoding("json", lambda: json.loads(data, object_hook=self._hook))


class PickleCodec(Codec):
    """Anything picklable. Unsafe for stores you do not trust: unpickling imports modules and
    calls functions named by the stored bytes, so whoever can write the store can run code."""

    name = "pickle"

    def encode(self, value: Any) -> bytes:
        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError) as e:
            raise TypeError(str(e)) from e

    def decode(self, data: bytes) -> Any:
        return pickle.loads(data)  # noqa: S301 - opt-in, documented as unsafe


CODECS: dict[str, Callable[[], Codec]] = {"msgpack": MsgpackCodec, "json": JsonCodec, "pickle": PickleCodec}


def get_codec(codec: str | Codec) -> Codec:
    if isinstance(codec, Codec):
        return codec
    try:
        return CODECS[codec]()
    except KeyError:
        raise ValueError(f"unknown codec {codec!r}; expected one of {', '.join(map(repr, CODECS))}") from None


#: The checkpoint metadata key that names the codec a state was encoded with. Every binding
#: writes it, so a state recorded from Python decodes in Node and in ``omium checkpoint --value``.
CODEC_KEY = "omium.codec"


def recorded_codec(name: str | None, configured: Codec, what: str) -> Codec:
    """The codec that decodes what was recorded with codec ``name`` (a checkpoint's metadata or
    an execution's label ``CODEC_KEY``): ``configured`` when the names match or nothing was
    recorded (written before codecs were recorded), else the built-in codec of that name."""
    if name is None or name == configured.name:
        return configured
    if name in CODECS:
        return CODECS[name]()
    raise ValueError(
        f"{what} was recorded with the {name!r} codec, which this process does not have "
        f"(it has {', '.join(map(repr, CODECS))} and {configured.name!r}); pass a codec named {name!r}"
    )


def to_plain(obj: Any) -> Any:
    """A JSON-like view of a value, for conditions: dataclasses and models become dicts."""
    if isinstance(obj, (str, int, float, bool, bytes)) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if _is_pydantic(obj):
        return to_plain(obj.model_dump(mode="python"))
    if isinstance(obj, enum.Enum):
        return to_plain(obj.value)
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, (uuid.UUID, decimal.Decimal)):
        return str(obj)
    if hasattr(obj, "__dict__"):
        return {k: to_plain(v) for k, v in vars(obj).items() if not k.startswith("_")}
    return str(obj)
