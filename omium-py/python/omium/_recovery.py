"""Recovery of failed steps: the hooks users register (notifiers, fallbacks, fixers, the
root-cause analyzer, validators) and the loop that carries out what the policy decides.

The decisions, backoff, history and webhooks live in the core (``_omium.Recovery``); this
module only runs Python code: it sleeps, calls the step again, calls the hooks. The loop is a
generator of operations so that one body serves sync steps (run in the calling thread) and
async steps (awaited, store writes off the event loop).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import inspect
import json
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

from . import _runtime, _trace
from .errors import (
    ConditionFailed,
    ConsensusViolation,
    HallucinationDetected,
    OmiumError,
    RecoveryOutcome,
    StepTimeoutError,
    ToolDeniedError,
    from_code,
)

_lock = threading.Lock()
_notifiers: list[tuple[Callable[[dict[str, Any]], Any], frozenset[str] | None]] = []
_fallbacks: dict[str, Callable[..., Any]] = {}
_fixers: dict[str, Callable[..., Any]] = {}
_analyzer: Callable[[dict[str, Any]], Any] | None = None
_validators: list[tuple[Callable[[Any], Any], frozenset[str] | None]] = []
# (store id, tenant, workflow, step) -> the policy defaults in force.
_defaults_cache: dict[tuple[int, str, str | None, str], dict[str, Any]] = {}
# Changes whenever the cached policy defaults are dropped (a step's cached timeout with it).
_defaults_gen = 0


def add_notifier(fn: Callable[[dict[str, Any]], Any], *, channels: Iterable[str] | None = None) -> Callable[[dict[str, Any]], Any]:
    """Registers a callback for notifications (notify, escalate): it receives a dict with
    ``event``, ``channels`` and ``failure``. With ``channels`` it is called only for those."""
    if not callable(fn):
        raise TypeError(f"omium.add_notifier: expected a callable, not {type(fn).__name__}")
    if isinstance(channels, str):
        channels = [channels]
    with _lock:
        _notifiers.append((fn, frozenset(channels) if channels is not None else None))
    return fn


def register_fallback(name: str, fn: Callable[..., Any] | None = None) -> Any:
    """Registers ``fn`` as the fallback called ``name`` (``fallback: {function: name}``); it is
    called with the failed step's arguments and its result becomes the step's. Usable as a
    decorator: ``@omium.register_fallback("cheap_model")``."""
    return _register(_fallbacks, "register_fallback", name, fn)


def register_fix(name: str, fn: Callable[..., Any] | None = None) -> Any:
    """Registers a fixer for ``suggest_fix: {fix: name, auto_apply: true}``: called as
    ``fn(failure, args, kwargs)``, it returns ``(args, kwargs)`` to retry the step with once."""
    return _register(_fixers, "register_fix", name, fn)


def _register(table: dict[str, Callable[..., Any]], what: str, name: str, fn: Callable[..., Any] | None) -> Any:
    if not isinstance(name, str) or not name:
        raise TypeError(f"omium.{what}(name): expected a non-empty str, not {name!r}")

    def put(f: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(f):
            raise TypeError(f"omium.{what}({name!r}): expected a callable, not {type(f).__name__}")
        with _lock:
            table[name] = f
        return f

    return put(fn) if fn is not None else put


def set_analyzer(fn: Callable[[dict[str, Any]], Any] | None) -> None:
    """Sets the root-cause analyzer (for ``inspect`` actions; for example your own LLM call).
    It receives the failure dict and returns a dict with ``root_cause`` and/or
    ``suggested_fix`` (or None). ``None`` removes it."""
    global _analyzer
    if fn is not None and not callable(fn):
        raise TypeError(f"omium.set_analyzer: expected a callable or None, not {type(fn).__name__}")
    _analyzer = fn


def add_validator(fn: Callable[[Any], Any], *, steps: Iterable[str] | None = None) -> Callable[[Any], Any]:
    """Registers a validator run on every step result (or those of ``steps``): returning
    False or a str (the reason), or raising :class:`HallucinationDetected`, flags the result
    as a hallucination, handled by the ``hallucination_detected`` rule; nothing is recorded."""
    if not callable(fn):
        raise TypeError(f"omium.add_validator: expected a callable, not {type(fn).__name__}")
    if isinstance(steps, str):
        steps = [steps]
    with _lock:
        _validators.append((fn, frozenset(steps) if steps is not None else None))
    return fn


def clear_hooks() -> None:
    """Removes every notifier, fallback, fixer, validator and the analyzer (for tests)."""
    global _analyzer
    with _lock:
        _notifiers.clear()
        _fallbacks.clear()
        _fixers.clear()
        _validators.clear()
        _analyzer = None
    forget_defaults()


def validate(step: str, result: Any, own: list[Callable[[Any], Any]]) -> None:
    """Runs the step's validators and the global ones on its result."""
    for fn in [*own, *(f for f, s in _validators if s is None or step in s)]:
        verdict = fn(result)
        if verdict is False or isinstance(verdict, str):
            who = getattr(fn, "__qualname__", repr(fn))
            reason = verdict if isinstance(verdict, str) else "the result was rejected"
            raise HallucinationDetected(f"step {step!r}: validator {who} flagged the result: {reason}; nothing was recorded")


