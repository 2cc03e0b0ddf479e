"""Pydantic AI agents on omium.pydantic_ai.OmiumDurability (Pydantic AI's own TestModel and
FunctionModel, no network): each model request and tool call is a step of the Omium execution
the agent runs in; a run SIGKILLed inside a tool call resumes without repeating the model
requests and tool calls that finished; streamed runs replay; outside an execution nothing is
recorded."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import omium
import pytest
from omium.pydantic_ai import OmiumDurability
from pydantic_ai import Agent
from pydantic_ai.models.function import FunctionModel
from pydantic_ai.models.test import TestModel

WORKER = Path(__file__).with_name("pydantic_ai_worker.py")


def calls(log: Path) -> list[tuple[str, int]]:
    return [(what, int(pid)) for what, pid in (line.split() for line in log.read_text().splitlines())]


def test_a_sigkilled_agent_run_resumes_without_repeating_finished_calls(tmp_path: Path) -> None:
    store, log = tmp_path / "store", tmp_path / "log"
    first = subprocess.run([sys.executable, str(WORKER), str(store), str(log), "kill"], capture_output=True, text=True, timeout=120)
    assert first.returncode == -signal.SIGKILL, first.stderr
    killed = calls(log)
    assert [w for w, _ in killed] == ["model1", "charge", "model2", "ship"], killed

    second = subprocess.run([sys.executable, str(WORKER), str(store), str(log)], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "done: charge, ship"
    resumed = calls(log)[len(killed) :]
    # Only the call in flight at the kill runs again, then the run goes on live.
    assert [w for w, _ in resumed] == ["ship", "model3"], resumed

    omium.init(path=store)
    try:
        steps = [c.name for c in omium.history("order-o-7")]
        assert omium.get_execution("order-o-7").status == "completed"
    finally:
        omium.shutdown()
    assert steps == [
        "orders__model.request",
        "orders__function_toolset__<agent>.call_tool:charge",
        "orders__model.request",
        "orders__function_toolset__<agent>.call_tool:ship",
        "orders__model.request",
    ], steps


@pytest.fixture
def store(tmp_path: Path):
    omium.init(path=tmp_path / "store", durability="none")
    yield
    omium.shutdown()


async def test_test_model_runs_streams_and_replays_from_checkpoints(store: None) -> None:
    streamed = {"n": 0}

    async def stream(messages, info):
        streamed["n"] += 1
        for word in ["Hello", " ", "world"]:
            yield word

    writer = Agent(FunctionModel(stream_function=stream), name="writer", capabilities=[OmiumDurability()])
    tester = Agent(TestModel(), name="tester", capabilities=[OmiumDurability()])
    added: list[tuple[int, int]] = []

    @tester.tool_plain
    def add(a: int, b: int) -> int:
        added.append((a, b))
        return a + b

    @omium.workflow("pair")
    async def pair(prompt: str) -> str:
        async with writer.run_stream(prompt) as r:
            text = await r.get_output()
        result = await tester.run("add two numbers")
        return f"{text} | {result.output}"

    out = await pair.run("hi", execution_id="p1")
    assert out.startswith("Hello world | ") and len(added) == 1 and streamed["n"] == 1
    history = omium.history("p1")
    assert [c.name for c in history] == [
        "writer__model.request_stream",
        "tester__model.request",
        "tester__function_toolset__<agent>.call_tool:add",
        "tester__model.request",
    ]
    # Roll back to the first step and run again: the stream and the tool call come from their
    # checkpoints (neither the model nor the tool is called), the rest is recomputed the same.
    omium.rollback("p1", to=history[2].id)
    assert await pair.run("hi", execution_id="p1") == out
    assert len(added) == 1 and streamed["n"] == 1

    # Outside an Omium execution the agent runs as it would without the capability.
    assert (await tester.run("add")).output == out.split(" | ")[1]
    assert len(added) == 2
    assert len(omium.executions()) == 1


async def test_mcp_tool_calls_are_steps_and_replay(store: None, tmp_path: Path) -> None:
    from fastmcp.client.transports import StdioTransport
    from pydantic_ai.mcp import MCPToolset
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart

    log = tmp_path / "mcp.log"
    server = Path(__file__).with_name("mcp_stock_server.py")

    def model(messages, info):
        done = [p for m in messages for p in getattr(m, "parts", []) if p.part_kind == "tool-return"]
        if not done:
            return ModelResponse(parts=[ToolCallPart("stock", {"item": "keyboard"})])
        return ModelResponse(parts=[TextPart(f"in stock: {done[0].content}")])

    # A real MCP server (stdio, the `mcp` package's FastMCP) in a process of its own.
    tools = MCPToolset(StdioTransport(command=sys.executable, args=[str(server)], env={"MCP_LOG": str(log)}), id="stock")
    agent = Agent(FunctionModel(model), name="shop", toolsets=[tools], capabilities=[OmiumDurability()])

    @omium.workflow("shop")
    async def shop(question: str) -> str:
        return (await agent.run(question)).output

    assert await shop.run("stock?", execution_id="m1") == "in stock: 7"
    history = omium.history("m1")
    assert [c.name for c in history] == [
        "shop__mcp_server__stock.get_tools",
        "shop__model.request",
        "shop__mcp_server__stock.call_tool",
        "shop__model.request",
    ]
    # Rolled back and run again: the tool list and the call come from their checkpoints.
    omium.rollback("m1", to=history[-1].id)
    assert await shop.run("stock?", execution_id="m1") == "in stock: 7"
    assert log.read_text().splitlines() == ["stock keyboard"]
