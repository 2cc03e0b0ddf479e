"""LangGraph checkpointer backed by an Omium store.

``OmiumSaver`` is a LangGraph ``BaseCheckpointSaver`` (sync and async) that keeps threads in
an embedded Omium store (RocksDB, no server)::

    from omium.langgraph import OmiumSaver

    saver = OmiumSaver(".omium", durability="sync")
    graph = builder.compile(checkpointer=saver)
    graph.invoke(inputs, {"configurable": {"thread_id": "t1"}})

Values are serialized by LangGraph's own serializer (``saver.serde``); Omium stores the bytes.
Channel values are stored once per (thread, namespace, channel, version) through Omium's
content-addressed blob store: a channel that did not change in a step costs nothing, and a
message list that grew by one message shares all its chunks but the last few with the
previous version. The storage logic lives in the Rust core (``omium-storage/src/threads.rs``);
this module only converts LangGraph's dicts to and from it.

Async methods run a store call that waits for an fsync (``sync`` durability) and every read on a
worker thread (the native layer releases the GIL), so an fsync never blocks the event loop;
``buffered`` writes, tens of microseconds, run on the loop itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from . import _omium

__all__ = ["OmiumSaver"]

_EMPTY = "empty"
_json_str = json.encoder.encode_basestring_ascii
# One encoder, built once: json.dumps with options builds a new one per call (~5 µs).
_json_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode


def _field(value: Any) -> str | None:
    """Canonical JSON of a metadata value, the form ``list(filter=...)`` compares; None for a
    value JSON cannot express (such keys are filtered in Python instead)."""
    # Fast paths give exactly what json.dumps gives (this runs for every key of every put).
    kind = type(value)
    if kind is str:
        return _json_str(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    try:
        return _json_canonical(value)
    except (TypeError, ValueError):
        return None


def _configurable(config: RunnableConfig, what: str) -> dict[str, Any]:
    conf = config.get("configurable") if isinstance(config, dict) else None
    if not isinstance(conf, dict) or "thread_id" not in conf:
        raise ValueError(f'{what}: config needs configurable.thread_id, e.g. {{"configurable": {{"thread_id": "t1"}}}}; got {config!r}')
    return conf


class OmiumSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer on an Omium store.

    Args:
        path: store directory; opened (created if needed) for writing. Only one process can
            write a store; to share the store of ``omium.init()``, pass ``store=`` instead.
        store: an open ``omium.Store`` to use (e.g. ``omium._runtime.store()``).
        durability: ``"sync"`` (fsync before a call returns, survives power loss),
            ``"buffered"`` (survives a crash of the process, not of the machine) or ``"none"``
            (tests); default: the store's.
        serde: LangGraph serializer; default LangGraph's ``JsonPlusSerializer``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        store: _omium.Store | None = None,
        durability: str | None = None,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if (path is None) == (store is None):
            raise ValueError("OmiumSaver needs exactly one of path= (a store directory) or store= (an open omium.Store)")
        if durability is not None:
            _omium.check_durability(durability)
        self._owns_store = store is None
        if store is None:
            store = _omium.Store(os.fspath(path), durability=durability or "sync")
        self.store = store
        self._threads = _omium.Threads(store, durability)
        # A write that does not wait for an fsync takes tens of microseconds: the async
        # methods make it on the event loop, since a hop to a worker thread costs more.
        self._writes_inline = (durability or store.durability) != "sync"

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the store if this saver opened it."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> OmiumSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> OmiumSaver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- conversions -----------------------------------------------------------------------

    def _tuple(self, row: tuple) -> CheckpointTuple:
        thread_id, ns, checkpoint_id, parent_id, ckpt, meta, values, writes = row
        checkpoint = self.serde.loads_typed(ckpt)
        checkpoint["channel_values"] = {
            channel: self.serde.loads_typed((vtype, value)) for channel, _version, vtype, value in values if vtype != _EMPTY
        }
        return CheckpointTuple(
            config={
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": checkpoint_id,
                }
            },
            checkpoint=checkpoint,
            metadata=self.serde.loads_typed(meta),
            parent_config=(
                {
                    "configurable": {
                        "thread_id": thread_id,
                        "checkpoint_ns": ns,
                        "checkpoint_id": parent_id,
                    }
                }
                if parent_id
                else None
            ),
            pending_writes=[(task_id, channel, self.serde.loads_typed((vtype, value))) for task_id, channel, vtype, value, _path in writes],
        )

    def _put_args(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[tuple, RunnableConfig]:
        conf = _configurable(config, "put")
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        c = dict(checkpoint)
        values: dict[str, Any] = c.pop("channel_values", {})
        new_values = [
            (
                channel,
                str(version),
                *(self.serde.dumps_typed(values[channel]) if channel in values else (_EMPTY, b"")),
            )
            for channel, version in new_versions.items()
        ]
        meta = get_checkpoint_metadata(config, metadata)
        fields = [(k, f) for k, v in meta.items() if (f := _field(v)) is not None]
        run_id = meta.get("run_id")
        args = (
            thread_id,
            ns,
            checkpoint["id"],
            conf.get("checkpoint_id"),
            self.serde.dumps_typed(c),
            self.serde.dumps_typed(meta),
            fields,
            None if run_id is None else str(run_id),
            [(ch, str(v)) for ch, v in checkpoint["channel_versions"].items()],
            new_values,
        )
        next_config: RunnableConfig = {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }
        return args, next_config

    def _writes_args(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> tuple:
        conf = _configurable(config, "put_writes")
        if not conf.get("checkpoint_id"):
            raise ValueError(f"put_writes: config needs configurable.checkpoint_id (the checkpoint the writes belong to); got {config!r}")
        rows = [(WRITES_IDX_MAP.get(channel, idx), channel, *self.serde.dumps_typed(value)) for idx, (channel, value) in enumerate(writes)]
        return (
            str(conf["thread_id"]),
            conf.get("checkpoint_ns", ""),
            conf["checkpoint_id"],
            task_id,
            task_path,
            rows,
        )

    def _list_query(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The native query, and the filters only Python can check (values JSON cannot
        express); with those, the limit is applied here after filtering."""
        conf = (config or {}).get("configurable") or {}
        core_filter: list[tuple[str, str]] = []
        py_filter: dict[str, Any] = {}
        for k, v in (filter or {}).items():
            f = _field(v)
            if f is None:
                py_filter[k] = v
            else:
                core_filter.append((k, f))
        query = {
            "thread_id": None if conf.get("thread_id") is None else str(conf["thread_id"]),
            "ns": conf.get("checkpoint_ns"),
            "checkpoint_id": conf.get("checkpoint_id"),
            "before": get_checkpoint_id(before) if before else None,
            "filter": core_filter,
            "limit": None if py_filter else limit,
        }
        return query, py_filter

    def _listed(self, rows: list, py_filter: dict[str, Any], limit: int | None) -> Iterator[CheckpointTuple]:
        n = 0
        for row in rows:
            if limit is not None and n >= limit:
                return
            t = self._tuple(row)
            if py_filter and not all(t.metadata.get(k) == v for k, v in py_filter.items()):
                continue
            n += 1
            yield t

    # -- sync API --------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = _configurable(config, "get_tuple")
        row = self._threads.get(str(conf["thread_id"]), conf.get("checkpoint_ns", ""), get_checkpoint_id(config))
        return None if row is None else self._tuple(row)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        query, py_filter = self._list_query(config, filter, before, limit)
        yield from self._listed(self._threads.list(**query), py_filter, limit)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        args, next_config = self._put_args(config, checkpoint, metadata, new_versions)
        self._threads.put(*args)
        return next_config

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._threads.put_writes(*self._writes_args(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._threads.delete_thread(str(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._threads.delete_for_runs([str(r) for r in run_ids])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._threads.copy_thread(str(source_thread_id), str(target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f'prune: unknown strategy {strategy!r}; expected "keep_latest" or "delete"')
        self._threads.prune([str(t) for t in thread_ids], strategy == "keep_latest")

    def get_next_version(self, current: str | int | None, channel: None = None) -> str:
        """Versions are zero-padded so they sort as strings: ``<counter>.<random>``."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(str(current).split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # -- async API: the same calls, on a worker thread when they may wait for the disk ------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        query, py_filter = self._list_query(config, filter, before, limit)
        rows = await asyncio.to_thread(lambda: self._threads.list(**query))
        for t in self._listed(rows, py_filter, limit):
            yield t

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        args, next_config = self._put_args(config, checkpoint, metadata, new_versions)
        if self._writes_inline:
            self._threads.put(*args)
        else:
            await asyncio.to_thread(self._threads.put, *args)
        return next_config

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        args = self._writes_args(config, writes, task_id, task_path)
        if self._writes_inline:
            self._threads.put_writes(*args)
        else:
            await asyncio.to_thread(self._threads.put_writes, *args)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)
