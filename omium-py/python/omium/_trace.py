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


# A span being recorded (native): ``Span(name, span_type="function", *, kind="internal",
# attributes=None, agent="", execution_id=None)``; ``set_attribute``, ``add_event``,
# ``record_exception``; it ends when its ``with`` block or decorated call does (or ``end()``).
Span = _omium.Span

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
    """A step's `Span`, its fields set to the step's (what ``Span(...)`` would find out)."""
    s = Span(name, "step", attributes={"omium.seq": seq}, agent=agent, execution_id=execution_id)
    s.trace_id, s.span_id, s.parent, s._token, s.start_ns = trace_id, span_id, parent, token, start_ns
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


# `omium.trace` (native): ``@omium.trace``, ``@omium.trace(name=None, span_type="function",
# capture_input=True, capture_output=True, capture_errors=True, **attributes)`` and
# ``with omium.trace(...) as span:``. Decorating a function calls `_decorate`.
trace = _omium.trace


def _decorate(opts: trace, fn: Callable[..., Any]) -> Any:
    """The wrapper ``@omium.trace`` (``opts``) puts around ``fn``."""
    if not callable(fn):
        raise TypeError(f"@omium.trace must decorate a function, not {type(fn).__name__}")
    name = opts.name or getattr(fn, "__qualname__", "function")
    span_type, attributes = opts.span_type, opts.attributes
    capture_input, capture_output, capture_errors = opts.capture_input, opts.capture_output, opts.capture_errors

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awrapper(*a: Any, **kw: Any) -> Any:
            if _runtime._config is None or not _state["enabled"]:
                return await fn(*a, **kw)
            s = Span(name, span_type, attributes=attributes)
            capture = _state["capture_content"]
            if capture and capture_input:
                s.attributes["input.value"] = content({"args": list(a), "kwargs": kw})
            with s:
                try:
                    result = await fn(*a, **kw)
                except BaseException as e:
                    _failed(s, e, capture_errors)
                    raise
                if capture and capture_output:
                    s.attributes["output.value"] = content(result)
                return result

        return awrapper

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        # The per-call path, kept flat: every function call here costs the traced code.
        if _runtime._config is None or not _state["enabled"]:
            return fn(*a, **kw)
        s = Span(name, span_type, attributes=attributes)
        capture = _state["capture_content"]
        if capture and capture_input:
            s.attributes["input.value"] = content({"args": list(a), "kwargs": kw})
        with s:
            try:
                result = fn(*a, **kw)
            except BaseException as e:
                _failed(s, e, capture_errors)
                raise
            if capture and capture_output:
                s.attributes["output.value"] = content(result)
            return result

    return wrapper


def _failed(s: Span, e: BaseException, capture_errors: bool) -> None:
    """A decorated function raised ``e``: the span records it, or only its status with
    ``capture_errors=False``."""
    if capture_errors:
        s.record_exception(e)
    else:
        s.status = "error"


_omium.span_context(_current, _remote, _runtime.current, _runtime, _state, _decorate)


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