def step_defaults(ctx: _runtime.ExecutionContext, step: str | None) -> dict[str, Any]:
    """The policy defaults in force for a step (cached until a policy is applied)."""
    store = _runtime.store()
    key = (id(store), ctx.tenant, ctx.workflow, step or "")
    found = _defaults_cache.get(key)
    if found is None:
        ensure_policies(store, ctx.tenant)
        found = json.loads(store.policy_defaults(ctx.tenant, ctx.workflow, step))["defaults"]
        _defaults_cache[key] = found
    return found


def ensure_policies(store: Any, tenant: str) -> None:
    """Applies policies attached with ``@omium.checkpoint(policy=...)`` to this store."""
    from . import policy

    policy.sync_attached(store, tenant)


def forget_defaults() -> None:
    global _defaults_gen
    _defaults_cache.clear()
    _defaults_gen += 1


def has_validators() -> bool:
    """Whether global validators are registered (a step without its own skips validation)."""
    return bool(_validators)


def timeout_seconds(ctx: _runtime.ExecutionContext, step: str | None) -> float | None:
    """The step timeout the policy gives a step, in seconds."""
    ms = step_defaults(ctx, step).get("step_timeout_ms")
    return None if ms is None else ms / 1000


def recoverable(e: BaseException) -> bool:
    """Failures a policy may handle: the step's own exceptions, its timeout, a failed
    postcondition, a flagged hallucination, a consensus violation, a denied tool. Omium's
    own errors (a corrupt store, non-determinism) and interrupts are not."""
    if not isinstance(e, Exception) or isinstance(e, RecoveryOutcome):
        return False
    if isinstance(e, OmiumError):
        return isinstance(e, (StepTimeoutError, ConditionFailed, HallucinationDetected, ConsensusViolation, ToolDeniedError))
    return True


def _kind(e: BaseException) -> str | None:
    if isinstance(e, StepTimeoutError):
        return "timeout_error"
    if isinstance(e, ConditionFailed):
        return "postcondition_failed"
    return None  # classified by the core (policy `classify`, then built-in rules)


def _classes(e: BaseException) -> list[str]:
    return [
        f"{c.__module__}.{c.__qualname__}" if c.__module__ != "builtins" else c.__qualname__
        for c in type(e).__mro__
        if c not in (object, BaseException)
    ]


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


# Operations the recovery loop asks its runner to perform.
Op = tuple[Any, ...]


def _io(fn: Callable[[], Any]) -> Generator[Op, Any, Any]:
    """A store call (the async runner moves it off the event loop)."""
    return (yield ("io", fn))


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Generator[Op, Any, tuple[bool, Any]]:
    """A call of user code; returns (True, value) or (False, exception)."""
    return (yield ("call", fn, args, kwargs))


