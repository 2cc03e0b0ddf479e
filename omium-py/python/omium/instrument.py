"""``omium.instrument_langgraph()`` and ``omium.instrument_crewai()``: the frameworks' own hooks
turned into Omium spans, with no change to the user's graph, crew or flow.

LangGraph (and anything on LangChain): a callback handler registered for every run through
``langchain_core``'s configure hook. Graph and node runs become CHAIN spans (the node name from
``langgraph_node``), chat-model and LLM calls LLM spans with the GenAI attributes, tools TOOL
spans, each a child of the run that started it, and of the Omium step or span running at the
time. CrewAI: listeners on its event bus turn flows and their methods, crews, tasks, agents, LLM
calls and tool uses into spans the same way.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

from . import _trace

_lock = threading.Lock()
_installed: dict[str, bool] = {}


def _start(
    name: str, span_type: str, parent: _trace.Span | None, *, kind: str = "internal", attributes: dict[str, Any] | None = None
) -> _trace.Span:
    s = _trace.Span(name, span_type, kind=kind, attributes=attributes)
    if parent is not None:  # a framework run inside another: same trace, that parent
        s.trace_id, s.parent, s.execution_id = parent.trace_id, parent.span_id, parent.execution_id
    return s


def _finish(s: _trace.Span | None, error: BaseException | str | None = None) -> None:
    if s is None:
        return
    if isinstance(error, BaseException):
        s.record_exception(error)
    elif error:
        s.status, s.status_message = "error", error
    s.end()


def _usage_of(result: Any) -> tuple[int | None, int | None, str | None]:
    """Token counts and model of a LangChain LLMResult."""
    tin = tout = None
    model = None
    out = getattr(result, "llm_output", None) or {}
    usage = out.get("token_usage") or out.get("usage") or {}
    if isinstance(usage, dict):
        tin = usage.get("prompt_tokens", usage.get("input_tokens"))
        tout = usage.get("completion_tokens", usage.get("output_tokens"))
    model = out.get("model_name") or out.get("model")
    for gens in getattr(result, "generations", None) or []:
        for g in gens:
            meta = getattr(getattr(g, "message", None), "usage_metadata", None)
            if isinstance(meta, dict):
                tin = meta.get("input_tokens", tin)
                tout = meta.get("output_tokens", tout)
    return tin, tout, model


def instrument_langgraph() -> None:
    """Traces every LangGraph / LangChain run in this process as Omium spans (idempotent)."""
    with _lock:
        if _installed.get("langgraph"):
            return
        from langchain_core.callbacks import BaseCallbackHandler
        from langchain_core.tracers.context import register_configure_hook

        class OmiumCallbackHandler(BaseCallbackHandler):
            """LangChain callbacks → Omium spans, keyed by run id."""

            raise_error = False

            def __init__(self) -> None:
                self.runs: dict[Any, _trace.Span] = {}
                self.lock = threading.Lock()

            def _open(self, run_id: Any, parent_run_id: Any, name: str, span_type: str, **kw: Any) -> _trace.Span:
                with self.lock:
                    parent = self.runs.get(parent_run_id) if parent_run_id is not None else None
                s = _start(name, span_type, parent, **kw)
                with self.lock:
                    self.runs[run_id] = s
                return s

            def _close(self, run_id: Any, error: BaseException | None = None) -> _trace.Span | None:
                with self.lock:
                    s = self.runs.pop(run_id, None)
                _finish(s, error)
                return s

            def on_chain_start(
                self,
                serialized: Any,
                inputs: Any,
                *,
                run_id: Any,
                parent_run_id: Any = None,
                metadata: Any = None,
                name: Any = None,
                **kw: Any,
            ) -> None:
                metadata = metadata or {}
                node = metadata.get("langgraph_node")
                label = name or node or (serialized or {}).get("name") or "chain"
                attrs: dict[str, Any] = {"langgraph.node": node} if node else {}
                if "langgraph_step" in metadata:
                    attrs["langgraph.step"] = metadata["langgraph_step"]
                s = self._open(run_id, parent_run_id, str(label), "chain", attributes=attrs)
                if _trace._state["capture_content"]:
                    s.attributes["input.value"] = _trace.content(inputs)

            def on_chain_end(self, outputs: Any, *, run_id: Any, **kw: Any) -> None:
                with self.lock:
                    s = self.runs.get(run_id)
                if s is not None and _trace._state["capture_content"]:
                    s.attributes["output.value"] = _trace.content(outputs)
                self._close(run_id)

            def on_chain_error(self, error: BaseException, *, run_id: Any, **kw: Any) -> None:
                # A GraphInterrupt is how LangGraph pauses for a human, not a failure.
                if type(error).__name__ in ("GraphInterrupt", "NodeInterrupt"):
                    with self.lock:
                        s = self.runs.get(run_id)
                    if s is not None:
                        s.add_event("interrupt")
                    self._close(run_id)
                    return
                self._close(run_id, error)

            def _model(self, serialized: Any, kw: dict[str, Any]) -> str:
                params = kw.get("invocation_params") or {}
                meta = kw.get("metadata") or {}
                return str(
                    params.get("model")
                    or params.get("model_name")
                    or meta.get("ls_model_name")
                    or (serialized or {}).get("name")
                    or "model"
                )

            def _llm(self, serialized: Any, kw: dict[str, Any], messages: Any) -> None:
                model = self._model(serialized, kw)
                meta = kw.get("metadata") or {}
                attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model, "llm.model_name": model}
                if meta.get("ls_provider"):
                    attrs["gen_ai.provider.name"] = meta["ls_provider"]
                params = kw.get("invocation_params") or {}
                if isinstance(params.get("temperature"), (int, float)):
                    attrs["gen_ai.request.temperature"] = params["temperature"]
                s = self._open(kw["run_id"], kw.get("parent_run_id"), f"chat {model}", "llm", kind="client", attributes=attrs)
                if _trace._state["capture_content"]:
                    s.attributes["gen_ai.input.messages"] = _trace.content(messages)

            def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
                self._llm(serialized, kw, [[getattr(m, "content", str(m)) for m in batch] for batch in messages])

            def on_llm_start(self, serialized: Any, prompts: Any, **kw: Any) -> None:
                self._llm(serialized, kw, prompts)

            def on_llm_end(self, response: Any, *, run_id: Any, **kw: Any) -> None:
                with self.lock:
                    s = self.runs.get(run_id)
                if s is not None:
                    tin, tout, model = _usage_of(response)
                    if tin is not None:
                        s.attributes["gen_ai.usage.input_tokens"] = tin
                        s.attributes["llm.token_count.prompt"] = tin
                    if tout is not None:
                        s.attributes["gen_ai.usage.output_tokens"] = tout
                        s.attributes["llm.token_count.completion"] = tout
                    if model:
                        s.attributes["gen_ai.response.model"] = model
                    if _trace._state["capture_content"]:
                        texts = [g.text for gens in response.generations for g in gens]
                        s.attributes["gen_ai.output.messages"] = _trace.content(texts)
                self._close(run_id)

            def on_llm_error(self, error: BaseException, *, run_id: Any, **kw: Any) -> None:
                self._close(run_id, error)

            def on_tool_start(
                self, serialized: Any, input_str: Any, *, run_id: Any, parent_run_id: Any = None, name: Any = None, **kw: Any
            ) -> None:
                tool = str(name or (serialized or {}).get("name") or "tool")
                attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool, "tool.name": tool}
                s = self._open(run_id, parent_run_id, f"execute_tool {tool}", "tool", attributes=attrs)
                if _trace._state["capture_content"]:
                    s.attributes["input.value"] = _trace.content(input_str)

            def on_tool_end(self, output: Any, *, run_id: Any, **kw: Any) -> None:
                with self.lock:
                    s = self.runs.get(run_id)
                if s is not None and _trace._state["capture_content"]:
                    s.attributes["output.value"] = _trace.content(str(output))
                self._close(run_id)

            def on_tool_error(self, error: BaseException, *, run_id: Any, **kw: Any) -> None:
                self._close(run_id, error)

        handler = OmiumCallbackHandler()
        # A context variable whose default is the handler: every run in every thread gets it.
        var: contextvars.ContextVar[Any] = contextvars.ContextVar("omium_langchain_handler", default=handler)
        register_configure_hook(var, inheritable=True)
        _installed["langgraph"] = True


def _ns(ts: Any) -> int | None:
    """A CrewAI event timestamp (an aware datetime) in Unix nanoseconds."""
    if ts is None:
        return None
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1_000


class _Slot:
    """One CrewAI scope (a flow, method, crew, task, agent, LLM call or tool use) on its way to
    becoming a span: it can be touched first by its own start, its end, or a child's event."""

    __slots__ = ("span", "started", "end")

    def __init__(self, span: _trace.Span) -> None:
        self.span = span
        self.started = False
        self.end: tuple[int | None, str | None, dict[str, Any]] | None = None


