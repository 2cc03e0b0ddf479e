"""The worker test_pydantic_ai.py runs and SIGKILLs: a Pydantic AI agent (a FunctionModel, no
network) on OmiumDurability inside an Omium workflow. The model asks for `charge`, then `ship`,
then answers; every model request and tool call logs ``<what> <pid>`` (fsynced). With `kill` as
third argument, the process SIGKILLs itself inside its first `ship` call.

    python pydantic_ai_worker.py STORE LOG [kill]
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import omium
from omium.pydantic_ai import OmiumDurability
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

store, log = sys.argv[1], sys.argv[2]
kill = len(sys.argv) > 3 and sys.argv[3] == "kill"


def logline(line: str) -> None:
    with open(log, "a") as f:
        f.write(f"{line} {os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())


def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    returned = [p.tool_name for m in messages for p in getattr(m, "parts", []) if p.part_kind == "tool-return"]
    logline(f"model{len(returned) + 1}")
    if not returned:
        return ModelResponse(parts=[ToolCallPart("charge", {"order": "o-7", "amount": 120})])
    if returned == ["charge"]:
        return ModelResponse(parts=[ToolCallPart("ship", {"order": "o-7"})])
    return ModelResponse(parts=[TextPart(f"done: {', '.join(returned)}")])


agent = Agent(FunctionModel(model), name="orders", capabilities=[OmiumDurability()])


@agent.tool_plain
def charge(order: str, amount: int) -> str:
    logline("charge")
    return f"charged {amount} for {order}"


@agent.tool_plain
def ship(order: str) -> str:
    logline("ship")
    if kill:
        os.kill(os.getpid(), signal.SIGKILL)
    return f"shipped {order}"


@omium.workflow("orders")
async def orders(request: str) -> str:
    return (await agent.run(request)).output


async def main() -> None:
    omium.init(path=store)
    print(await orders.run("handle order o-7", execution_id="order-o-7"))
    omium.shutdown()


asyncio.run(main())
