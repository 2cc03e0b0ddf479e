"""Tracing: ``@omium.trace`` / ``with omium.trace(...)`` user spans, the automatic spans of
workflows, steps, checkpoints, rollbacks and recovery actions, W3C ``traceparent`` inject and
extract, and the content-capture switch with its redaction hook.

Spans follow the OpenTelemetry model; each execution is one trace (its id derives from the
execution id). A finished span is handed to the core in one call and stored and exported in
the background: recording never waits for the disk or the network.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import os
import time
from collections.abc import Callable
from typing import Any

from . import _omium, _runtime

# The span whose body is running: (trace_id, span_id, execution_id).
_current: contextvars.ContextVar[tuple[bytes, bytes, str] | None] = contextvars.ContextVar("omium_span", default=None)
# A traceparent extracted from an incoming request, for the next root span.
_remote: contextvars.ContextVar[tuple[bytes, bytes] | None] = contextvars.ContextVar("omium_remote_parent", default=None)

_record = _omium.record_span
_new_span_id = _omium.new_span_id
_time_ns = time.time_ns

_state: dict[str, Any] = {
    "enabled": True,
    "capture_content": os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").lower() == "true",
    "redact": None,
    "max_value": 4096,
}


def configure(*, enabled: bool | None = None, capture_content: bool | None = None, redact: Callable[[Any], Any] | None = None) -> None:
    """Switches tracing on or off, and message-content capture (off by default; also
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``). ``redact`` receives every
    captured input, output and message before it is stored and returns what to keep."""
    if enabled is not None:
        _state["enabled"] = bool(enabled)
    if capture_content is not None:
        _state["capture_content"] = bool(capture_content)
    if redact is not None:
        if not callable(redact):
            raise TypeError(f"omium.configure_tracing(redact=...): expected a callable, not {type(redact).__name__}")
        _state["redact"] = redact


def content(value: Any) -> str:
    """A captured value as text, redacted and truncated."""
    r = _state["redact"]
    if r is not None:
        value = r(value)
    try:
        text = value if isinstance(value, str) else json.dumps(value, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    limit = _state["max_value"]
    return text if len(text) <= limit else text[:limit] + "…"


class Span:
    """A span being recorded: ``set_attribute``, ``add_event``, ``record_exception``; it ends
    when its ``with`` block or decorated call does (or ``end()``)."""

    __slots__ = (
        "_token",
        "agent",
        "attributes",
        "ended",
        "events",
        "execution_id",
        "kind",
        "name",
        "parent",
        "span_id",
        "span_type",
        "start_ns",
        "status",
        "status_message",
        "trace_id",
    )

    def __init__(
        self,
        name: str,
        span_type: str = "function",
        *,
        kind: str = "internal",
        attributes: dict[str, Any] | None = None,
        agent: str = "",
        execution_id: str | None = None,
    ) -> None:
        parent = _current.get() if execution_id is None else None
        if parent is not None:
            self.trace_id, self.parent, self.execution_id = parent
        else:
            ctx = _runtime.current.get()
            self.execution_id = execution_id if execution_id is not None else (ctx.execution_id if ctx is not None else "")
            remote = _remote.get()
            if remote is not None:
                self.trace_id, self.parent = remote
            else:
                self.trace_id = _trace_id_of(self.execution_id) if self.execution_id else _omium.new_trace_id()
                self.parent = None
        self.span_id = _new_span_id()
        self.name = name
        self.span_type = span_type
        self.kind = kind
        self.agent = agent
        self.attributes: dict[str, Any] = dict(attributes) if attributes else {}
        self.events: list[tuple[str, int, dict[str, Any] | None]] = []
        self.status = "unset"
        self.status_message = ""
        self.start_ns = _time_ns()
        self.ended = False
        self._token: contextvars.Token | None = None

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        self.attributes.update(attributes)

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        self.events.append((name, time.time_ns(), attributes))

    def record_exception(self, e: BaseException) -> None:
        self.events.append(("exception", time.time_ns(), {"exception.type": type(e).__qualname__, "exception.message": str(e)}))
        self.status = "error"
        self.status_message = f"{type(e).__name__}: {e}"

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id.hex()}-{self.span_id.hex()}-01"

    def __enter__(self) -> Span:
        self._token = _current.set((self.trace_id, self.span_id, self.execution_id))
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        if exc is not None and self.status != "error":
            self.record_exception(exc)
        self.end()

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def end(self, end_ns: int | None = None) -> None:
        """Ends the span now, or at ``end_ns`` (Unix nanoseconds) when the end was observed
        earlier, and records it."""
        if self.ended:
            return
        self.ended = True
        if self.status == "unset":
            self.status = "ok"
        cfg = _runtime._config
        if cfg is None or not _state["enabled"]:
            return
        _record(
            cfg.store,
            self.trace_id,
            self.span_id,
            self.parent,
            self.name,
            self.span_type,
            self.execution_id,
            self.agent,
            self.start_ns,
            end_ns if end_ns is not None else _time_ns(),
            self.status,
            self.status_message,
            self.kind,
            self.attributes,
            self.events or None,
        )


now_ns = time.time_ns

# Trace ids of executions (derived from the id: the same on every run), for the spans of steps.
_trace_ids: dict[str, bytes] = {}


def _trace_id_of(execution_id: str) -> bytes:
    t = _trace_ids.get(execution_id)
    if t is None:
        if len(_trace_ids) >= 4096:
            _trace_ids.clear()
        t = _trace_ids[execution_id] = _omium.trace_id_of(execution_id)
    return t


def leaf_span(name: str, span_type: str, start_ns: int, attributes: dict[str, Any], agent: str | None = None) -> None:
    """Records a finished span with no children (a checkpoint), child of the current span,
    without building a :class:`Span` object: the cheap path for spans Omium makes per step."""
    cfg = _runtime._config
    if cfg is None or not _state["enabled"]:
        return
    cur = _current.get()
    if cur is not None:
        trace_id, parent, execution_id = cur
    else:
        ctx = _runtime.current.get()
        execution_id = ctx.execution_id if ctx is not None else ""
        trace_id, parent = (_trace_id_of(execution_id) if execution_id else _omium.new_trace_id()), None
    _record(
        cfg.store,
        trace_id,
        _new_span_id(),
        parent,
        name,
        span_type,
        execution_id,
        agent or "",
        start_ns,
        _time_ns(),
        "ok",
        "",
        "internal",
        attributes,
        None,
    )


def enabled() -> bool:
    return _state["enabled"] and _runtime.is_initialized()


# A step's span, as `step_span` starts it: a `Span` when content capture is on (its input and
# output become attributes), else a tuple `(trace_id, span_id, parent, execution_id, start_ns,
# token, name, agent, seq)`; the record of the step's checkpoint ends that span natively, and
# only a step that fails builds a `Span` of it (the body cannot reach its step's span).
StepSpan = Span | tuple


def step_span(name: str, seq: int, agent: str | None, args: tuple, kwargs: dict, execution_id: str) -> StepSpan | None:
    """Starts the span of a step run of ``execution_id`` (None when tracing is off). It runs
    once per step: nothing is built that a step which succeeds does not need."""
    if not (_state["enabled"] and _runtime._config is not None):
        return None
    parent = _current.get()
    if parent is not None:
        trace_id, parent_id, execution_id = parent
    else:
        remote = _remote.get()
        if remote is not None:
            trace_id, parent_id = remote
        else:
            trace_id = _trace_id_of(execution_id) if execution_id else _omium.new_trace_id()
            parent_id = None
    span_id = _new_span_id()
    token = _current.set((trace_id, span_id, execution_id))
    if not _state["capture_content"]:
        return (trace_id, span_id, parent_id, execution_id, _time_ns(), token, name, agent or "", seq)
    captured = content({"args": list(args), "kwargs": kwargs})  # before the span starts
    s = _step_span_object(trace_id, span_id, parent_id, execution_id, token, name, agent or "", seq, _time_ns())
    s.attributes["input.value"] = captured
    return s


def _step_span_object(
    trace_id: bytes, span_id: bytes, parent: bytes | None, execution_id: str, token: Any, name: str, agent: str, seq: int, start_ns: int
) -> Span:
    """A step's `Span`, its fields set directly (what ``Span.__init__`` would find out)."""
    s = object.__new__(Span)
    s.trace_id, s.span_id, s.parent, s.execution_id, s._token = trace_id, span_id, parent, execution_id, token
    s.name, s.span_type, s.kind, s.agent = name, "step", "internal", agent
    s.attributes, s.events, s.status, s.status_message, s.ended = {"omium.seq": seq}, [], "unset", "", False
    s.start_ns = start_ns
    return s