class _CrewSpans:
    """Builds spans from CrewAI's events whatever order its thread pool runs the handlers in.

    The bus hands each event to a pool of threads, so a method's "finished" can be handled before
    its "started", and a child before its parent. Scopes are therefore keyed by CrewAI's own
    event ids (a start event's id; an end event names it as ``started_event_id``), a span is
    recorded once both its start and its end have been seen, and its parent and trace are fixed by
    the scope stack CrewAI copied into the handler's context, not by arrival order.
    """

    MAX_SLOTS = 10_000

    def __init__(self) -> None:
        from collections import OrderedDict

        self.lock = threading.Lock()
        self.slots: OrderedDict[str, _Slot] = OrderedDict()
        try:  # the ancestors of the event being handled, outermost first
            from crewai.events import event_context

            self.stack_var: Any = event_context._event_id_stack
        except (ImportError, AttributeError):  # an older or newer CrewAI: parent ids only
            self.stack_var = None

    def _slot(self, event_id: str, parent_id: str | None) -> _Slot:
        slot = self.slots.get(event_id)
        if slot is None:
            parent = self.slots.get(parent_id) if parent_id else None
            span = _start("crewai", "chain", parent.span if parent else None)
            slot = self.slots[event_id] = _Slot(span)
            while len(self.slots) > self.MAX_SLOTS:
                self.slots.popitem(last=False)
        return slot

    def _ancestors(self, e: Any) -> list[str]:
        """Event ids of the scopes enclosing ``e``, outermost first."""
        if self.stack_var is not None:
            ids = [event_id for event_id, _ in self.stack_var.get()]
            if ids and ids[-1] == e.event_id:
                ids.pop()
            if ids:
                return ids
        return [e.parent_event_id] if e.parent_event_id else []

    def _chain(self, e: Any) -> _Slot | None:
        """Makes sure every ancestor of ``e`` has a slot (parents first) and returns the nearest."""
        parent_id = None
        for event_id in self._ancestors(e):
            self._slot(event_id, parent_id)
            parent_id = event_id
        return self.slots.get(parent_id) if parent_id else None

    def begin(self, e: Any, name: str, span_type: str, *, kind: str = "internal", attributes: dict[str, Any] | None = None) -> None:
        with self.lock:
            self._chain(e)
            slot = self._slot(e.event_id, e.parent_event_id)
            s = slot.span
            s.name, s.span_type, s.kind = name, span_type, kind
            s.start_ns = _ns(getattr(e, "timestamp", None)) or s.start_ns
            if attributes:
                s.attributes.update(attributes)
            slot.started = True
            done = slot.end
        if done is not None:
            self._record(slot)

    def finish(self, e: Any, error: str | None = None, **attrs: Any) -> None:
        started_id = getattr(e, "started_event_id", None)
        if not started_id:  # CrewAI found no open scope for it: nothing to close
            return
        with self.lock:
            self._chain(e)
            slot = self._slot(started_id, e.parent_event_id)
            slot.end = (_ns(getattr(e, "timestamp", None)), error, {k: v for k, v in attrs.items() if v is not None})
            ready = slot.started
        if ready:
            self._record(slot)

    @staticmethod
    def _record(slot: _Slot) -> None:
        assert slot.end is not None
        end_ns, error, attrs = slot.end
        slot.span.attributes.update(attrs)
        if error:
            slot.span.status, slot.span.status_message = "error", error
        slot.span.end(end_ns)


