"""Execution analytics from Python: figures after real runs, LLM spend recorded with steps,
cost saved by a resumed run, groups and windows, and errors that name the bad field."""

from __future__ import annotations

import datetime as dt

import omium
import pytest


def test_a_resumed_run_saves_the_recorded_cost_of_the_steps_it_does_not_run_again(store):
    omium.set_pricing("test-model", input_per_1k=0.01, output_per_1k=0.03)
    calls = {"ask": 0, "flaky": 0}

    def ask(messages, model):
        calls["ask"] += 1
        return {"model": model, "usage": {"input_tokens": 1000, "output_tokens": 100}, "text": "hi"}

    @omium.checkpoint(agent="researcher")
    def research(q: str) -> str:
        return omium.llm_call(ask, model="test-model", messages=[q])["text"]

    @omium.checkpoint(agent="writer")
    def write(text: str) -> str:
        omium.record_spend(cost_usd=0.5, tokens_in=10, tokens_out=5)
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise RuntimeError("the writer's tool is down")
        return text.upper()

    @omium.workflow("report")
    def report(q: str) -> str:
        return write(research(q))

    with pytest.raises(RuntimeError):
        report.run("q", execution_id="r1")
    assert report.run("q", execution_id="r1") == "HI"
    assert calls == {"ask": 1, "flaky": 2}

    m = omium.metrics(since="1h")
    t = m["totals"]
    assert (t["started"], t["failed"], t["completed"], t["retries"]) == (1, 1, 1, 1), t
    assert t["success_rate"] == 0.5
    # research (a step holding the LLM call) was replayed; the LLM call is priced by set_pricing.
    assert t["replayed_steps"] == 1
    assert t["tokens_in"] == 1000 + 10 and t["tokens_out"] == 100 + 5
    assert t["llm_cost_usd"] == pytest.approx(0.01 + 0.003 + 0.5)
    assert t["execution_p50_ms"] is not None and t["step_p95_ms"] is not None

    by = omium.metrics(since=dt.timedelta(hours=1), by=["agent"])
    agents = {g["key"]["agent"]: g["figures"] for g in by["groups"]}
    assert {"researcher", "writer"} <= set(agents), agents
    assert agents["writer"]["llm_cost_usd"] == pytest.approx(0.5)
    assert all(f["started"] == 0 for f in agents.values())


def test_cost_saved_counts_recorded_spend_of_replayed_steps(store):
    @omium.checkpoint("plan")
    def plan() -> str:
        omium.record_spend(cost_usd=0.25, tokens_in=2000, tokens_out=300)
        return "plan"

    @omium.checkpoint
    def act(p: str) -> str:
        return p + "!"

    @omium.workflow("agent")
    def agent() -> str:
        return act(plan())

    agent.run(execution_id="a1")
    omium.rollback("a1", to="plan", reason="redo the action")
    agent.run(execution_id="a1")
    t = omium.metrics(since="1h", workflow="agent")["totals"]
    assert t["rollbacks"] == 1 and t["replayed_steps"] == 1
    assert t["cost_saved_usd"] == pytest.approx(0.25) and t["tokens_saved"] == 2300
    assert t["llm_cost_usd"] == pytest.approx(0.25), "the replayed step was paid once"


def test_groups_windows_and_bad_queries(store):
    @omium.checkpoint
    def s() -> int:
        return 1

    @omium.workflow("w1")
    def w1() -> int:
        return s()

    @omium.workflow("w2")
    def w2() -> int:
        return s()

    w1.run(execution_id="x1")
    w2.run(execution_id="x2")
    w2.run(execution_id="x3")
    groups = {g["key"]["workflow"]: g["figures"]["started"] for g in omium.metrics(by="workflow")["groups"]}
    assert groups == {"w1": 1, "w2": 2}
    days = omium.metrics(since="30d", by="day,workflow")["groups"]
    assert sorted(g["key"]["workflow"] for g in days) == ["w1", "w2"]
    past = omium.metrics(since=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), until="2020-02-01")
    assert past["totals"]["started"] == 0 and past["since"].startswith("2020-01-01")

    with pytest.raises(omium.InvalidArgumentError, match="30m, 24h, 7d"):
        omium.metrics(since="last week")
    with pytest.raises(omium.InvalidArgumentError, match="workflow, agent"):
        omium.metrics(by="colour")
    with pytest.raises(TypeError, match="timezone"):
        omium.metrics(since=dt.datetime(2026, 1, 1))
    with pytest.raises(RuntimeError, match="inside the body"):
        omium.record_spend(cost_usd=1.0)
    # The recovery figures keep their own name for their rate.
    assert "recovery_rate" in omium.recovery_metrics() and "success_rate" not in omium.recovery_metrics()
