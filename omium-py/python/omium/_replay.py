"""LLM and tool calls that are recorded, replayed and diffed.

``omium.llm_call`` / ``@omium.llm`` and ``omium.tool_call`` / ``@omium.tool`` record each
call's canonical request and its response as a durable step of the execution, keyed by its
position and by a blake3 hash of the request (provider, model, messages, tools, parameters —
never headers, ids or timestamps), and trace it with the OpenTelemetry GenAI attributes.

``omium.replay(execution_id)`` runs the workflow again with the recorded responses: no live
call, side-effect tools never executed; the first request that does not match the recording
raises :class:`ReplayDivergence` with both requests. ``omium.fork(execution_id, at_step=N,
mutate=...)`` re-runs from position N with a changed input and goes live from there.
``omium.diff(a, b)`` compares two executions step by step.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _omium, _runtime, _trace
from ._analytics import spend_metadata
from .codecs import CODEC_KEY, recorded_codec, to_plain
from .errors import WorkflowNotRegisteredError


@dataclass(frozen=True)
class RunResult:
    """The new execution a replay or a fork ran, and what its workflow returned."""

    execution_id: str
    output: Any
    source_execution_id: str


_replaying: contextvars.ContextVar[Any] = contextvars.ContextVar("omium_replaying", default=None)
# (execution id, position) -> mutate, for fork(at_step=..., mutate=...).
_mutations: contextvars.ContextVar[tuple[str, int, Callable[..., Any]] | None] = contextvars.ContextVar("omium_mutation", default=None)
_pricing: dict[str, tuple[float, float]] = {}


def set_pricing(model: str, *, input_per_1k: float, output_per_1k: float) -> None:
    """USD per 1,000 input and output tokens of a model, for the ``omium.cost_usd`` attribute
    of LLM spans (used by ``omium diff``)."""
    _pricing[model] = (float(input_per_1k), float(output_per_1k))


def mutated(ctx: _runtime.ExecutionContext, seq: int, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The arguments of the call at position ``seq``, changed when a fork asked for it."""
    m = _mutations.get()
    if m is None or m[0] != ctx.execution_id or m[1] != seq:
        return args, kwargs
    out = m[2](args, kwargs)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"fork(mutate=...) must return (args, kwargs), not {out!r}")
    return tuple(out[0]), dict(out[1])


def _canonical(kind: str, name: str, provider: str, model: str, args: tuple, kwargs: dict) -> tuple[dict[str, Any], str]:
    """The core's canonical request of a call (volatile parameters left out) and its hash."""
    text, h = _omium.canonical_request(
        kind, name, provider, model, json.dumps(to_plain(list(args)), default=repr), json.dumps(to_plain(kwargs), default=repr)
    )
    return json.loads(text), h


def _usage(response: Any) -> tuple[int | None, int | None]:
    u = response.get("usage") if isinstance(response, dict) else getattr(response, "usage", None)
    if u is None:
        return None, None

    def get(*names: str) -> int | None:
        for n in names:
            v = u.get(n) if isinstance(u, dict) else getattr(u, n, None)
            if isinstance(v, int):
                return v
        return None

    return get("input_tokens", "prompt_tokens"), get("output_tokens", "completion_tokens")


@dataclass
class _Pending:
    """A recorded call between its start and its live response."""

    ctx: _runtime.ExecutionContext | None
    seq: int
    key: str | None
    step_name: str
    request: dict[str, Any] | None
    hash: str
    span: _trace.Span
    kind: str
    model: str
    side_effect: bool
    args: tuple
    kwargs: dict


def _start(
    kind: str, name: str, args: tuple, kwargs: dict, provider: str, model: str, operation: str, side_effect: bool
) -> tuple[bool, Any]:
    """(True, response) when the call is answered without running it (resumed or replayed);
    otherwise (False, pending) and the caller runs it live and calls :func:`_finish`."""
    from . import _steps

    ctx = _runtime.current.get()
    span_name = _omium.call_span_name(kind, name, model, operation)
    step_name = f"{kind}:{span_name}"
    seq, key, request, h = -1, None, None, ""
    if ctx is not None:
        seq, key = _steps._position(ctx, None)
        found = ctx.run.recorded(seq, step_name, key)
        if found is not None:
            return True, recorded_codec(found[0]["metadata"].get(CODEC_KEY), ctx.codec, step_name).decode(found[1])["response"]
        args, kwargs = mutated(ctx, seq, args, kwargs)
        request, h = _canonical(kind, name, provider, model, args, kwargs)
    span = _trace.Span(span_name, kind, kind="client" if kind == "llm" else "internal").__enter__()
    _describe_request(span, kind, name, provider, model, operation, kwargs)
    pending = _Pending(ctx, seq, key, step_name, request, h, span, kind, model, side_effect, args, kwargs)
    if ctx is not None:
        span.set_attribute("omium.request_hash", h)
        source = _replaying.get()
        if source is not None:
            try:
                step, codec, state = source.answer(json.dumps(request), h)
                response = recorded_codec(codec, ctx.codec, step).decode(state)["response"]
            except BaseException as e:
                span.__exit__(type(e), e, None)
                raise
            span.set_attribute("omium.replayed", True)
            return True, _finish(pending, response)
    return False, pending