def plan(
    step: Any,
    ctx: _runtime.ExecutionContext,
    seq: int,
    key: str | None,
    args: tuple,
    kwargs: dict,
    exc: BaseException,
    attempt: Callable[..., Any],
) -> Generator[Op, Any, Any]:
    """Handles a failed step: returns the value that replaces its result, or raises. The
    core's recovery driver decides and records everything; this runs what it commands."""
    store = _runtime.store()
    ensure_policies(store, ctx.tenant)
    rec = yield from _io(
        lambda: store.start_recovery(
            ctx.execution_id,
            ctx.workflow or "",
            ctx.tenant,
            step.name,
            seq,
            key,
            step.agent or "main",
            _kind(exc),
            _classes(exc),
            str(exc),
            retries=step.retries,
            rollbacks_so_far=ctx.rollbacks,
        )
    )
    fixed: tuple[tuple, dict] = (args, kwargs)
    value: Any = None
    event: dict[str, Any] = {"event": "start"}
    span: _trace.Span | None = None
    try:
        while True:
            if span is not None:
                span.end()
            name, p = yield from _io(lambda event=event: rec.advance(**event))
            span = _span(name, p)
            if name == "retry":
                yield ("sleep", p["delay"])
                ok, value = yield from _call(attempt, *args, **kwargs)
            elif name == "call":
                ok, value = yield from _call(attempt, *fixed[0], **fixed[1])
            elif name == "fallback":
                fn = _fallbacks.get(p["function"])
                if fn is None:
                    event = {"event": "missing"}
                    continue
                ok, value = yield from _call(fn, *args, **kwargs)
            elif name == "fix":
                fixer = _fixers.get(p["fix"])
                if fixer is None:
                    event = {"event": "missing"}
                    continue
                ok, got = yield from _call(fixer, p["failure"], list(args), dict(kwargs))
                if ok and isinstance(got, (tuple, list)) and len(got) == 2:
                    fixed = (tuple(got[0]), dict(got[1]))
                    event = {"event": "fixed"}
                else:
                    note = _describe(got) if not ok else f"fixer {p['fix']!r} must return (args, kwargs), not {got!r}"
                    event = {"event": "fixed", "ok": False, "note": note}
                continue
            elif name == "analyze":
                if _analyzer is None:
                    event = {"event": "missing"}
                    continue
                ok, said = yield from _call(_analyzer, p["failure"])
                if not ok:
                    event = {"event": "analyzed", "ok": False, "note": _describe(said)}
                else:
                    said = said if isinstance(said, dict) else {}
                    event = {"event": "analyzed", "root_cause": said.get("root_cause"), "suggested_fix": said.get("suggested_fix")}
                continue
            elif name == "notify":
                problems = yield from _notify(p)
                event = {"event": "notified", "note": problems}
                continue
            elif name == "return":
                return value
            elif name == "reraise":
                raise exc
            else:  # raise: escalated, paused, rolled back
                raise _outcome(p) from exc
            if ok:
                event = {"event": "called"}
            else:
                event = {"event": "called", "ok": False, "note": _describe(value), "recoverable": recoverable(value)}
                exc = value
    except BaseException as e:
        if span is not None:
            span.record_exception(e)
        raise
    finally:
        if span is not None:
            span.end()


def _span(name: str, p: dict[str, Any]) -> _trace.Span | None:
    """A span for what the recovery does (``recovery retry``, ``recovery paused``, ...)."""
    if name in ("return", "reraise") or not _trace.enabled():
        return None
    action = p["code"] if name == "raise" else name
    span = _trace.Span(f"recovery {action}", "recovery")
    attrs = {k: (", ".join(v) if isinstance(v, list) else v) for k, v in p.items() if isinstance(v, (str, int, float, bool, list))}
    span.set_attributes({"omium.recovery.action": action, **{f"omium.recovery.{k}": v for k, v in attrs.items()}})
    return span


def _outcome(p: dict[str, Any]) -> OmiumError:
    """The exception a recovery ends a step with, from the core's error (code and message)."""
    err = from_code(p["code"], p["message"])
    err.failure = p["failure"]  # type: ignore[attr-defined]
    for k in ("execution_id", "reason", "to", "channels"):
        if k in p:
            setattr(err, k, p[k])
    return err


def _notify(body: dict[str, Any]) -> Generator[Op, Any, str | None]:
    """Calls the notifiers (the core sends the webhooks); returns None, or what went wrong."""
    problems = []
    channels = body["channels"]
    for fn, only in list(_notifiers):
        if only is not None and channels and not (only & set(channels)):
            continue
        ok, said = yield from _call(fn, body)
        if not ok:
            problems.append(f"notifier {getattr(fn, '__qualname__', fn)!r} raised {_describe(said)}")
    return "; ".join(problems) or None


def run_sync(gen: Generator[Op, Any, Any]) -> Any:
    """Runs a recovery plan in the calling thread."""
    send: Any = None
    while True:
        try:
            op = gen.send(send)
        except StopIteration as stop:
            return stop.value
        send = None
        if op[0] == "sleep":
            time.sleep(op[1])
        elif op[0] == "io":
            send = op[1]()
        else:
            fn, args, kwargs = op[1], op[2], op[3]
            try:
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = asyncio.run(_await(value))
                send = (True, value)
            except Exception as e:
                send = (False, e)


async def _await(aw: Any) -> Any:
    return await aw