def instrument_crewai() -> None:
    """Traces CrewAI flows and their methods, crews, tasks, agents, LLM calls and tool uses
    as Omium spans (idempotent)."""
    with _lock:
        if _installed.get("crewai"):
            return
        from crewai.events import crewai_event_bus
        from crewai.events.types import agent_events as ae
        from crewai.events.types import crew_events as ce
        from crewai.events.types import flow_events as fe
        from crewai.events.types import llm_events as le
        from crewai.events.types import task_events as te
        from crewai.events.types import tool_usage_events as tu

        spans = _CrewSpans()
        begin, finish = spans.begin, spans.finish

        def on(*event_types: Any) -> Any:
            def register(handler: Any) -> Any:
                for event_type in event_types:
                    crewai_event_bus.on(event_type)(handler)
                return handler

            return register

        def failed(source: Any, e: Any) -> None:
            finish(e, error=str(getattr(e, "error", None) or "failed"))

        on(
            fe.MethodExecutionFailedEvent,
            ce.CrewKickoffFailedEvent,
            te.TaskFailedEvent,
            ae.AgentExecutionErrorEvent,
            le.LLMCallFailedEvent,
            tu.ToolUsageErrorEvent,
            fe.FlowFailedEvent,
        )(failed)

        @on(
            fe.FlowFinishedEvent,
            fe.MethodExecutionFinishedEvent,
            ce.CrewKickoffCompletedEvent,
            te.TaskCompletedEvent,
            ae.AgentExecutionCompletedEvent,
            tu.ToolUsageFinishedEvent,
        )
        def _finished(source: Any, e: Any) -> None:
            finish(e)

        @on(fe.FlowStartedEvent)
        def _flow_start(source: Any, e: Any) -> None:
            begin(e, f"flow {e.flow_name}", "chain", attributes={"crewai.flow": e.flow_name})

        @on(fe.MethodExecutionStartedEvent)
        def _method_start(source: Any, e: Any) -> None:
            begin(e, e.method_name, "chain", attributes={"crewai.flow": e.flow_name, "crewai.method": e.method_name})

        @on(ce.CrewKickoffStartedEvent)
        def _crew_start(source: Any, e: Any) -> None:
            name = getattr(e, "crew_name", None) or "crew"
            begin(e, f"crew {name}", "chain", attributes={"crewai.crew": name})

        @on(te.TaskStartedEvent)
        def _task_start(source: Any, e: Any) -> None:
            task = getattr(e, "task", None)
            name = getattr(task, "name", None) or getattr(task, "description", "task")
            begin(e, f"task {str(name)[:60]}", "chain")

        @on(ae.AgentExecutionStartedEvent)
        def _agent_start(source: Any, e: Any) -> None:
            role = str(getattr(getattr(e, "agent", None), "role", "agent"))
            begin(e, role, "agent", attributes={"crewai.agent.role": role})

        @on(le.LLMCallStartedEvent)
        def _llm_start(source: Any, e: Any) -> None:
            model = e.model or "model"
            attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model, "llm.model_name": model}
            begin(e, f"chat {model}", "llm", kind="client", attributes=attrs)

        @on(le.LLMCallCompletedEvent)
        def _llm_end(source: Any, e: Any) -> None:
            usage = getattr(e, "usage", None) or {}
            tin = usage.get("prompt_tokens", usage.get("input_tokens")) if isinstance(usage, dict) else None
            tout = usage.get("completion_tokens", usage.get("output_tokens")) if isinstance(usage, dict) else None
            finish(e, **{"gen_ai.usage.input_tokens": tin, "gen_ai.usage.output_tokens": tout})

        @on(tu.ToolUsageStartedEvent)
        def _tool_start(source: Any, e: Any) -> None:
            tool = getattr(e, "tool_name", "tool")
            attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool, "tool.name": tool}
            begin(e, f"execute_tool {tool}", "tool", attributes=attrs)

        _installed["crewai"] = True