def _finish(p: _Pending, response: Any) -> Any:
    try:
        _describe_response(p.span, p.kind, p.model, response)
        if p.ctx is not None:
            data = p.ctx.codec.encode({"request": p.request, "response": response})
            meta = {
                CODEC_KEY: p.ctx.codec.name,
                "omium.call": p.kind,
                "omium.request_hash": p.hash,
                "omium.side_effect": "true" if p.side_effect else "false",
                **_spend(p.kind, p.model, response),
            }
            cid = p.ctx.run.record(p.seq, p.step_name, data, key=p.key, metadata=meta)
            p.span.set_attribute("omium.checkpoint_id", cid)
    except BaseException as e:
        p.span.__exit__(type(e), e, None)
        raise
    p.span.__exit__(None, None, None)
    return response


def _fail(p: _Pending, e: BaseException) -> None:
    p.span.__exit__(type(e), e, None)


def _call(
    kind: str,
    name: str,
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    *,
    provider: str = "",
    model: str = "",
    operation: str = "chat",
    side_effect: bool = False,
) -> Any:
    """One recorded call (sync): resumed, replayed, or run live and recorded."""
    done, v = _start(kind, name, args, kwargs, provider, model, operation, side_effect)
    if done:
        return v
    try:
        response = fn(*v.args, **v.kwargs)
    except BaseException as e:
        _fail(v, e)
        raise
    return _finish(v, response)


async def _acall(
    kind: str,
    name: str,
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    *,
    provider: str = "",
    model: str = "",
    operation: str = "chat",
    side_effect: bool = False,
) -> Any:
    """One recorded call (async)."""
    done, v = _start(kind, name, args, kwargs, provider, model, operation, side_effect)
    if done:
        return v
    try:
        response = await fn(*v.args, **v.kwargs)
    except BaseException as e:
        _fail(v, e)
        raise
    return _finish(v, response)


def _cost(model: str, tin: int | None, tout: int | None) -> float | None:
    price = _pricing.get(model)
    if price is None or (tin is None and tout is None):
        return None
    return round(((tin or 0) * price[0] + (tout or 0) * price[1]) / 1000.0, 8)


def _spend(kind: str, model: str, response: Any) -> dict[str, str]:
    """Tokens and USD cost of an LLM response, as checkpoint metadata (the analytics'
    ``llm_cost_usd`` and ``cost_saved_usd`` read them)."""
    if kind != "llm":
        return {}
    tin, tout = _usage(response)
    return spend_metadata(tin, tout, _cost(model, tin, tout))


def _describe_request(span: _trace.Span, kind: str, name: str, provider: str, model: str, operation: str, kwargs: dict) -> None:
    a = span.attributes
    if kind == "llm":
        a["gen_ai.operation.name"] = operation
        if provider:
            a["gen_ai.provider.name"] = provider
        if model:
            a["gen_ai.request.model"] = model
            a["llm.model_name"] = model
        for p, attr in (
            ("temperature", "gen_ai.request.temperature"),
            ("max_tokens", "gen_ai.request.max_tokens"),
            ("top_p", "gen_ai.request.top_p"),
        ):
            if isinstance(kwargs.get(p), (int, float)):
                a[attr] = kwargs[p]
        if _trace._state["capture_content"] and kwargs.get("messages") is not None:
            a["gen_ai.input.messages"] = _trace.content(to_plain(kwargs["messages"]))
            a["input.value"] = a["gen_ai.input.messages"]
    else:
        a["gen_ai.operation.name"] = "execute_tool"
        a["gen_ai.tool.name"] = name
        a["tool.name"] = name
        if _trace._state["capture_content"]:
            a["input.value"] = _trace.content(to_plain(kwargs) or None)


def _describe_response(span: _trace.Span, kind: str, model: str, response: Any) -> None:
    a = span.attributes
    if kind == "llm":
        tin, tout = _usage(response)
        if tin is not None:
            a["gen_ai.usage.input_tokens"] = tin
            a["llm.token_count.prompt"] = tin
        if tout is not None:
            a["gen_ai.usage.output_tokens"] = tout
            a["llm.token_count.completion"] = tout
        cost = _cost(model, tin, tout)
        if cost is not None:
            a["omium.cost_usd"] = cost
        rm = response.get("model") if isinstance(response, dict) else getattr(response, "model", None)
        if isinstance(rm, str):
            a["gen_ai.response.model"] = rm
    if _trace._state["capture_content"]:
        text = _trace.content(to_plain(response))
        a["output.value"] = text
        if kind == "llm":
            a["gen_ai.output.messages"] = text


