"""OpenAI Agents SDK runs on omium.openai_agents (a scripted fake model, no network): model calls
and tool calls are steps of the Omium execution the run is in; a run SIGKILLed inside a tool call
resumes without repeating the finished calls, through a handoff to a second agent; the SDK's
traces (agents, tool calls, handoffs) are recorded as Omium spans; outside an execution nothing
is recorded."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import omium

WORKER = Path(__file__).with_name("openai_agents_worker.py")


def calls(log: Path) -> list[str]:
    """What the worker logged, in order (without the pids)."""
    return [line.split()[0] for line in log.read_text().splitlines()]


def test_a_sigkilled_run_resumes_through_the_handoff_without_repeating_finished_calls(tmp_path: Path) -> None:
    store, log = tmp_path / "store", tmp_path / "log"
    first = subprocess.run([sys.executable, str(WORKER), str(store), str(log), "kill"], capture_output=True, text=True, timeout=120)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert calls(log) == ["model1", "charge", "model2", "ship"]

    second = subprocess.run([sys.executable, str(WORKER), str(store), str(log)], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "order o-7 closed"
    # Only the tool call in flight at the kill runs again; then the hand-off and the closer.
    assert calls(log)[4:] == ["ship", "model3", "closer4"]

    omium.init(path=store)
    try:
        assert omium.get_execution("order-o-7").status == "completed"
        assert [c.name for c in omium.history("order-o-7")] == [
            "openai_agents.model:orders",
            "openai_agents.tool:charge",
            "openai_agents.model:orders",
            "openai_agents.tool:ship",
            "openai_agents.model:orders",
            "openai_agents.model:closer",
        ]
        spans = omium.spans("order-o-7")
    finally:
        omium.shutdown()
    by_id = {s["span_id"]: s for s in spans}
    names = [s["name"] for s in spans]
    # The SDK's trace of the resumed run: both agents, the tool calls, the hand-off between them.
    for name in ("agent orders", "agent closer", "execute_tool ship", "handoff orders -> closer"):
        assert name in names, names
    ship = next(s for s in spans if s["name"] == "execute_tool ship" and s["status"] == "ok" and s["end_ns"] > 0)
    assert ship["span_type"] == "tool" and ship["attributes"]["gen_ai.tool.name"] == "ship"
    # A tool span hangs under its agent's span, in the execution's trace.
    ancestors = []
    at = ship
    while at.get("parent") in by_id:
        at = by_id[at["parent"]]
        ancestors.append(at["name"])
    assert "agent orders" in ancestors and ancestors[-1] == "workflow orders", ancestors


def test_outside_an_execution_a_durable_agent_runs_as_the_sdks_own(tmp_path: Path) -> None:
    import asyncio

    import agents
    from agents import Runner

    sys.path.insert(0, str(WORKER.parent))
    try:
        import openai_agents_worker as w
    finally:
        sys.path.remove(str(WORKER.parent))
    from omium import openai_agents as oa

    agents.set_trace_processors([oa.OmiumTracingProcessor()])
    w.log, w.kill = str(tmp_path / "log"), False
    omium.init(path=tmp_path / "store", durability="none")
    try:
        result = asyncio.run(Runner.run(w.orders_agent, "handle order o-7", run_config=oa.run_config()))
        assert result.final_output == "order o-7 closed"
        assert calls(tmp_path / "log") == ["model1", "charge", "model2", "ship", "model3", "closer4"]
        # Nothing recorded: no execution, no steps.
        assert omium.executions() == []
        # durable() is idempotent: a durable agent's tools are not wrapped twice.
        again = oa.durable(w.orders_agent)
        assert [t.on_invoke_tool for t in again.tools] == [t.on_invoke_tool for t in w.orders_agent.tools]
    finally:
        omium.shutdown()
        agents.set_trace_processors([])


def test_models_looked_up_by_name_through_a_provider_are_durable(tmp_path: Path) -> None:
    import asyncio

    import agents
    from agents import Agent, Runner
    from agents.models.interface import ModelProvider

    sys.path.insert(0, str(WORKER.parent))
    try:
        import openai_agents_worker as w
    finally:
        sys.path.remove(str(WORKER.parent))
    from omium import openai_agents as oa

    class Provider(ModelProvider):
        """A fake model provider: the scripted model under every name."""

        def get_model(self, model_name):
            return w.Scripted("model" if model_name == "scripted-orders" else "closer")

    agents.set_trace_processors([])
    w.log, w.kill = str(tmp_path / "log"), False
    closer = Agent(name="closer", model="scripted-closer")
    agent = oa.durable(Agent(name="orders", model="scripted-orders", tools=[w.charge, w.ship], handoffs=[closer]))

    @omium.workflow("by-name")
    async def flow(request: str) -> str:
        return str((await Runner.run(agent, request, run_config=oa.run_config(Provider()))).final_output)

    omium.init(path=tmp_path / "store", durability="none")
    try:
        assert asyncio.run(flow.run("handle order o-7", execution_id="n1")) == "order o-7 closed"
        history = omium.history("n1")
        assert [c.name for c in history][:2] == ["openai_agents.model:scripted-orders", "openai_agents.tool:charge"]
        assert history[-1].name == "openai_agents.model:scripted-closer"
        # Rolled back to the second model call, a run again answers the first three calls from
        # their checkpoints: the provider's model and the tool are not called again.
        omium.rollback("n1", to=history[2].id)
        before = len(calls(tmp_path / "log"))
        assert asyncio.run(flow.run("handle order o-7", execution_id="n1")) == "order o-7 closed"
        assert calls(tmp_path / "log")[before:] == ["ship", "model3", "closer4"]
    finally:
        omium.shutdown()


def test_a_streamed_run_records_each_model_stream_as_a_step_and_replays(tmp_path: Path) -> None:
    import asyncio

    import agents
    from agents import Runner

    sys.path.insert(0, str(WORKER.parent))
    try:
        import openai_agents_worker as w
    finally:
        sys.path.remove(str(WORKER.parent))
    from omium import openai_agents as oa

    agents.set_trace_processors([])
    w.log, w.kill = str(tmp_path / "log"), False

    @omium.workflow("streamed")
    async def flow(request: str) -> str:
        run = Runner.run_streamed(w.orders_agent, request, run_config=oa.run_config())
        async for _ in run.stream_events():
            pass
        return str(run.final_output)

    omium.init(path=tmp_path / "store", durability="none")
    try:
        assert asyncio.run(flow.run("handle order o-7", execution_id="s1")) == "order o-7 closed"
        history = omium.history("s1")
        assert [c.name for c in history if "model" in c.name] == ["openai_agents.model_stream:orders"] * 3 + [
            "openai_agents.model_stream:closer"
        ]
        omium.rollback("s1", to=history[2].id)
        before = len(calls(tmp_path / "log"))
        assert asyncio.run(flow.run("handle order o-7", execution_id="s1")) == "order o-7 closed"
        assert calls(tmp_path / "log")[before:] == ["ship", "model3", "closer4"]
    finally:
        omium.shutdown()
