"""A Pydantic AI agent made durable with Omium (no API key needed: a scripted FunctionModel
stands in for the LLM — put your own model in its place). The run's process dies inside a tool
call; the same execution, run again, answers the model requests and tool calls that finished
from their checkpoints and only does the rest.

    python examples/python/pydantic_ai_agent.py [STORE_DIR]
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile

import omium
from omium.pydantic_ai import OmiumDurability
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

CRASH = "--crash-in-ship"


def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """The stand-in LLM: charge, then ship, then answer."""
    done = [p.tool_name for m in messages for p in getattr(m, "parts", []) if p.part_kind == "tool-return"]
    print(f"   model request {len(done) + 1} (live)")
    if not done:
        return ModelResponse(parts=[ToolCallPart("charge", {"order": "o-7", "amount": 120})])
    if done == ["charge"]:
        return ModelResponse(parts=[ToolCallPart("ship", {"order": "o-7"})])
    return ModelResponse(parts=[TextPart("order o-7 charged and shipped")])


agent = Agent(FunctionModel(model), name="orders", capabilities=[OmiumDurability()])


@agent.tool_plain
def charge(order: str, amount: int) -> str:
    print(f"   charge {order} {amount} EUR (live)")
    return f"charged {amount}"


@agent.tool_plain
def ship(order: str) -> str:
    print(f"   ship {order} (live)")
    if CRASH in sys.argv:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # the machine dies mid-call
    return "shipped"


@omium.workflow("orders")
async def orders(request: str) -> str:
    return (await agent.run(request)).output


async def run(store: str) -> str:
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
    steps = [c.name for c in omium.history("order-o-7")]
    omium.shutdown()
    print(f"3. its steps: {', '.join(steps)}")


if __name__ == "__main__":
    store = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="omium-pydantic-ai-")
    if CRASH in sys.argv:
        asyncio.run(run(store))
    else:
        main(store)
