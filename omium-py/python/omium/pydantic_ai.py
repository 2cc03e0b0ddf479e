"""Durable Pydantic AI agents on Omium: every model request and tool call of an agent run is a
durable step of the Omium execution it runs in.

Built on Pydantic AI's public durable-execution interface, as its own Temporal, DBOS and Prefect
integrations are: :class:`OmiumDurability` is a ``BaseDurabilityCapability`` whose durable unit
is an Omium step and whose container is an Omium execution (an ``@omium.workflow`` run, or code
after ``omium.set_execution_context``)::

    from pydantic_ai import Agent
    from omium.pydantic_ai import OmiumDurability

    agent = Agent("openai:gpt-5", name="support", capabilities=[OmiumDurability()])

    @omium.workflow("support")
    async def support(question: str) -> str:
        return (await agent.run(question)).output

A run killed half-way and run again (the same execution id) answers the model requests and tool
calls that finished from their checkpoints, in order, without calling the model or the tool
again, and goes on live from the first one that did not finish. Outside an Omium execution the
agent runs as it would without the capability.

What is durable: model requests (streamed ones too: the events are delivered live inside the
step, the response is what is recorded), tool calls of function toolsets and MCP servers, tool
discovery, and the other operations Pydantic AI routes through durable units. What is not: work
a tool does outside its own call (its side effects happen again if the process dies inside the
call, as with every engine), and waits between polls of a background model job (plain sleeps:
the process stays up, a recovery waits again).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from pydantic_ai.agent import EventStreamHandler
from pydantic_ai.durable_exec import (
    JSON_CODEC,
    BaseDurabilityCapability,
    DurabilityEngineSpec,
    DurableOperationId,
    JournalCallableOperationBackend,
    RoleBasedOperationConfig,
)
from pydantic_ai.models import Model
from pydantic_ai.tools import AgentDepsT

from . import _runtime
from ._steps import unit as _step

__all__ = ["OmiumDurability"]


class _OmiumOperationBackend(JournalCallableOperationBackend[None]):
    """Runs each of Pydantic AI's durable operations as an Omium step named after it."""

    async def execute(
        self,
        *,
        operation_id: DurableOperationId,
        name: str,
        body: Callable[[], Awaitable[object]],
        cache_key: tuple[object, ...],
        config: None,
    ) -> object:
        return await _step(name)(body)


@dataclass(init=False, kw_only=True)
class OmiumDurability(BaseDurabilityCapability[AgentDepsT]):
    """Makes an agent durable on Omium: each model request and tool call of a run inside an Omium
    execution is a step of that execution.

    Args:
        models: additional models by key, for runs that pick a model at run time
            (``agent.run(model="fast")``); the agent's own model is ``"default"``.
        event_stream_handler: an event stream handler to use instead of the agent's.
        name: the agent's name in step names (default: the agent's ``name``, which the agent must
            then have). Step names are journal data: keep them stable across deployments.
    """

    engine_spec = DurabilityEngineSpec(
        engine_name="Omium",
        durable_unit_noun="step",
        durable_unit_plural="steps",
        durable_container_noun="execution",
        # Results are recorded as JSON, so they read back in any process and version.
        codec=JSON_CODEC,
        wrapped_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        # Steps run in the execution's own process: an MCP server keeps one session per run.
        toolset_lifecycles={"function": "enter-always", "mcp": "enter-in-durable-unit", "dynamic": "enter-never"},
        journal_discovery=True,
        # Journal positions are taken in call order: parallel tool calls would race for them.
        sequential_tools_in_durable_context=True,
        tool_config_key="omium",
    )

    def __init__(
        self,
        *,
        models: Mapping[str, Model] | None = None,
        event_stream_handler: EventStreamHandler[AgentDepsT] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(models=models, event_stream_handler=event_stream_handler, name=name)

    @property
    def in_durable_context(self) -> bool:
        return _runtime.current.get() is not None

    @property
    def in_durable_unit(self) -> bool:
        # Inside an Omium step (one of ours, or the user's own around a tool), nothing more is
        # recorded: the step's result is.
        return _runtime.current_step.get() is not None or super().in_durable_unit

    def get_durable_operation_backend(self) -> _OmiumOperationBackend:
        config: RoleBasedOperationConfig[None] = RoleBasedOperationConfig(model=None, event=None, capability=None, tool=None)
        return _OmiumOperationBackend(agent_name=self.name, config=config)