def end_step_span(span: StepSpan | None, error: BaseException | None, result: Any) -> None:
    """Ends a step's span: after a recorded step only the context is restored when the record
    ended the span; a failed step records the span with its exception."""
    if span is None:
        return
    if type(span) is tuple:
        trace_id, span_id, parent, execution_id, start_ns, token, name, agent, seq = span
        _current.reset(token)
        if error is None:
            return
        span = _step_span_object(trace_id, span_id, parent, execution_id, None, name, agent, seq, start_ns)
    elif error is None:
        span.attributes["output.value"] = content(result)
    span.__exit__(type(error) if error is not None else None, error, None)


class trace:  # noqa: N801 (the published SDK's name)
    """A span around a function (decorator) or a block (context manager), with the published
    SDK's signature: ``@omium.trace(name=None, span_type="function", capture_input=True,
    capture_output=True, capture_errors=True, **attributes)``. Inputs and outputs are captured
    (as ``input.value`` / ``output.value``, through the redaction hook) when content capture is
    on (``omium.configure_tracing(capture_content=True)``)."""

    def __new__(cls, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        if callable(name) and not args and not kwargs:  # bare @omium.trace
            return cls()(name)
        return super().__new__(cls)

    def __init__(
        self,
        name: str | None = None,
        span_type: str = "function",
        capture_input: bool = True,
        capture_output: bool = True,
        capture_errors: bool = True,
        **attributes: Any,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"omium.trace(name): expected a str, not {type(name).__name__}")
        self.name = name
        self.span_type = span_type
        self.capture_input = capture_input
        self.capture_output = capture_output
        self.capture_errors = capture_errors
        self.attributes = attributes
        self._span: Span | None = None

    def __call__(self, fn: Callable[..., Any]) -> Any:
        if not callable(fn):
            raise TypeError(f"@omium.trace must decorate a function, not {type(fn).__name__}")
        name = self.name or getattr(fn, "__qualname__", "function")
        opts = self

        def start(a: tuple, kw: dict) -> Span:
            s = Span(name, opts.span_type, attributes=opts.attributes)
            if opts.capture_input and _state["capture_content"]:
                s.attributes["input.value"] = content({"args": list(a), "kwargs": kw})
            return s

        def done(s: Span, result: Any) -> Any:
            if opts.capture_output and _state["capture_content"]:
                s.attributes["output.value"] = content(result)
            return result

        def failed(s: Span, e: BaseException) -> None:
            if opts.capture_errors:
                s.record_exception(e)
            else:
                s.status = "error"

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*a: Any, **kw: Any) -> Any:
                if not enabled():
                    return await fn(*a, **kw)
                s = start(a, kw)
                with s:
                    try:
                        return done(s, await fn(*a, **kw))
                    except BaseException as e:
                        failed(s, e)
                        raise

            return awrapper

        span_type, attributes = self.span_type, self.attributes
        capture_input, capture_output, capture_errors = self.capture_input, self.capture_output, self.capture_errors

        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            # The per-call path, kept flat: every function call here costs the traced code.
            if _runtime._config is None or not _state["enabled"]:
                return fn(*a, **kw)
            s = Span(name, span_type, attributes=attributes)
            capture = _state["capture_content"]
            if capture and capture_input:
                s.attributes["input.value"] = content({"args": list(a), "kwargs": kw})
            token = _current.set((s.trace_id, s.span_id, s.execution_id))
            try:
                result = fn(*a, **kw)
            except BaseException as e:
                if capture_errors:
                    s.record_exception(e)
                else:
                    s.status = "error"
                raise
            else:
                if capture and capture_output:
                    s.attributes["output.value"] = content(result)
                return result
            finally:
                _current.reset(token)
                s.end()

        return wrapper

    def __enter__(self) -> Span:
        self._span = Span(self.name or "block", self.span_type, attributes=self.attributes)
        return self._span.__enter__()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        s, self._span = self._span, None
        if s is not None:
            if exc is not None and not self.capture_errors:
                s.status = "error"
                exc = None
            s.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


