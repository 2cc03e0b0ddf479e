"""CrewAI flow persistence on an Omium store.

``OmiumFlowPersistence`` is a CrewAI ``FlowPersistence``: use it wherever CrewAI takes one::

    from crewai.flow.flow import Flow, start
    from crewai.flow.persistence import persist
    from omium.crewai import OmiumFlowPersistence

    @persist(OmiumFlowPersistence(".omium"))
    class ReviewFlow(Flow[ReviewState]): ...

Each ``save_state`` is a checkpoint of the flow (thread = the flow's ``id``) in the Omium
store, written atomically with the store's durability; the state goes through Omium's
content-addressed blob store, so a large state that changed little costs only its changed
chunks. The storage is the same core module as ``omium.langgraph``
(``omium-storage/src/threads.rs``).

A drop-in for CrewAI's own ``SQLiteFlowPersistence``: a state is stored as the JSON text
CrewAI's persistence writes for it (a pydantic state's ``model_dump(mode="json")``; datetimes
and dates as ISO text, sets and tuples as lists, anything else — a ``Path``, a ``Decimal``, an
instance of your own class — as ``str(value)``), so every state CrewAI accepts is accepted, and
``load_state`` returns exactly what CrewAI's persistence returns for it. Flows restore their
typed fields from it as they do from SQLite (pydantic validates the JSON form back).

Pending human feedback behaves as in CrewAI's persistence: ``save_pending_feedback`` writes the
state and the feedback context (with the state as it was then) in one checkpoint; the marker
stays — later ``save_state`` checkpoints carry it — until ``clear_pending_feedback`` writes a
checkpoint without it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from crewai.flow.persistence.base import FlowPersistence
from pydantic import BaseModel, Field, PrivateAttr

from . import _omium, _runtime
from .codecs import get_codec

if TYPE_CHECKING:
    from crewai.flow.async_feedback.types import PendingFeedbackContext

__all__ = ["OmiumFlowPersistence"]

_NS = "crewai.flow"
_STATE = "state"
_PENDING = "pending_feedback"
# The state as it was when the feedback was asked for (what load_pending_feedback returns).
_PENDING_STATE = "pending_state"
_FORMAT = "omium.crewai/1"

# One open store per directory in this process: RocksDB lets one handle write a directory,
# and flows typically create a persistence object per class.
_stores: dict[str, _omium.Store] = {}
_stores_lock = threading.Lock()

_last_id = [0]
_id_lock = threading.Lock()


def _next_id() -> str:
    """Checkpoint ids that sort in save order: nanoseconds, never repeating in a process."""
    with _id_lock:
        now = max(time.time_ns(), _last_id[0] + 1)
        _last_id[0] = now
    return f"{now:020d}"


# What a value is stored as: the JSON text CrewAI's SQLite persistence writes. Values written by
# earlier versions are "msgpack" or "json" (Omium's codecs, typed); they read in the same JSON form.
_TEXT = "crewai-json"


def _json_default(obj: Any) -> Any:
    """What CrewAI's persistence writes for a value JSON has no form of (its own rules)."""
    if isinstance(obj, BaseModel):
        try:
            return obj.model_dump(mode="json")
        except Exception:
            return obj.model_dump(mode="python")
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, (dt.date, dt.datetime)):
        return obj.isoformat()
    return str(obj)


def _encode(value: Any) -> tuple[str, bytes]:
    return _TEXT, json.dumps(value, default=_json_default).encode()


def _decode(kind: str, data: bytes) -> Any:
    if kind == _TEXT:
        return json.loads(data)
    if kind in ("msgpack", "json"):
        # Stored typed by an earlier version: the same JSON form as what is stored now.
        return json.loads(json.dumps(get_codec(kind).decode(data), default=_json_default))
    raise ValueError(f"OmiumFlowPersistence: stored value has unknown encoding {kind!r}; expected {_TEXT!r}, 'msgpack' or 'json'")


def _open(path: str, durability: str) -> _omium.Store:
    key = os.path.abspath(path)
    if _runtime.is_initialized():
        shared = _runtime.store()
        if os.path.abspath(os.fspath(shared.path)) == key:
            return shared
    with _stores_lock:
        store = _stores.get(key)
        if store is None or store.closed:
            store = _omium.Store(key, durability=durability)
            _stores[key] = store
        return store


