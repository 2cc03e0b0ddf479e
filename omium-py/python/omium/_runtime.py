"""The process-wide store handle and the per-task execution context."""

from __future__ import annotations

import contextvars
import os
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import _omium
from .codecs import CODEC_KEY, Codec, get_codec, register_type
from .errors import OmiumError


@dataclass
class Config:
    store: _omium.Store
    project: str | None
    codec: Codec
    # The store syncs to a cluster (init(remote=...)).
    remote: bool = False
    # How long a run holds its execution without a step before another process may take it.
    lease_ttl: float = 30.0


def _nodes(remote: str | list[str]) -> list[str]:
    if isinstance(remote, str):
        nodes = [n.strip() for n in remote.split(",") if n.strip()]
    elif isinstance(remote, (list, tuple)) and all(isinstance(n, str) for n in remote):
        nodes = list(remote)
    else:
        raise TypeError(f"omium.init(remote=...) must be 'host:port,host:port' or a list of such strings, not {remote!r}")
    if not nodes:
        raise ValueError("omium.init(remote=...) names no node; expected 'host:port,host:port'")
    return nodes


_lock = threading.Lock()
_config: Config | None = None


@dataclass
class ExecutionContext:
    """The execution a task is running: its native run and the codec of its states."""

    run: _omium.Run
    execution_id: str
    codec: Codec
    workflow: str | None = None
    tenant: str = "default"
    # Rollbacks a recovery policy made in this call of the workflow (a rule rolls back at most
    # `max_times`).
    rollbacks: int = 0
    # Steps nested in another step are identified by their parent's position and a counter,
    # so replaying the parent (without running its body) does not shift later positions.
    owns_run: bool = True


current: contextvars.ContextVar[ExecutionContext | None] = contextvars.ContextVar("omium_execution", default=None)
# Key of the step whose body is running, when inside one.
current_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("omium_step", default=None)
# Name of the step whose body is running, when inside one.
current_step_name: contextvars.ContextVar[str | None] = contextvars.ContextVar("omium_step_name", default=None)
# What the step whose body is running spent (omium.record_spend), recorded with its checkpoint.
current_spend: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("omium_spend", default=None)
# Execution id chosen by set_execution_id() for code that has no workflow.
chosen_execution_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("omium_execution_id", default=None)


# Called before the store closes (omium.consensus stops its embedded Raft group there).
_before_close: list[Any] = []


def _closing() -> None:
    for hook in _before_close:
        hook()


