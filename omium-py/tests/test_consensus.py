"""omium.consensus on the embedded one-voter Raft group of the store."""

from __future__ import annotations

import asyncio
import threading

import omium
import pytest


@pytest.fixture(autouse=True)
def _no_subscribers():
    yield
    omium.consensus._subscribers.clear()


def test_broadcast_acknowledge_await_status_in_order(store):
    ids = [omium.consensus.broadcast("run-1", "planner", ["coder", "reviewer"], {"step": i}) for i in range(3)]
    for mid in ids:
        assert omium.consensus.acknowledge(mid, "coder")["state"] == "pending"
        assert omium.consensus.acknowledge(mid, "reviewer")["state"] == "agreed"
        m = omium.consensus.await_agreement(mid, timeout=2.0)
        assert m["status"]["state"] == "agreed"
    listed = omium.consensus.status("run-1")
    assert [m["id"] for m in listed] == ids
    assert [m["seq"] for m in listed] == [1, 2, 3]
    assert listed[2]["message"] == {"step": 2}
    assert omium.consensus.message(ids[0])["sender"] == "planner"


def test_schema_violations_name_the_field_and_append_nothing(store):
    schema = {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number"}}}
    with pytest.raises(omium.InvalidMessageError) as e:
        omium.consensus.broadcast("pay", "agent", ["checker"], {"amount": "ten"}, schema=schema)
    assert "/amount" in str(e.value) and "not appended" in str(e.value)
    assert isinstance(e.value, ValueError)
    assert omium.consensus.status("pay") == []
    with pytest.raises(TypeError, match="JSON-serialisable"):
        omium.consensus.broadcast("pay", "agent", ["checker"], {"when": object()})
    mid = omium.consensus.broadcast("pay", "agent", ["checker"], {"amount": 10}, schema=schema)
    with pytest.raises(omium.NotATargetError):
        omium.consensus.acknowledge(mid, "stranger")
    with pytest.raises(omium.MessageNotFoundError):
        omium.consensus.acknowledge("01J00000000000000000000000", "checker")


def test_split_vote_and_timeout_raise_and_are_recorded(store):
    mid = omium.consensus.broadcast("vote-run", "lead", ["a", "b"], "merge?")
    omium.consensus.acknowledge(mid, "a", vote="yes")
    assert omium.consensus.acknowledge(mid, "b", vote="no")["state"] == "violated"
    with pytest.raises(omium.ConsensusViolation, match="split vote"):
        omium.consensus.await_agreement(mid, timeout=1.0)
    silent = omium.consensus.broadcast("vote-run", "lead", ["a"], "anyone?")
    with pytest.raises(omium.ConsensusViolation, match="timeout"):
        omium.consensus.await_agreement(silent, timeout=0.2)
    failures = [f for f in omium.failures("vote-run") if f.type == "consensus_violation"]
    assert sorted(f.key for f in failures) == sorted([mid, silent])


def test_decorator_broadcasts_the_result_and_subscribers_answer(store):
    seen = []

    @omium.consensus.subscribe("reviewer")
    def review(msg):
        seen.append(msg["message"])
        return "approve"

    omium.consensus.subscribe("qa", lambda msg: "approve")

    @omium.consensus.broadcast(["reviewer", "qa"], timeout=2.0, sender_agent_id="planner")
    def plan(task):
        return {"task": task, "steps": 3}

    @omium.workflow("planning")
    def flow():
        return plan("ship")

    assert flow.run(execution_id="plan-1") == {"task": "ship", "steps": 3}
    assert seen == [{"task": "ship", "steps": 3}]
    (m,) = omium.consensus.status("plan-1")
    assert m["sender"] == "planner" and m["status"] == {"state": "agreed", "value": "approve", "at_index": m["status"]["at_index"]}


def test_decorator_raises_when_the_targets_disagree(store):
    omium.consensus.subscribe("a", lambda msg: "yes")
    omium.consensus.subscribe("b", lambda msg: "no")

    @omium.consensus.broadcast(["a", "b"], timeout=1.0)
    async def propose():
        return "deploy"

    async def main():
        omium.set_execution_id("async-run")
        try:
            return await propose()
        finally:
            omium.set_execution_id(None)

    with pytest.raises(omium.ConsensusViolation, match="split vote"):
        asyncio.run(main())


def test_consensus_required_step_is_recorded_only_once_agreed(store):
    calls = []
    answers = iter([False, None])  # first attempt: nobody acknowledges; second: acknowledged

    omium.consensus.subscribe("auditor", lambda msg: next(answers))
    omium.policy.apply("rules: [{trigger: consensus_violation, actions: [{retry: {max_attempts: 2, initial_delay: 10ms}}]}]")

    @omium.checkpoint("approve_loan", consensus_required=True, consensus_targets=["auditor"], consensus_timeout=0.3)
    def approve(amount):
        calls.append(amount)
        return {"approved": amount < 1000}

    @omium.workflow("loans")
    def flow(amount):
        return approve(amount)

    assert flow.run(500, execution_id="loan-1") == {"approved": True}
    assert len(calls) == 2, "the step ran again after the violation"
    statuses = [m["status"]["state"] for m in omium.consensus.status("loan-1")]
    assert statuses == ["violated", "agreed"]
    failures = [f for f in omium.failures("loan-1") if f.type == "consensus_violation"]
    assert len(failures) == 1 and failures[0].step == "approve_loan"
    # Replaying the execution returns the recorded result without a new broadcast.
    assert flow.run(500, execution_id="loan-1") == {"approved": True}
    assert len(omium.consensus.status("loan-1")) == 2


def test_bad_arguments_are_named(store):
    with pytest.raises(TypeError, match="target agents must be a non-empty list"):
        omium.consensus.broadcast([], timeout=1.0)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        omium.consensus.broadcast(["a"], timeout=0)
    with pytest.raises(ValueError, match="consensus_targets is given but consensus_required"):
        omium.checkpoint("x", consensus_targets=["a"])
    with pytest.raises(TypeError, match="consensus_targets"):
        omium.checkpoint("x", consensus_required=True)
    with pytest.raises(omium.OmiumError, match="no execution"):
        omium.consensus.status()
    with pytest.raises(omium.InvalidArgumentError, match="has no port"):
        omium.consensus.connect("localhost")
    omium.consensus.connect(None)


def test_concurrent_broadcasts_get_distinct_places(store):
    places = []
    lock = threading.Lock()

    def worker(n):
        for i in range(10):
            mid = omium.consensus.broadcast("busy", f"agent-{n}", ["x"], i)
            with lock:
                places.append(mid)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    listed = omium.consensus.status("busy")
    assert [m["seq"] for m in listed] == list(range(1, 41))
    assert sorted(m["id"] for m in listed) == sorted(places)


def test_store_reopen_keeps_messages(tmp_path):
    omium.init(path=tmp_path / "s", durability="buffered")
    mid = omium.consensus.broadcast("keep", "a", ["b"], "hello")
    omium.init(path=tmp_path / "s", durability="buffered")  # closes and reopens
    try:
        assert omium.consensus.message(mid)["message"] == "hello"
    finally:
        omium.shutdown()