async def run_async(gen: Generator[Op, Any, Any]) -> Any:
    """Runs a recovery plan on the event loop; store writes go to a thread."""
    send: Any = None
    while True:
        try:
            op = gen.send(send)
        except StopIteration as stop:
            return stop.value
        send = None
        if op[0] == "sleep":
            await asyncio.sleep(op[1])
        elif op[0] == "io":
            send = await asyncio.to_thread(op[1])
        else:
            fn, args, kwargs = op[1], op[2], op[3]
            try:
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
                send = (True, value)
            except Exception as e:
                send = (False, e)


# Tools: the allowlist of the policy (`tool_whitelist`) is enforced for calls through here.


def _check_tool(name: str) -> None:
    """The core checks the call against the policy's allowlist and records a denial."""
    ctx = _runtime.current.get()
    if ctx is None:
        return
    store = _runtime.store()
    ensure_policies(store, ctx.tenant)
    store.check_tool(ctx.execution_id, ctx.tenant, ctx.workflow, _runtime.current_step_name.get(), "main", name)


def tool(name: str | Callable[..., Any] | None = None, *, side_effect: bool = False) -> Any:
    """Marks a function as a tool called through Omium: inside an execution, a call of a tool
    the policy's ``tool_whitelist`` does not allow raises :class:`~omium.ToolDeniedError`
    (recorded as a ``tool_denied`` failure) instead of calling it; an allowed call is traced
    (``execute_tool <name>``) and recorded, so resumes and replays answer it from the
    recording. A ``side_effect`` tool is never executed again by a replay."""
    from . import _replay

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        tool_name = name if isinstance(name, str) else fn.__name__
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                _check_tool(tool_name)
                return await _replay._acall("tool", tool_name, fn, args, kwargs, side_effect=side_effect)

            awrapper.__omium_tool__ = tool_name  # type: ignore[attr-defined]
            return awrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _check_tool(tool_name)
            return _replay._call("tool", tool_name, fn, args, kwargs, side_effect=side_effect)

        wrapper.__omium_tool__ = tool_name  # type: ignore[attr-defined]
        return wrapper

    if callable(name):
        return decorate(name)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"@omium.tool(name): name must be a str, not {type(name).__name__}")
    return decorate


def call_tool(name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Calls ``fn`` as the tool ``name``, enforcing the allowlist (see :func:`tool`)."""
    from . import _replay

    return _replay.tool_call(name, fn, *args, **kwargs)


# Queries over recovery history.


@dataclass(frozen=True)
class FailureInfo:
    """A failure and what recovery did about it (``actions``: dicts with ``action``,
    ``detail``, ``outcome``, ``started_at_ms``, ``ended_at_ms``)."""

    id: str
    execution_id: str
    workflow: str
    tenant: str
    step: str | None
    seq: int | None
    key: str | None
    agent: str
    type: str
    error_class: str
    message: str
    rule: str | None
    scope: str | None
    root_cause: str | None
    suggested_fix: str | None
    actions: list[dict[str, Any]]
    outcome: str
    created_at: _dt.datetime
    resolved_at: _dt.datetime | None

    @property
    def recovery_time(self) -> _dt.timedelta | None:
        """From failure to resolution, once resolved."""
        return None if self.resolved_at is None else self.resolved_at - self.created_at

    @staticmethod
    def of(d: dict[str, Any]) -> FailureInfo:
        d = dict(d)
        d["type"] = d.pop("kind")
        d["created_at"] = _dt.datetime.fromtimestamp(d.pop("created_at_ms") / 1000, tz=_dt.timezone.utc)
        r = d.pop("resolved_at_ms")
        d["resolved_at"] = None if r is None else _dt.datetime.fromtimestamp(r / 1000, tz=_dt.timezone.utc)
        return FailureInfo(**d)


def failures(execution_id: str | None = None) -> list[FailureInfo]:
    """Recorded failures (of one execution, or all, oldest first) with the actions taken."""
    return [FailureInfo.of(d) for d in json.loads(_runtime.store().failures(execution_id))]


def recovery_metrics(workflow: str | None = None) -> dict[str, Any]:
    """Recovery figures: ``failures``, ``recovered``, ``escalated``, ``failed``, ``open``,
    ``recovery_rate`` (recovered over settled), ``mttr_ms`` (mean), ``mttr_p50_ms``, ``mttr_p95_ms``,
    ``retries_per_success``, ``by_type``, ``by_outcome``, ``actions``."""
    return json.loads(_runtime.store().recovery_metrics(workflow))
