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

        open_spans: dict[tuple[str, str], _trace.Span] = {}
        stack_lock = threading.Lock()
        flows: dict[str, _trace.Span] = {}

        def begin(key: tuple[str, str], name: str, span_type: str, parent_key: tuple[str, str] | None = None, **kw: Any) -> None:
            with stack_lock:
                parent = open_spans.get(parent_key) if parent_key else None
                if parent is None and key[0] != "flow":
                    parent = next(reversed(flows.values()), None)
            s = _start(name, span_type, parent, **kw)
            with stack_lock:
                open_spans[key] = s
                if key[0] == "flow":
                    flows[key[1]] = s

        def end(key: tuple[str, str], error: str | None = None, **attrs: Any) -> None:
            with stack_lock:
                s = open_spans.pop(key, None)
                if key[0] == "flow":
                    flows.pop(key[1], None)
            if s is not None:
                s.attributes.update({k: v for k, v in attrs.items() if v is not None})
            _finish(s, error)

        def on(event_type: Any) -> Any:
            return crewai_event_bus.on(event_type)

        @on(fe.FlowStartedEvent)
        def _flow_start(source: Any, e: Any) -> None:
            begin(("flow", e.flow_name), f"flow {e.flow_name}", "chain", attributes={"crewai.flow": e.flow_name})

        @on(fe.FlowFinishedEvent)
        def _flow_end(source: Any, e: Any) -> None:
            end(("flow", e.flow_name))

        @on(fe.MethodExecutionStartedEvent)
        def _method_start(source: Any, e: Any) -> None:
            begin(
                ("method", f"{e.flow_name}.{e.method_name}"),
                e.method_name,
                "chain",
                ("flow", e.flow_name),
                attributes={"crewai.flow": e.flow_name, "crewai.method": e.method_name},
            )

        @on(fe.MethodExecutionFinishedEvent)
        def _method_end(source: Any, e: Any) -> None:
            end(("method", f"{e.flow_name}.{e.method_name}"))

        @on(fe.MethodExecutionFailedEvent)
        def _method_failed(source: Any, e: Any) -> None:
            end(("method", f"{e.flow_name}.{e.method_name}"), error=str(getattr(e, "error", "failed")))

        @on(ce.CrewKickoffStartedEvent)
        def _crew_start(source: Any, e: Any) -> None:
            name = getattr(e, "crew_name", None) or "crew"
            begin(("crew", str(id(source))), f"crew {name}", "chain", attributes={"crewai.crew": name})

        @on(ce.CrewKickoffCompletedEvent)
        def _crew_end(source: Any, e: Any) -> None:
            end(("crew", str(id(source))))

        @on(te.TaskStartedEvent)
        def _task_start(source: Any, e: Any) -> None:
            task = getattr(e, "task", None)
            name = getattr(task, "name", None) or getattr(task, "description", "task")
            begin(("task", str(id(task))), f"task {str(name)[:60]}", "chain")

        @on(te.TaskCompletedEvent)
        def _task_end(source: Any, e: Any) -> None:
            end(("task", str(id(getattr(e, "task", None)))))

        @on(ae.AgentExecutionStartedEvent)
        def _agent_start(source: Any, e: Any) -> None:
            agent = getattr(e, "agent", None)
            role = getattr(agent, "role", "agent")
            begin(
                ("agent", str(id(agent))),
                str(role),
                "agent",
                ("task", str(id(getattr(e, "task", None)))),
                attributes={"crewai.agent.role": str(role)},
            )

        @on(ae.AgentExecutionCompletedEvent)
        def _agent_end(source: Any, e: Any) -> None:
            end(("agent", str(id(getattr(e, "agent", None)))))

        @on(le.LLMCallStartedEvent)
        def _llm_start(source: Any, e: Any) -> None:
            model = e.model or "model"
            attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model, "llm.model_name": model}
            begin(("llm", e.call_id), f"chat {model}", "llm", None, kind="client", attributes=attrs)

        @on(le.LLMCallCompletedEvent)
        def _llm_end(source: Any, e: Any) -> None:
            usage = getattr(e, "usage", None) or {}
            tin = usage.get("prompt_tokens", usage.get("input_tokens")) if isinstance(usage, dict) else None
            tout = usage.get("completion_tokens", usage.get("output_tokens")) if isinstance(usage, dict) else None
            end(("llm", e.call_id), **{"gen_ai.usage.input_tokens": tin, "gen_ai.usage.output_tokens": tout})

        @on(le.LLMCallFailedEvent)
        def _llm_failed(source: Any, e: Any) -> None:
            end(("llm", e.call_id), error=str(getattr(e, "error", "failed")))

        @on(tu.ToolUsageStartedEvent)
        def _tool_start(source: Any, e: Any) -> None:
            tool = getattr(e, "tool_name", "tool")
            attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool, "tool.name": tool}
            begin(("tool", f"{tool}:{getattr(e, 'run_attempts', '')}:{id(source)}"), f"execute_tool {tool}", "tool", None, attributes=attrs)

        @on(tu.ToolUsageFinishedEvent)
        def _tool_end(source: Any, e: Any) -> None:
            tool = getattr(e, "tool_name", "tool")
            end(("tool", f"{tool}:{getattr(e, 'run_attempts', '')}:{id(source)}"))

        @on(tu.ToolUsageErrorEvent)
        def _tool_failed(source: Any, e: Any) -> None:
            tool = getattr(e, "tool_name", "tool")
            end(("tool", f"{tool}:{getattr(e, 'run_attempts', '')}:{id(source)}"), error=str(getattr(e, "error", "failed")))

        _installed["crewai"] = True
