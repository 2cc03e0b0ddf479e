"""The worker test_openai_agents.py runs and SIGKILLs: an OpenAI Agents SDK agent on a scripted
fake model (no network) made durable with omium.openai_agents, inside an Omium workflow. The
`orders` agent calls `charge`, then `ship`, then hands off to `closer`, which answers. Every
model call and tool call logs ``<what> <pid>`` (fsynced); with `kill` as third argument the
process SIGKILLs itself inside its first `ship` call.

    python openai_agents_worker.py STORE LOG [kill]
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
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

# Set by main: where calls are logged, and whether `ship` kills the process.
log: str | None = None
kill = False


def logline(line: str) -> None:
    if log is None:
        return
    with open(log, "a") as f:
        f.write(f"{line} {os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())


def call(name: str, arguments: dict[str, Any], n: int) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(type="function_call", call_id=f"c{n}", name=name, arguments=json.dumps(arguments), id=f"fc{n}")


def text(t: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id="m1",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=t, annotations=[])],
    )


class Scripted(Model):
    """A fake model: what it answers depends on the tool results in its input."""

    def __init__(self, who: str) -> None:
        self.who = who

    async def get_response(self, system_instructions, input, *args: Any, **kwargs: Any) -> ModelResponse:
        done = [i for i in input if isinstance(i, dict) and i.get("type") == "function_call_output"]
        logline(f"{self.who}{len(done) + 1}")
        if self.who == "closer":
            output = [text("order o-7 closed")]
        elif len(done) == 0:
            output = [call("charge", {"order": "o-7", "amount": 120}, 1)]
        elif len(done) == 1:
            output = [call("ship", {"order": "o-7"}, 2)]
        else:
            output = [call("transfer_to_closer", {}, 3)]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

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
    logline("charge")
    return f"charged {amount} for {order}"


@oa.function_tool
def ship(order: str) -> str:
    """Ships an order."""
    logline("ship")
    if kill:
        os.kill(os.getpid(), signal.SIGKILL)
    return f"shipped {order}"


closer = Agent(name="closer", model=Scripted("closer"))
orders_agent = oa.durable(Agent(name="orders", model=Scripted("model"), tools=[charge, ship], handoffs=[closer]))


@omium.workflow("orders")
async def orders(request: str) -> str:
    result = await Runner.run(orders_agent, request, run_config=oa.run_config())
    return str(result.final_output)


async def main(store: str) -> None:
    agents.set_trace_processors([oa.OmiumTracingProcessor()])
    omium.init(path=store)
    print(await orders.run("handle order o-7", execution_id="order-o-7"))
    omium.shutdown()


if __name__ == "__main__":
    log = sys.argv[2]
    kill = len(sys.argv) > 3 and sys.argv[3] == "kill"
    asyncio.run(main(sys.argv[1]))
