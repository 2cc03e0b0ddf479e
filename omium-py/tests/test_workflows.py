"""Workflows from YAML run by the core's DAG executor with Python agents: the issue's
customer_onboarding document end to end, parallel branches whose time spans overlap, `when:`
skipping a branch, a process SIGKILLed mid-DAG resuming without re-running finished steps,
recovery, consensus hand-offs, LangGraph and CrewAI agents, container agents without a runtime."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import omium
import pytest
from conftest import ctrl_c_as_in_a_terminal
from omium import workflows
from omium.errors import AgentUnavailableError, StepFailedError, WorkflowError

DOCS = Path(__file__).resolve().parents[2] / "tests" / "workflows"
WORKER = Path(__file__).with_name("workflow_crash_worker.py")


def kyc(customer_data):
    return {"kyc_verified": customer_data["document"] == "P123", "kyc_score": 91}


def credit(kyc_verified, kyc_score):
    return {"credit_score": 300 + kyc_score * 5 if kyc_verified else 300}


def test_the_issue_document_runs_end_to_end_with_python_agents(store):
    spec = workflows.load(DOCS / "customer_onboarding.yaml").bind(kyc_agent=kyc, credit_agent=credit)
    assert spec.inputs == ["customer_data"]
    # consensus_required: by default the hand-off is agreed on the store's consensus group.
    first = spec.run({"customer_data": {"document": "P123"}}, execution_id="cust-0")
    assert first.data["credit_score"] == 755
    agreement = json.loads(omium.history("cust-0")[-1].metadata["agreement"])
    [message] = omium.consensus.status("cust-0")
    assert message["id"] == agreement["message_id"]
    assert message["status"]["state"] == "agreed"
    assert (message["sender"], message["targets"]) == ("credit_agent", ["credit_agent"])
    assert message["message"] == {"workflow": "customer_onboarding", "step": "2", "outputs": {"credit_score": 755}}

    seen = []

    def agree(handoff):
        seen.append(handoff)
        return "approved by credit_committee"

    result = spec.run({"customer_data": {"document": "P123"}}, execution_id="cust-42", agree=agree)
    assert result.data["credit_score"] == 755
    assert [s.outcome for s in result.steps] == ["ran", "ran"]
    assert seen == [
        {
            "execution_id": "cust-42",
            "workflow": "customer_onboarding",
            "step": "2",
            "agent": "credit_agent",
            "outputs": {"credit_score": 755},
            "consumers": [],
        }
    ]
    history = omium.history("cust-42")
    assert [c.name for c in history] == ["kyc_doc_validated", "step 2"]
    assert history[0].load("json") == {"kyc_verified": True, "kyc_score": 91}
    assert history[1].metadata["agreement"] == "approved by credit_committee"
    assert omium.get_execution("cust-42").status == "completed"
    # The same id again returns the recorded result; the agents do not run.
    again = spec.bind(kyc_agent=lambda **_: 1 / 0).run({}, execution_id="cust-42", agree=agree)
    assert again.data["credit_score"] == 755 and len(seen) == 1
    # A rollback re-runs the steps after its target.
    omium.rollback("cust-42", to="kyc_doc_validated")
    calls = []
    spec.bind(credit_agent=lambda **kw: calls.append(kw) or {"credit_score": 1}).run({}, execution_id="cust-42", agree=agree)
    assert calls == [{"kyc_verified": True, "kyc_score": 91}]


def test_a_rejected_handoff_is_a_consensus_violation(store):
    spec = workflows.load(DOCS / "customer_onboarding.yaml").bind(kyc_agent=kyc, credit_agent=credit)
    with pytest.raises(StepFailedError, match=r"were not agreed: ConsensusViolation: the agreement function rejected"):
        spec.run({"customer_data": {"document": "P123"}}, execution_id="c-no", agree=lambda h: False)
    assert [f.type for f in omium.failures("c-no")] == ["consensus_violation"]
    assert [c.name for c in omium.history("c-no")] == ["kyc_doc_validated"]


def test_subscribed_agents_answer_the_default_handoff(store):
    spec = workflows.load(DOCS / "customer_onboarding.yaml").bind(kyc_agent=kyc, credit_agent=credit)
    seen = []

    @omium.consensus.subscribe("credit_agent")
    def vote(message):
        seen.append(message["message"]["outputs"])
        return {"approve": True}

    try:
        spec.run({"customer_data": {"document": "P123"}}, execution_id="c-vote")
        assert seen == [{"credit_score": 755}]
        agreement = json.loads(omium.history("c-vote")[-1].metadata["agreement"])
        assert agreement["acks"] == [{"agent": "credit_agent", "vote": {"approve": True}}]
    finally:
        omium.consensus.unsubscribe("credit_agent")

    # A silent target: no quorum within the timeout is a consensus violation, not recorded outputs.
    omium.consensus.subscribe("credit_agent", lambda message: False)
    try:
        with pytest.raises(StepFailedError, match=r"step 2 \(credit_agent\) were not agreed: message \S+ \(timeout\)"):
            spec.run({"customer_data": {"document": "P123"}}, execution_id="c-silent", consensus_timeout=0.3)
    finally:
        omium.consensus.unsubscribe("credit_agent")
    assert [f.type for f in omium.failures("c-silent")] == ["consensus_violation"]
    assert [c.name for c in omium.history("c-silent")] == ["kyc_doc_validated"]
    assert omium.consensus.status("c-silent")[0]["status"]["state"] == "violated"
    with pytest.raises(ValueError, match="consensus_timeout must be a positive number"):
        spec.run({}, execution_id="c-bad", consensus_timeout=0)


def test_independent_branches_run_concurrently(store):
    def worker(n):
        time.sleep(0.3)  # releases the GIL, as an LLM call would
        return {"a": n, "b": n, "c": n}

    spec = workflows.load(DOCS / "parallel.yaml").bind(worker=worker, joiner=lambda a, b, c: {"total": a + b + c})
    result = spec.run({"n": 2}, execution_id="par")
    assert result.data["total"] == 6
    spans = {s.id: (s.started_at_ms, s.ended_at_ms) for s in result.steps}
    # The three branches ran at once: each pair of their spans overlaps (no bound on the run's
    # wall-clock time, which a loaded machine can exceed).
    for x, y in [("a", "b"), ("a", "c"), ("b", "c")]:
        assert spans[x][0] < spans[y][1] and spans[y][0] < spans[x][1], f"{x} and {y} overlap: {spans}"
    assert spans["join"][0] >= max(spans[k][1] for k in "abc")
    # The recorded checkpoints carry the same spans.
    recorded = {
        c.metadata["workflow_step"]: (int(c.metadata["started_at_ms"]), int(c.metadata["ended_at_ms"])) for c in omium.history("par")
    }
    assert recorded == spans


def test_a_false_condition_skips_a_branch(store):
    text = (DOCS / "parallel.yaml").read_text().replace("    outputs: [b]\n", '    outputs: [b]\n    when: "n > 10"\n')
    ran = []

    def worker(n):
        ran.append(n)
        return {"a": 1, "b": 2, "c": 3}

    spec = workflows.parse(text).bind(worker=worker, joiner=lambda **kw: {"total": 0})
    result = spec.run({"n": 2}, execution_id="skip")
    outcome = {s.id: (s.outcome, s.reason) for s in result.steps}
    assert outcome == {
        "a": ("ran", None),
        "b": ("skipped", "its condition `n > 10` is false"),
        "c": ("ran", None),
        "join": ("skipped", 'its input "b" comes from step b, which was skipped'),
    }
    assert len(ran) == 2
    assert "b" not in result.data and "total" not in result.data


def test_a_process_killed_mid_dag_resumes_without_rerunning_finished_steps(tmp_path):
    store, log = tmp_path / "store", tmp_path / "log"
    log.write_text("")
    proc = subprocess.Popen([sys.executable, str(WORKER), str(store), str(log)], preexec_fn=ctrl_c_as_in_a_terminal)
    deadline = time.monotonic() + 60
    while "slow-start" not in log.read_text():
        assert proc.poll() is None, "the worker exited before the slow step"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert sorted(log.read_text().split()) == ["a", "b", "slow-start"]
    subprocess.run([sys.executable, str(WORKER), str(store), str(log)], timeout=60, check=True)
    lines = log.read_text().split("\n")
    assert sorted(lines[:3]) == ["a", "b", "slow-start"]
    assert lines[3:] == ["slow-start", "slow-end", "done 6", ""], "a and b did not run again"


def test_ctrl_c_stops_a_run_and_leaves_it_resumable(tmp_path):
    store, log = tmp_path / "store", tmp_path / "log"
    log.write_text("")
    proc = subprocess.Popen([sys.executable, str(WORKER), str(store), str(log)], preexec_fn=ctrl_c_as_in_a_terminal)
    deadline = time.monotonic() + 60
    while "slow-start" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    # The slow agent sleeps 60 s: exiting well before that means Ctrl-C was seen while it ran.
    assert proc.wait(timeout=30) == 130
    assert time.monotonic() - started < 30, "Ctrl-C is seen while agents run"
    assert log.read_text().split("\n")[3] == "interrupted running"
    subprocess.run([sys.executable, str(WORKER), str(store), str(log)], timeout=60, check=True)
    assert log.read_text().split("\n")[4:] == ["slow-start", "slow-end", "done 6", ""], "a and b did not run again"


def test_failures_go_through_the_recovery_policies(store):
    tries = []

    def flaky(n):
        tries.append(n)
        if len(tries) < 3:
            raise ConnectionError("reset by peer")
        return {"x": n}

    spec = workflows.parse(
        """