def init(
    path: str | os.PathLike[str] | None = None,
    project: str | None = None,
    durability: str | None = None,
    codec: str | Codec = "msgpack",
    *,
    read_only: bool = False,
    tracing: bool = True,
    capture_content: bool | None = None,
    url: str | None = None,
    api_key: str | None = None,
    remote: str | list[str] | None = None,
    remote_durability: str = "background",
    objects: str | None = None,
    objects_endpoint: str | None = None,
    lease_ttl: float = 30.0,
    codec_types: Iterable[type] | None = None,
) -> _omium.Store:
    """Opens the store this process records into.

    ``path`` defaults to ``$OMIUM_HOME``, else ``./.omium``. ``durability`` is ``"sync"`` (the
    default: fsync before a step returns), ``"buffered"`` (survives a crash of the process, not of
    the machine) or ``"none"``. ``codec`` is ``"msgpack"`` (default), ``"json"`` or ``"pickle"``
    (only for stores you trust). Calling ``init`` again closes the previous store.
    ``tracing`` records spans of workflows, steps, checkpoints, LLM and tool calls;
    ``capture_content`` also records inputs, outputs and messages (through the redaction hook).
    When ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set,
    spans are also exported over OTLP/HTTP, and the store's analytics too when
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` names where.

    ``url`` uses an ``omium serve`` daemon instead of opening a directory
    (``"unix:///path/omium.sock"`` or ``"http://127.0.0.1:7700"``; default ``$OMIUM_URL``): several
    worker processes share its store, with the same semantics as an embedded one (an execution
    runs in one worker at a time). ``api_key`` (default ``$OMIUM_API_KEY``) is sent as a bearer
    token; the daemon requires one on any address but loopback.

    ``remote`` syncs the local store to an Omium cluster (``"host:port,host:port"`` or a list;
    default ``$OMIUM_REMOTE``): every change of an execution is pushed with the chunks the
    cluster lacks, in the background (``remote_durability="background"``, the default) or before
    each step returns (``"sync"``). Another machine then takes an execution over with
    :func:`omium.pull` or :func:`omium.recover`. ``objects`` (``"s3://bucket/prefix"``, default
    ``$OMIUM_OBJECTS``) puts the chunks in S3-compatible object storage instead of the Raft log;
    ``objects_endpoint`` (default ``$AWS_ENDPOINT``) names a non-AWS endpoint, and credentials come
    from the usual ``AWS_*`` variables.

    ``lease_ttl`` (seconds, default 30) is how long a run holds its execution past its last
    step: when its process dies, another process (or, with ``remote``, another machine) may take
    the execution over once it expires.

    ``codec_types`` lists enum, dataclass and pydantic model classes the ``msgpack`` and ``json``
    codecs may rebuild from stored values (as :func:`omium.register_type` does; the registry is
    process-wide). Types this process encodes need no registration; a stored value of a type that
    is not registered decodes as plain data, with an ``omium.UnregisteredTypeWarning``.
    """
    if codec_types is not None:
        if isinstance(codec_types, (type, str)):
            raise TypeError(f"omium.init(codec_types=...) must be a list of classes, e.g. codec_types=[Tier], not {codec_types!r}")
        classes = list(codec_types)
        if classes:
            register_type(*classes)
    if isinstance(lease_ttl, bool) or not isinstance(lease_ttl, (int, float)) or not lease_ttl > 0:
        raise ValueError(f"omium.init(lease_ttl=...) must be a positive number of seconds, not {lease_ttl!r}")
    if url is None and path is None:
        url = os.environ.get("OMIUM_URL") or None
    if remote is None:
        remote = os.environ.get("OMIUM_REMOTE") or None
    if objects is None:
        objects = os.environ.get("OMIUM_OBJECTS") or None
    if url is not None:
        if remote is not None:
            raise ValueError("omium.init(): remote= syncs a store this process opens; with url= the daemon (omium serve) owns the store")
        return _init_remote(
            url, api_key or os.environ.get("OMIUM_API_KEY"), project, codec, durability, read_only, tracing, capture_content
        )
    global _config
    if path is None:
        path = os.environ.get("OMIUM_HOME") or ".omium"
    if durability is not None and not isinstance(durability, str):
        raise TypeError(f"omium.init(durability=...) must be a str ('sync', 'buffered' or 'none'), not {type(durability).__name__}")
    chosen = get_codec(codec)
    durability = _omium.check_durability(durability or "sync")
    path = os.fspath(path)
    with _lock:
        # Bad arguments fail above and leave the current store open. Re-opening the same
        # directory must close it first (one writer per directory); another one opens first,
        # so a failure to open it leaves the current store in place.
        if _config is not None and os.path.abspath(os.fspath(_config.store.path)) == os.path.abspath(path):
            _closing()
            _config.store.close()
            _config = None
        store = _omium.Store(path, durability=durability, read_only=read_only)
        if remote is not None:
            try:
                store.attach_sync(
                    _nodes(remote),
                    durability=remote_durability,
                    objects=objects,
                    objects_endpoint=objects_endpoint or os.environ.get("AWS_ENDPOINT") or None,
                )
            except BaseException:
                store.close()
                raise
        if _config is not None:
            _closing()
            _config.store.close()
        _config = Config(store=store, project=project, codec=chosen, remote=remote is not None, lease_ttl=float(lease_ttl))
    from . import _trace

    _trace.configure(enabled=tracing, capture_content=capture_content)
    if not read_only and (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        _trace.enable_otlp_export()
    return store


def _init_remote(
    url: str,
    api_key: str | None,
    project: str | None,
    codec: str | Codec,
    durability: str | None,
    read_only: bool,
    tracing: bool,
    capture_content: bool | None,
) -> _omium.Store:
    global _config
    if not isinstance(url, str) or not url:
        raise TypeError(f"omium.init(url=...) must be a non-empty str, not {url!r}")
    if durability is not None or read_only:
        raise ValueError("omium.init(url=...): durability and read_only are the daemon's (omium serve); do not pass them with url")
    chosen = get_codec(codec)
    store = _omium.Store.connect(url, api_key)
    with _lock:
        if _config is not None:
            _closing()
            _config.store.close()
        _config = Config(store=store, project=project, codec=chosen)
    from . import _trace

    _trace.configure(enabled=tracing, capture_content=capture_content)
    return store


def shutdown() -> None:
    """Closes the store opened by :func:`init`. Recorded steps are already durable."""
    global _config
    with _lock:
        if _config is not None:
            if not _config.store.read_only:
                # Spans are stored in the background: store them (and give the exporter a
                # moment to send them) before the store closes.
                _config.store.flush_export(5.0)
            if _config.remote:
                # Background pushes still queued go out before the store closes.
                try:
                    _config.store.sync_flush(10.0)
                except OmiumError as e:
                    warnings.warn(f"omium.shutdown(): changes not pushed to the cluster: {e}", RuntimeWarning, stacklevel=2)
            _closing()
            _config.store.close()
            _config = None


def config() -> Config:
    cfg = _config
    if cfg is None:
        raise OmiumError("omium is not initialised: call omium.init(path=...) first (or set OMIUM_HOME and call omium.init())")
    return cfg


def store() -> _omium.Store:
    return config().store


def is_initialized() -> bool:
    return _config is not None


def begin(
    execution_id: str,
    workflow: str | None,
    input_bytes: bytes | None,
    codec: Codec,
    labels: dict[str, str] | None = None,
    agent: str = "main",
) -> ExecutionContext:
    cfg = config()
    run = cfg.store.begin(
        execution_id,
        workflow=workflow or "",
        tenant=cfg.project or "default",
        input=input_bytes,
        # The codec of the input and output (and of edited states), for every binding's readers.
        labels={CODEC_KEY: codec.name, **(labels or {})},
        agent=agent,
        lease_ttl=cfg.lease_ttl,
    )
    return ExecutionContext(run=run, execution_id=execution_id, codec=codec, workflow=workflow, tenant=cfg.project or "default")


def decode_value(codec: Codec, data: bytes) -> Any:
    return codec.decode(data)