def llm_call(call: Callable[..., Any], /, *args: Any, provider: str = "", model: str = "", operation: str = "chat", **kwargs: Any) -> Any:
    """Makes an LLM call through Omium: ``omium.llm_call(client.chat, provider="openai",
    model="gpt-4o", messages=[...], temperature=0)`` calls ``call(*args, **kwargs)`` (``model``
    is passed on too), records request and response, traces it. Resumed and replayed runs get
    the recorded response without calling. An async ``call`` makes this awaitable."""
    kw = dict(kwargs, model=model) if model else dict(kwargs)
    if inspect.iscoroutinefunction(call):
        return _acall("llm", model, call, args, kw, provider=provider, model=model, operation=operation)
    return _call("llm", model, call, args, kw, provider=provider, model=model, operation=operation)


def llm(*, provider: str = "", model: str = "", operation: str = "chat") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator form of :func:`llm_call`: ``@omium.llm(provider="anthropic", model="claude")``
    on ``def ask(messages, **params)``."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*a: Any, **kw: Any) -> Any:
                return await _acall("llm", model, fn, a, kw, provider=provider, model=model, operation=operation)

            return awrapper

        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            return _call("llm", model, fn, a, kw, provider=provider, model=model, operation=operation)

        return wrapper

    return decorate


def tool_call(name: str, fn: Callable[..., Any], /, *args: Any, side_effect: bool = False, **kwargs: Any) -> Any:
    """Calls ``fn`` as the tool ``name`` through Omium: allowlist checked, request and result
    recorded and traced; a ``side_effect`` tool is never executed again by a replay."""
    from . import _recovery

    _recovery._check_tool(name)
    return _call("tool", name, fn, args, kwargs, side_effect=side_effect)


def _workflow_of(execution_id: str) -> tuple[Any, list, dict]:
    from . import _workflow

    info = _workflow.get_execution(execution_id)
    wf = _workflow._registry.get(info.workflow)
    if wf is None:
        raise WorkflowNotRegisteredError(
            f"cannot re-run {execution_id!r}: workflow {info.workflow!r} is not defined in this process; import the module that defines it"
        )
    args, kwargs = _workflow._resume_args(info, wf.codec)
    return wf, args, kwargs


def replay(execution_id: str, *, new_execution_id: str | None = None) -> RunResult:
    """Runs the workflow of ``execution_id`` again, as a new execution, with every LLM and
    tool call answered from the recording: nothing is called live and side-effect tools never
    run. Raises :class:`ReplayDivergence` at the first request that differs."""
    wf, args, kwargs = _workflow_of(execution_id)
    source = _runtime.store().open_replay(execution_id)
    new_id = new_execution_id or f"{execution_id}-replay-{uuid.uuid4().hex[:8]}"
    token = _replaying.set(source)
    try:
        out = _run(wf, args, kwargs, new_id)
    finally:
        _replaying.reset(token)
    source.finish()
    return RunResult(new_id, out, execution_id)


def fork_at_step(execution_id: str, at_step: int, mutate: Callable[..., Any] | None, new_execution_id: str | None) -> RunResult:
    """Forks before position ``at_step`` (positions are the ``seq`` of ``omium.history``; 1 is
    the first step), changes that call's input with ``mutate(args, kwargs) -> (args,
    kwargs)`` and runs the workflow live from there; the original is kept."""
    if not isinstance(at_step, int) or isinstance(at_step, bool) or at_step < 1:
        raise ValueError(f"omium.fork(at_step=...): expected a position (1 is the first step), not {at_step!r}")
    wf, args, kwargs = _workflow_of(execution_id)
    new_id = new_execution_id or f"{execution_id}-fork-{uuid.uuid4().hex[:8]}"
    _runtime.store().fork_at_step(execution_id, at_step, new_id)
    token = _mutations.set((new_id, at_step, mutate)) if mutate is not None else None
    try:
        out = _run(wf, args, kwargs, new_id)
    finally:
        if token is not None:
            _mutations.reset(token)
    return RunResult(new_id, out, execution_id)


def _run(wf: Any, args: list, kwargs: dict, execution_id: str) -> Any:
    import asyncio

    if wf.is_async:
        return asyncio.run(wf._run_async(tuple(args), kwargs, execution_id))
    return wf.run(*args, execution_id=execution_id, **kwargs)


@dataclass(frozen=True)
class StepDiff:
    """One position of two executions compared (durations in ns)."""

    seq: int
    position: str
    name_a: str | None
    name_b: str | None
    output_differs: bool
    input_differs: bool
    duration_ns_a: int | None
    duration_ns_b: int | None
    tokens_a: int | None
    tokens_b: int | None
    cost_a: float | None
    cost_b: float | None
    differs: bool = field(default=False)


def diff(a: str, b: str) -> list[StepDiff]:
    """Compares two executions position by position: step names, outputs, inputs (requests of
    LLM and tool calls; step inputs when content capture is on), timing, tokens and cost."""
    return [StepDiff(**d) for d in json.loads(_runtime.store().diff_executions(a, b))]