name: recovering
agents: [{id: flaky}, {id: broken}]
flow:
  - step: 1
    agent: flaky
    inputs: [n]
    outputs: [x]
    retries: 2
  - step: 2
    agent: broken
    inputs: [x]
    outputs: [y]
    policy:
      policies:
        - trigger: error
          action: fallback
          fallback: cached_answer
"""
    )

    @omium.register_fallback("cached_answer")
    def cached(x):
        return {"y": f"cached for {x}"}

    def broken(x):
        raise ValueError("model refused")

    result = spec.bind(flaky=flaky, broken=broken).run({"n": 5}, execution_id="rec")
    assert len(tries) == 3
    assert result.data["y"] == "cached for 5"
    assert result.step(1).attempts == 3
    failures = omium.failures("rec")
    assert [(f.type, f.outcome) for f in failures] == [("error", "recovered"), ("error", "recovered")]
    assert [a["action"] for a in failures[1].actions] == ["fallback"]

    # No rule, no retries: the failure ends the run; the same id resumes at the failed step.
    plain = workflows.parse("name: plain\nagents: [{id: broken}]\nflow:\n  - {step: 1, agent: broken, inputs: [x], outputs: [y]}\n")
    with pytest.raises(
        StepFailedError, match=r'^step 1 \(broken\) of execution "rec2" failed and the recovery policy gave up: ValueError: model refused'
    ):
        plain.bind(broken=broken).run({"x": 1}, execution_id="rec2")
    assert omium.get_execution("rec2").status == "failed"
    assert plain.bind(broken=lambda x: {"y": x}).run({}, execution_id="rec2").data == {"x": 1, "y": 1}


def test_workflow_steps_get_fixes_and_analysis_from_the_registered_hooks(store):
    """The executor drives the core's recovery driver: `suggest_fix` with `auto_apply` calls
    the fixer registered in Python with the step's inputs, `inspect` the analyzer."""
    seen = []

    def credit(score):
        seen.append(score)
        if score < 10:
            raise ValueError("score too low")
        return {"credit": score * 10}

    @omium.register_fix("raise_score")
    def raise_score(failure, args, kwargs):
        assert failure["step"] == "step 1" and args == []
        return [], {**kwargs, "score": 12}

    omium.set_analyzer(lambda failure: {"root_cause": f"{failure['message']} (threshold 10)"})
    spec = workflows.parse(
        """
name: fixing
agents: [{id: credit}]
flow:
  - step: 1
    agent: credit
    inputs: [score]
    outputs: [credit]
    policy:
      rules:
        - trigger: any
          actions: [inspect, {suggest_fix: {fix: raise_score, auto_apply: true}}, fail]
"""
    )
    assert spec.bind(credit=credit).run({"score": 7}, execution_id="fix1").data["credit"] == 120
    assert seen == [7, 12]
    (f,) = omium.failures("fix1")
    assert f.outcome == "recovered"
    assert f.root_cause == "ValueError: score too low (threshold 10)"
    assert [(a["action"], a["outcome"]) for a in f.actions] == [("inspect", "ok"), ("suggest_fix", "ok")]


