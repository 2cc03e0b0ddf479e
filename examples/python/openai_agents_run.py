"""An OpenAI Agents SDK run made durable with Omium, its trace recorded as Omium spans (no API
key needed: a scripted model stands in for the LLM — use your own model or model name in its
place). The run's process dies inside a tool call; the same execution, run again, answers the
model calls and tool calls that finished from their checkpoints, hands off to a second agent and
finishes.

    python examples/python/openai_agents_run.py [STORE_DIR]
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any

import agents
import omium
from agents import Agent, Runner
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.usage import Usage
from omium import openai_agents as oa
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

CRASH = "--crash-in-ship"


class StandIn(Model):
    """The stand-in LLM: charge, ship, hand off to the closer; the closer answers."""

    def __init__(self, who: str) -> None:
        self.who = who

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> ModelResponse:
        done = sum(1 for i in input if isinstance(i, dict) and i.get("type") == "function_call_output")
        print(f"   {self.who} model call (live)")
        if self.who == "closer":
            content = [ResponseOutputText(type="output_text", text="order o-7 closed", annotations=[])]
            out: list[Any] = [ResponseOutputMessage(id="m", type="message", role="assistant", status="completed", content=content)]
        else:
            name, arguments = [("charge", {"order": "o-7", "amount": 120}), ("ship", {"order": "o-7"}), ("transfer_to_closer", {})][done]
            out = [ResponseFunctionToolCall(type="function_call", call_id=f"c{done}", name=name, arguments=json.dumps(arguments))]
        return ModelResponse(output=out, usage=Usage(), response_id=None)

    async def stream_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> Any:
        """The same answer as one completed response event (what a streamed run reads)."""
        r = await self.get_response(system_instructions, input, *args, **kwargs)
        response = Response(
            id="r",
            created_at=0,
            model="scripted",
            object="response",
            output=r.output,
            parallel_tool_calls=False,
            tool_choice="auto",
            tools=[],
        )
        response.tools = []
        yield ResponseCompletedEvent(response=response, type="response.completed", sequence_number=0)


@oa.function_tool
def charge(order: str, amount: int) -> str:
    """Charges an order."""
    print(f"   charge {order} {amount} EUR (live)")
    return f"charged {amount}"


@oa.function_tool
def ship(order: str) -> str:
    """Ships an order."""
    print(f"   ship {order} (live)")
    if CRASH in sys.argv:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # the machine dies mid-call
    return "shipped"


closer = Agent(name="closer", model=StandIn("closer"))
agent = oa.durable(Agent(name="orders", model=StandIn("orders"), tools=[charge, ship], handoffs=[closer]))


@omium.workflow("orders")
async def orders(request: str) -> str:
    result = await Runner.run(agent, request, run_config=oa.run_config())
    return str(result.final_output)


async def run(store: str) -> str:
    agents.set_trace_processors([oa.OmiumTracingProcessor()])  # traces to Omium, none to OpenAI
    omium.init(path=store)
    try:
        return await orders.run("handle order o-7", execution_id="order-o-7")
    finally:
        omium.shutdown()


def main(store: str) -> None:
    print("1. a worker runs the agent and dies inside the `ship` tool call:")
    sys.stdout.flush()
    crashed = subprocess.run([sys.executable, __file__, store, CRASH])
    print(f"   worker ended by signal {-crashed.returncode} (SIGKILL)")
    print("2. the same execution, run again (only what did not finish runs):")
    print(f"   output: {asyncio.run(run(store))}")
    omium.init(path=store)
    names = {s["name"] for s in omium.spans("order-o-7")}
    omium.shutdown()
    print(f"3. spans of the SDK's trace: {', '.join(sorted(n for n in names if n.startswith(('agent ', 'handoff', 'execute_tool'))))}")


if __name__ == "__main__":
    store = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="omium-openai-agents-")
    if CRASH in sys.argv:
        asyncio.run(run(store))
    else:
        main(store)