def get_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, to send with an outgoing request."""
    cur = _current.get()
    if cur is None:
        return None
    return f"00-{cur[0].hex()}-{cur[1].hex()}-01"


def inject(headers: dict[str, str]) -> dict[str, str]:
    """Adds ``traceparent`` for the current span to ``headers`` (returned)."""
    tp = get_traceparent()
    if tp is not None:
        headers["traceparent"] = tp
    return headers


class extract:  # noqa: N801
    """``with omium.extract(headers_or_traceparent):`` makes spans started inside (and the
    workflow run inside) children of the remote span. A malformed header is an error."""

    def __init__(self, carrier: dict[str, str] | str) -> None:
        header = carrier if isinstance(carrier, str) else next((v for k, v in carrier.items() if k.lower() == "traceparent"), None)
        if header is None:
            raise ValueError("omium.extract: no traceparent header in the carrier")
        self._parent = _omium.parse_traceparent(header)
        self._token: contextvars.Token | None = None

    def __enter__(self) -> extract:
        self._token = _remote.set(self._parent)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._token is not None:
            _remote.reset(self._token)


def spans(execution_id: str) -> list[dict[str, Any]]:
    """The spans of an execution's trace (dicts with ids in hex, times in ns, attributes)."""
    return json.loads(_runtime.store().spans(execution_id))