def test_langgraph_and_crewai_agents(store):
    from crewai.flow.flow import Flow, listen, start
    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    class State(TypedDict, total=False):
        kyc_verified: bool
        kyc_score: int
        credit_score: int

    def score(state: State) -> State:
        return {"credit_score": state["kyc_score"] * 8 if state["kyc_verified"] else 0}

    g = StateGraph(State)
    g.add_node("score", score)
    g.add_edge(START, "score")
    g.add_edge("score", END)
    graph = g.compile()

    class KycFlow(Flow):
        @start()
        def read(self):
            self.state["kyc_verified"] = self.state["customer_data"]["document"] == "P123"

        @listen(read)
        def grade(self):
            self.state["kyc_score"] = 90
            return "graded"

    spec = workflows.load(DOCS / "customer_onboarding.yaml").bind(kyc_agent=KycFlow, credit_agent=graph)
    result = spec.run({"customer_data": {"document": "P123"}}, execution_id="fw", agree=lambda h: True)
    assert result.data["kyc_verified"] is True
    assert result.data["credit_score"] == 720


def test_image_agents_need_a_container_runtime(store, monkeypatch):
    monkeypatch.setenv("OMIUM_CONTAINER_RUNTIME", "/nonexistent/docker")
    spec = workflows.load(DOCS / "customer_onboarding.yaml").bind(credit_agent=credit)
    with pytest.raises(AgentUnavailableError) as e:
        spec.run({"customer_data": {}}, execution_id="img", agree=lambda h: True)
    assert str(e.value) == (
        'agent "kyc_agent" cannot run: it runs image "company/kyc:v1", but no container runtime is installed '
        "(neither docker nor podman is on PATH, and OMIUM_CONTAINER_RUNTIME is not set); install one, "
        'or bind "kyc_agent" to a function (Python: .bind(kyc_agent=fn))'
    )


def test_invalid_documents_name_line_and_column(store):
    with pytest.raises(WorkflowError) as e:
        workflows.load(DOCS / "broken" / "unknown_agent.yaml")
    [p] = e.value.problems
    assert (p["line"], p["column"], p["suggestion"]) == (7, 12, "kyc_agent")
    with pytest.raises(ValueError, match="has no agent 'kyc'"):
        workflows.load(DOCS / "customer_onboarding.yaml").bind(kyc=kyc)
    with pytest.raises(TypeError, match="cannot bind int"):
        workflows.load(DOCS / "customer_onboarding.yaml").bind(kyc_agent=3)


def test_templates_ship_with_the_library(tmp_path):
    names = [t.name for t in workflows.templates()]
    assert names == ["kyc", "credit_scoring", "offer_generation"]
    path = workflows.templates()[0].write(tmp_path / "kyc.yaml")
    assert workflows.load(path).name == "kyc"
