"""State codecs: how step results and checkpoint state become bytes.

``msgpack`` (the default) and ``json`` round-trip dict, list, tuple, str, bytes, int, float,
bool, None, datetime/date/time/timedelta, Decimal, UUID, set/frozenset, enums, dataclasses and
pydantic models exactly. ``pickle`` handles anything picklable, but unpickling runs code chosen
by whoever wrote the store: use it only for stores you trust.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import datetime as _dt
import decimal
import enum
import importlib
import json
import pickle
import uuid
from collections.abc import Callable
from typing import Any

import msgpack

__all__ = ["Codec", "get_codec", "CODECS", "to_plain"]

# msgpack extension type carrying a tagged value: ext data = msgpack([tag, payload]).
_EXT_TAGGED = 1


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _import(path: str) -> Any:
    module, _, qual = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def _is_pydantic(obj: Any) -> bool:
    return hasattr(type(obj), "model_fields") and hasattr(obj, "model_dump")


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
        return "enum", [_qualname(type(obj)), obj.value]
    if isinstance(obj, frozenset):
        return "frozenset", list(obj)
    if isinstance(obj, set):
        return "set", list(obj)
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return "tuple", list(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return "dataclass", [_qualname(type(obj)), fields]
    if _is_pydantic(obj):
        return "pydantic", [_qualname(type(obj)), obj.model_dump(mode="python")]
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
        return _import(payload[0])(payload[1])
    if tag == "set":
        return set(payload)
    if tag == "frozenset":
        return frozenset(payload)
    if tag == "tuple":
        return tuple(payload)
    if tag == "dataclass":
        cls = _import(payload[0])
        init = {f.name for f in dataclasses.fields(cls) if f.init}
        obj = cls(**{k: v for k, v in payload[1].items() if k in init})
        for k, v in payload[1].items():
            if k not in init:
                object.__setattr__(obj, k, v)
        return obj
    if tag == "pydantic":
        return _import(payload[0]).model_validate(payload[1])
    if tag == "bytes":
        return base64.b64decode(payload)
    raise ValueError(f"unknown tagged value {tag!r} in stored state (written by a newer omium?)")


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
    def _default(obj: Any) -> Any:
        tagged = _tag(obj)
        if tagged is None:
            # Subclasses of the wire types (OrderedDict, str enums handled above, ...).
            for base in (dict, list, str, bytes, int, float):
                if isinstance(obj, base):
                    return base(obj)
            raise TypeError(f"cannot encode a value of type {type(obj).__module__}.{type(obj).__qualname__}")
        return msgpack.ExtType(
            _EXT_TAGGED, msgpack.packb(list(tagged), default=MsgpackCodec._default, use_bin_type=True, strict_types=True)
        )

    @staticmethod
    def _ext_hook(code: int, data: bytes) -> Any:
        if code != _EXT_TAGGED:
            return msgpack.ExtType(code, data)
        tag, payload = msgpack.unpackb(data, ext_hook=MsgpackCodec._ext_hook, raw=False, strict_map_key=False)
        return _untag(tag, payload)

    def encode(self, value: Any) -> bytes:
        # strict_types: tuples and subclasses go through _default, so they come back as they were.
        return msgpack.packb(value, default=self._default, use_bin_type=True, strict_types=True)

    def decode(self, data: bytes) -> Any:
        return msgpack.unpackb(data, ext_hook=self._ext_hook, raw=False, strict_map_key=False)


class JsonCodec(Codec):
    """JSON with tagged objects ``{"__omium__": tag, "v": payload}`` for non-JSON types."""

    name = "json"

    @staticmethod
    def _prepare(obj: Any) -> Any:
        if isinstance(obj, bytes):
            return {"__omium__": "bytes", "v": base64.b64encode(obj).decode()}
        if isinstance(obj, (str, int, float, bool)) or obj is None:
            return obj
        if isinstance(obj, dict) and type(obj) is dict:
            for k in obj:
                if not isinstance(k, str):
                    raise TypeError(f"cannot encode a dict key of type {type(k).__qualname__} as JSON (keys must be str)")
            return {k: JsonCodec._prepare(v) for k, v in obj.items()}
        if type(obj) is list:
            return [JsonCodec._prepare(v) for v in obj]
        tagged = _tag(obj)
        if tagged is None:
            raise TypeError(f"cannot encode a value of type {type(obj).__module__}.{type(obj).__qualname__}")
        return {"__omium__": tagged[0], "v": JsonCodec._prepare(tagged[1])}

    @staticmethod
    def _hook(d: dict) -> Any:
        if "__omium__" in d and len(d) == 2 and "v" in d:
            return _untag(d["__omium__"], d["v"])
        return d

    def encode(self, value: Any) -> bytes:
        return json.dumps(self._prepare(value), separators=(",", ":"), allow_nan=True).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data, object_hook=self._hook)


class PickleCodec(Codec):
    """Anything picklable. Unsafe for stores you do not trust: unpickling runs code."""

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