class OmiumFlowPersistence(FlowPersistence):
    """CrewAI flow state persistence on an Omium store.

    Args:
        path: store directory (default: ``$OMIUM_HOME``, else ``./.omium``). The store of
            ``omium.init()`` is reused when it is the same directory.
        durability: ``"sync"`` (default; fsync per save, survives power loss), ``"buffered"``
            (survives a process crash, not a machine crash) or ``"none"`` (tests).
    """

    persistence_type: str = Field(default="OmiumFlowPersistence")
    path: str = Field(default_factory=lambda: os.environ.get("OMIUM_HOME") or ".omium")
    durability: str = Field(default="sync")
    _threads: Any = PrivateAttr(default=None)

    def __init__(self, path: str | os.PathLike[str] | None = None, /, **kwargs: Any) -> None:
        if path is not None:
            kwargs["path"] = os.fspath(path)
        super().__init__(**kwargs)
        _omium.check_durability(self.durability)
        self.init_db()

    def init_db(self) -> None:
        """Opens (creating if needed) the store; the thread column families exist from then."""
        if self._threads is None:
            self._threads = _omium.Threads(_open(self.path, self.durability), self.durability)

    @property
    def store(self) -> _omium.Store:
        self.init_db()
        return self._threads.store

    @staticmethod
    def _state_dict(state_data: dict[str, Any] | BaseModel) -> dict[str, Any]:
        if isinstance(state_data, BaseModel):
            # As CrewAI's persistence: the JSON form, or the Python one when a field has none.
            try:
                return state_data.model_dump(mode="json")
            except Exception:
                return state_data.model_dump(mode="python")
        if isinstance(state_data, dict):
            return dict(state_data)
        raise ValueError(f"OmiumFlowPersistence: state_data must be a pydantic BaseModel or a dict, got {type(state_data).__name__}")

    def _put(
        self,
        flow_uuid: str,
        method_name: str,
        state_data: dict[str, Any] | BaseModel,
        pending: PendingFeedbackContext | None,
        *,
        keep_pending: bool = True,
    ) -> None:
        """One checkpoint of the flow: its state, and the pending feedback — new (``pending``),
        carried over from the latest checkpoint (``keep_pending``), or none."""
        if not isinstance(flow_uuid, str) or not flow_uuid:
            raise ValueError(f"OmiumFlowPersistence: flow_uuid must be a non-empty str, got {flow_uuid!r}")
        self.init_db()
        checkpoint_id = _next_id()
        state = _encode(self._state_dict(state_data))
        values = [(_STATE, checkpoint_id, *state)]
        if pending is not None:
            values.append((_PENDING, checkpoint_id, *_encode(pending.to_dict())))
            values.append((_PENDING_STATE, checkpoint_id, *state))
        elif keep_pending:
            row = self._threads.get(flow_uuid, _NS, None)
            carried = {} if row is None else {channel: (kind, value) for channel, _v, kind, value in row[6]}
            for channel in (_PENDING, _PENDING_STATE):
                if channel in carried:
                    values.append((channel, checkpoint_id, *carried[channel]))
        meta = {"method_name": method_name, "pending_feedback": any(v[0] == _PENDING for v in values)}
        self._threads.put(
            flow_uuid,
            _NS,
            checkpoint_id,
            None,
            (_FORMAT, b""),
            _encode(meta),
            [("method_name", json.dumps(method_name))],
            None,
            [(channel, version) for channel, version, _, _ in values],
            values,
        )

    def _latest(self, flow_uuid: str) -> dict[str, Any] | None:
        """The channels of the flow's newest checkpoint, decoded."""
        self.init_db()
        row = self._threads.get(str(flow_uuid), _NS, None)
        if row is None:
            return None
        return {channel: _decode(kind, value) for channel, _v, kind, value in row[6]}

    def save_state(self, flow_uuid: str, method_name: str, state_data: dict[str, Any] | BaseModel) -> None:
        """Records the flow's state after ``method_name`` completed (one atomic write)."""
        self._put(flow_uuid, method_name, state_data, None)

    def load_state(self, flow_uuid: str) -> dict[str, Any] | None:
        """The most recently saved state of the flow (its JSON form, as CrewAI's persistence
        returns it), or None."""
        latest = self._latest(flow_uuid)
        state = None if latest is None else latest.get(_STATE)
        return state if isinstance(state, dict) else None

    def save_pending_feedback(
        self,
        flow_uuid: str,
        context: PendingFeedbackContext,
        state_data: dict[str, Any] | BaseModel,
    ) -> None:
        """Records the state and the pending feedback context in one checkpoint."""
        self._put(flow_uuid, context.method_name, state_data, context)

    def load_pending_feedback(self, flow_uuid: str) -> tuple[dict[str, Any], PendingFeedbackContext] | None:
        """``(state, context)`` when the flow's latest checkpoint waits for feedback."""
        from crewai.flow.async_feedback.types import PendingFeedbackContext

        latest = self._latest(flow_uuid)
        if latest is None or _PENDING not in latest:
            return None
        # Checkpoints of earlier versions kept the state of the pending checkpoint only.
        return latest.get(_PENDING_STATE, latest[_STATE]), PendingFeedbackContext.from_dict(latest[_PENDING])

    def clear_pending_feedback(self, flow_uuid: str) -> None:
        """Writes a checkpoint of the same state without the pending marker."""
        latest = self._latest(flow_uuid)
        if latest is None or _PENDING not in latest:
            return
        method = latest[_PENDING].get("method_name", "clear_pending_feedback")
        self._put(flow_uuid, method, latest[_STATE], None, keep_pending=False)

    def history(self, flow_uuid: str) -> list[dict[str, Any]]:
        """Every saved state of the flow, newest first: ``{"checkpoint_id", "method_name",
        "pending_feedback", "state"}`` (time travel: restore one with ``save_state``)."""
        self.init_db()
        out = []
        for row in self._threads.list(thread_id=str(flow_uuid), ns=_NS):
            meta = _decode(*row[5])
            values = {channel: (kind, value) for channel, _v, kind, value in row[6]}
            out.append(
                {
                    "checkpoint_id": row[2],
                    "method_name": meta.get("method_name"),
                    "pending_feedback": bool(meta.get("pending_feedback")),
                    "state": _decode(*values[_STATE]),
                }
            )
        return out