def trace_text(execution_id: str, width: int = 60) -> str:
    """The waterfall of an execution's trace, as ``omium trace`` prints it."""
    return _runtime.store().trace_text(execution_id, width)


def trace_html(execution_id: str, path: str | os.PathLike[str] | None = None) -> str:
    """One self-contained HTML page of the trace (timeline and agents' graph); written to
    ``path`` when given. Returns the HTML."""
    page = _runtime.store().trace_html(execution_id)
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
    return page


def enable_otlp_export(
    endpoint: str | None = None,
    *,
    service_name: str | None = None,
    queue_capacity: int = 8192,
    metrics_endpoint: str | None = None,
    metrics_interval: float | None = None,
) -> None:
    """Exports spans over OTLP/HTTP protobuf in the background. ``endpoint`` is the full
    traces URL; by default the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` /
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` variables (and ``OTEL_EXPORTER_OTLP_HEADERS``,
    ``OTEL_EXPORTER_OTLP_TIMEOUT``, ``OTEL_SERVICE_NAME``) apply. ``omium.init`` calls it when
    one of those endpoint variables is set.

    The store's analytics (the instruments of ``omium serve``'s ``/metrics``) are exported
    too, every ``metrics_interval`` seconds (default ``OTEL_METRIC_EXPORT_INTERVAL`` ms, else
    60 s), to ``metrics_endpoint`` (the full metrics URL; by default
    ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``, else ``OTEL_EXPORTER_OTLP_ENDPOINT`` +
    ``/v1/metrics``; none when neither is set)."""
    store = _runtime.store()
    service = service_name or os.environ.get("OTEL_SERVICE_NAME") or _runtime.config().project or "omium"
    store.enable_otlp_export(
        endpoint=endpoint,
        service_name=service,
        queue_capacity=queue_capacity,
        metrics_endpoint=metrics_endpoint,
        metrics_interval=metrics_interval,
    )


def flush(timeout: float = 10.0) -> bool:
    """Stores every recorded span and waits (at most ``timeout`` s) for the exporter to send
    them; True when everything went out."""
    return _runtime.store().flush_export(timeout)


def workflow_span(name: str, execution_id: str) -> Span | None:
    """The root span of a workflow run (entered; the caller exits it)."""
    if not (_state["enabled"] and _runtime.is_initialized()):
        return None
    s = Span(f"workflow {name}", "workflow", attributes={"omium.workflow": name, "omium.execution_id": execution_id})
    return s.__enter__()
