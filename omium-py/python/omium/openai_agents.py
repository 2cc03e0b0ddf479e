"""Durable OpenAI Agents SDK runs on Omium, and the SDK's traces as Omium spans.

Inside an Omium execution (an ``@omium.workflow`` run, or code after
``omium.set_execution_context``), every model call and tool call of a run of a durable agent is
a durable step of that execution: a run killed half-way and run again with the same execution id
answers the calls that finished from their checkpoints, in order, without calling the model or
the tool again::

    from agents import Agent, Runner
    from omium import openai_agents as oa

    @oa.function_tool
    def charge(order: str, amount: int) -> str: ...

    agent = oa.durable(Agent(name="orders", model=my_model, tools=[charge]))

    @omium.workflow("orders")
    async def orders(request: str) -> str:
        result = await Runner.run(agent, request, run_config=oa.run_config())
        return result.final_output

- :func:`durable` makes an agent durable: its model (a ``Model`` instance) and its function
  tools, and the agents it hands off to; :func:`run_config` makes the models a run looks up by
  name durable (``RunConfig(model_provider=OmiumModelProvider())``).
- :class:`OmiumModel` and :func:`durable_tool` do it one model or tool at a time.
- :class:`OmiumTracingProcessor` records the SDK's traces — agents, model calls, tool calls,
  handoffs, guardrails — as Omium spans (``agents.add_trace_processor(OmiumTracingProcessor())``),
  in the trace of the execution they ran in.

Outside an Omium execution everything runs as it would without Omium. In an execution, a
streamed model response is recorded as one step: its events are delivered when the model has
finished, and a replay delivers the recorded ones.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from agents import Agent, FunctionTool, RunConfig
from agents import function_tool as _sdk_function_tool
from agents.items import ModelResponse, TResponseOutputItem, TResponseStreamEvent
from agents.models.interface import Model, ModelProvider
from agents.models.multi_provider import MultiProvider
from agents.tracing import Span as SdkSpan
from agents.tracing import Trace, TracingProcessor
from agents.usage import Usage
from pydantic import TypeAdapter

from . import _runtime, _trace
from ._steps import unit as _step

__all__ = [
    "OmiumModel",
    "OmiumModelProvider",
    "OmiumTracingProcessor",
    "durable",
    "durable_tool",
    "function_tool",
    "run_config",
]


def _in_execution() -> bool:
    return _runtime.current.get() is not None


_outputs: TypeAdapter[list[TResponseOutputItem]] = TypeAdapter(list[TResponseOutputItem])
_usage: TypeAdapter[Usage] = TypeAdapter(Usage)
_events: TypeAdapter[list[TResponseStreamEvent]] = TypeAdapter(list[TResponseStreamEvent])


def _dump_response(r: ModelResponse) -> dict[str, Any]:
    return {
        "output": _outputs.dump_python(r.output, mode="json"),
        "usage": _usage.dump_python(r.usage, mode="json"),
        "response_id": r.response_id,
        "request_id": r.request_id,
    }


def _load_response(d: Any) -> ModelResponse:
    return ModelResponse(
        output=_outputs.validate_python(d["output"]),
        usage=_usage.validate_python(d["usage"]),
        response_id=d.get("response_id"),
        request_id=d.get("request_id"),
    )


class OmiumModel(Model):
    """A model whose calls are durable steps inside an Omium execution (``openai_agents.model:NAME``)."""

    def __init__(self, model: Model, name: str = "model") -> None:
        if isinstance(model, OmiumModel):
            model = model.model
        self.model = model
        self.name = name

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        if not _in_execution():
            return await self.model.get_response(*args, **kwargs)

        async def body() -> object:
            return _dump_response(await self.model.get_response(*args, **kwargs))

        return _load_response(await _step(f"openai_agents.model:{self.name}")(body))

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        if not _in_execution():
            async for event in self.model.stream_response(*args, **kwargs):
                yield event
            return

        async def body() -> object:
            events = [e async for e in self.model.stream_response(*args, **kwargs)]
            return _events.dump_python(events, mode="json")

        for event in _events.validate_python(await _step(f"openai_agents.model_stream:{self.name}")(body)):
            yield event

    def get_retry_advice(self, request: Any) -> Any:
        return self.model.get_retry_advice(request)

    async def close(self) -> None:
        await self.model.close()


class OmiumModelProvider(ModelProvider):
    """Looks models up in ``provider`` (default: the SDK's ``MultiProvider``) and makes them
    durable: what :func:`run_config` puts in a run's config."""

    def __init__(self, provider: ModelProvider | None = None) -> None:
        self.provider = provider if provider is not None else MultiProvider()

    def get_model(self, model_name: str | None) -> Model:
        return OmiumModel(self.provider.get_model(model_name), model_name or "default")

    async def aclose(self) -> None:
        await self.provider.aclose()


def run_config(provider: ModelProvider | None = None, **kwargs: Any) -> RunConfig:
    """A ``RunConfig`` whose models (looked up by name) are durable; ``kwargs`` are passed on."""
    return RunConfig(model_provider=OmiumModelProvider(provider), **kwargs)


def durable_tool(tool: FunctionTool) -> FunctionTool:
    """The same function tool, whose calls are durable steps inside an Omium execution
    (``openai_agents.tool:NAME``): a replay answers a finished call from its checkpoint."""
    if getattr(tool.on_invoke_tool, "__omium_durable__", False):
        return tool
    invoke = tool.on_invoke_tool
    step_name = f"openai_agents.tool:{tool.name}"

    async def on_invoke_tool(ctx: Any, arguments: str) -> Any:
        if not _in_execution():
            return await invoke(ctx, arguments)

        async def body() -> object:
            return await invoke(ctx, arguments)

        return await _step(step_name)(body)

    on_invoke_tool.__omium_durable__ = True  # type: ignore[attr-defined]
    return dataclasses.replace(tool, on_invoke_tool=on_invoke_tool)


def function_tool(func: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
    """``agents.function_tool``, made durable (:func:`durable_tool`); same arguments."""
    if func is None:
        return lambda f: durable_tool(_sdk_function_tool(f, **kwargs))
    return durable_tool(_sdk_function_tool(func, **kwargs))


def durable(agent: Agent[Any], *, name: str | None = None) -> Agent[Any]:
    """A copy of ``agent`` whose model (when it is a ``Model`` instance; a model name is made
    durable by :func:`run_config`), function tools and hand-off agents are durable. ``name``
    names its model's steps (default: the agent's name)."""
    return _durable(agent, name, {})


def _durable(agent: Agent[Any], name: str | None, seen: dict[int, Agent[Any]]) -> Agent[Any]:
    if id(agent) in seen:
        return seen[id(agent)]
    model = agent.model
    if isinstance(model, Model):
        model = OmiumModel(model, name or agent.name)
    copy = agent.clone(model=model, tools=[durable_tool(t) if isinstance(t, FunctionTool) else t for t in agent.tools])
    seen[id(agent)] = copy
    copy.handoffs = [_durable(h, None, seen) if isinstance(h, Agent) else h for h in agent.handoffs]
    return copy


# Tracing: the SDK's traces and spans as Omium spans.

_SPAN_TYPES = {
    "agent": "agent",
    "generation": "llm",
    "response": "llm",
    "function": "tool",
    "mcp_tools": "tool",
    "handoff": "chain",
    "guardrail": "chain",
    "custom": "function",
}


def _span_name(data: Any) -> str:
    kind = getattr(data, "type", "span")
    if kind == "agent":
        return f"agent {data.name}"
    if kind == "function":
        return f"execute_tool {data.name}"
    if kind == "handoff":
        return f"handoff {data.from_agent} -> {data.to_agent}"
    if kind in ("generation", "response"):
        model = getattr(data, "model", None) or "model"
        return f"chat {model}"
    if kind == "guardrail":
        return f"guardrail {data.name}"
    return str(getattr(data, "name", None) or kind)


def _attributes(data: Any) -> dict[str, Any]:
    """The span data's fields as attributes (``openai_agents.*``), plain values only."""
    out: dict[str, Any] = {}
    try:
        exported = data.export() or {}
    except Exception:  # an SDK span type whose export needs more than it has
        exported = {}
    for k, v in exported.items():
        if k == "type" or v is None:
            continue
        out[f"openai_agents.{k}"] = v if isinstance(v, (str, int, float, bool)) else _trace.content(v)
    kind = getattr(data, "type", "")
    if kind == "function":
        out["gen_ai.operation.name"] = "execute_tool"
        out["gen_ai.tool.name"] = data.name
    elif kind in ("generation", "response"):
        out["gen_ai.operation.name"] = "chat"
    elif kind == "agent":
        out["gen_ai.agent.name"] = data.name
    return out


def _ns(iso: str | None) -> int | None:
    if not iso:
        return None
    return int(_dt.datetime.fromisoformat(iso).timestamp() * 1e9)


class OmiumTracingProcessor(TracingProcessor):
    """Records the OpenAI Agents SDK's traces as Omium spans: a trace is a span (``agent run
    NAME``) under the Omium span it started in (the execution's workflow or step span), each SDK
    span its child — agents, model calls (``llm``), tool calls (``tool``), handoffs, guardrails —
    with the span data's fields as ``openai_agents.*`` attributes. Install it once:
    ``agents.add_trace_processor(OmiumTracingProcessor())``."""

    MAX_OPEN = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, _trace.Span] = {}

    def _start(self, key: str, parent_key: str | None, name: str, span_type: str, attributes: dict[str, Any]) -> None:
        with self._lock:
            parent = self._open.get(parent_key) if parent_key else None
        s = _trace.Span(name, span_type, attributes=attributes)
        if parent is not None:
            s.trace_id, s.parent, s.execution_id = parent.trace_id, parent.span_id, parent.execution_id
        with self._lock:
            self._open[key] = s
            while len(self._open) > self.MAX_OPEN:  # spans never ended: forget the oldest
                self._open.pop(next(iter(self._open)))

    def _end(
        self, key: str, error: Any = None, attributes: dict[str, Any] | None = None, end_ns: int | None = None, name: str | None = None
    ) -> None:
        with self._lock:
            s = self._open.pop(key, None)
        if s is None:
            return
        if name:  # what the SDK learned while the span ran (the model of a generation)
            s.name = name
        if attributes:
            s.set_attributes(attributes)
        if error:
            s.status = "error"
            s.status_message = str(error.get("message") if isinstance(error, dict) else error)
        s.end(end_ns)

    def on_trace_start(self, trace: Trace) -> None:
        self._start(f"t:{trace.trace_id}", None, f"agent run {trace.name}", "chain", {"openai_agents.trace_id": trace.trace_id})

    def on_trace_end(self, trace: Trace) -> None:
        self._end(f"t:{trace.trace_id}")

    def on_span_start(self, span: SdkSpan[Any]) -> None:
        data = span.span_data
        parent = f"s:{span.parent_id}" if span.parent_id else f"t:{span.trace_id}"
        self._start(f"s:{span.span_id}", parent, _span_name(data), _SPAN_TYPES.get(getattr(data, "type", ""), "function"), {})

    def on_span_end(self, span: SdkSpan[Any]) -> None:
        data = span.span_data
        self._end(f"s:{span.span_id}", span.error, _attributes(data), _ns(span.ended_at), _span_name(data))

    def shutdown(self) -> None:
        with self._lock:
            self._open.clear()

    def force_flush(self) -> None:
        return None
