"""Workflows: run, resume, completed runs, async, rollback, fork, history, recover, verify."""

from __future__ import annotations

import asyncio

import omium
import pytest


def make_onboarding(calls):
    @omium.checkpoint("kyc_doc_validated", postconditions=["result.verified == true"])
    def verify_kyc(customer):
        calls.append("kyc")
        return {"verified": True, "customer": customer}

    @omium.checkpoint("credit_score")
    def credit_score(kyc):
        calls.append("score")
        return 700 + len(kyc["customer"])

    @omium.checkpoint("offer")
    def make_offer(score):
        calls.append("offer")
        if calls.count("offer") == 1 and "fail-once" in calls:
            raise RuntimeError("offer service down")
        return {"limit": score * 10}

    @omium.workflow("customer_onboarding")
    def onboard(customer):
        return make_offer(credit_score(verify_kyc(customer)))

    return onboard


def test_run_then_resume_after_a_failure_skips_finished_steps(store):
    calls = ["fail-once"]
    onboard = make_onboarding(calls)
    with pytest.raises(RuntimeError, match="offer service down"):
        onboard.run("ann", execution_id="cust-42")
    e = omium.get_execution("cust-42")
    assert e.status == "failed" and e.error == "RuntimeError: offer service down"
    assert onboard.run("ann", execution_id="cust-42") == {"limit": 7030}
    assert calls == ["fail-once", "kyc", "score", "offer", "offer"]
    assert omium.get_execution("cust-42").status == "completed"


def test_a_completed_execution_returns_its_output_without_running(store):
    calls = []
    onboard = make_onboarding(calls)
    assert onboard.run("bo", execution_id="c1") == {"limit": 7020}
    assert onboard.run("someone else", execution_id="c1") == {"limit": 7020}
    assert calls == ["kyc", "score", "offer"]
    # Calling the workflow directly runs a fresh execution.
    assert onboard("cy") == {"limit": 7020}
    assert len(omium.executions()) == 2


def test_rollback_reruns_only_the_later_steps_and_keeps_the_old_branch(store):
    calls = []
    onboard = make_onboarding(calls)
    onboard.run("ann", execution_id="cust-42")
    marker = omium.rollback("cust-42", to="kyc_doc_validated", reason="stale bureau data")
    assert marker.kind == "rollback" and marker.metadata["reason"] == "stale bureau data"
    assert [c.name for c in omium.history("cust-42")] == ["kyc_doc_validated", "rollback to kyc_doc_validated"]
    assert [e.id for e in omium.resumable()] == ["cust-42"]
    assert onboard.run("ann", execution_id="cust-42") == {"limit": 7030}
    assert calls == ["kyc", "score", "offer", "score", "offer"]
    assert len(omium.history("cust-42", all_branches=True)) == 6
    # The abandoned branch is still readable as a whole.
    old_offer = next(c for c in omium.history("cust-42", all_branches=True) if c.name == "offer")
    assert [c.name for c in omium.branch(old_offer.id)] == ["kyc_doc_validated", "credit_score", "offer"]
    # By id, and to the last consistent checkpoint.
    first = omium.history("cust-42")[0]
    assert omium.rollback("cust-42", to=first.id).parent == first.id
    assert omium.rollback("cust-42").parent == first.id


def test_rollback_bad_targets_raise_clear_errors_and_change_nothing(store):
    onboard = make_onboarding([])
    onboard.run("a", execution_id="x")
    onboard.run("b", execution_id="y")
    foreign = omium.history("y")[0]
    head = omium.get_execution("x").head
    with pytest.raises(omium.WrongExecutionError, match=f'checkpoint {foreign.id} belongs to execution "y", not "x"'):
        omium.rollback("x", to=foreign.id)
    with pytest.raises(omium.CheckpointNotFoundError, match='has no checkpoint named "nope"'):
        omium.rollback("x", to="nope")
    with pytest.raises(omium.ExecutionNotFoundError):
        omium.rollback("ghost", to="offer")
    assert omium.get_execution("x").head == head


def test_fork_with_edited_state_reruns_what_follows(store):
    calls = []
    onboard = make_onboarding(calls)
    onboard.run("ann", execution_id="orig")
    info = omium.fork("orig", at="credit_score", state=800, new_execution_id="what-if")
    assert info.status == "pending" and info.labels["forked_from"].startswith("orig@")
    assert onboard.run("ann", execution_id="what-if") == {"limit": 8000}
    assert onboard.run("ann", execution_id="orig") == {"limit": 7030}
    assert calls == ["kyc", "score", "offer", "offer"]
    assert omium.history("what-if")[1].load() == 800


def test_history_states_load_with_the_codec(store):
    make_onboarding([]).run("ann", execution_id="h")
    h = omium.history("h")
    assert [c.name for c in h] == ["kyc_doc_validated", "credit_score", "offer"]
    assert h[0].load() == {"verified": True, "customer": "ann"}
    assert h[1].seq == 2 and h[1].parent == h[0].id


def test_recover_resumes_executions_whose_process_died(store):
    calls = []
    make_onboarding(calls)  # defines and registers the workflow
    # Simulate a crash: a run that never completes nor fails.
    ctx = omium._runtime.begin(
        "crashed",
        "customer_onboarding",
        omium._runtime.config().codec.encode({"args": ["ann"], "kwargs": {}}),
        omium._runtime.config().codec,
    )
    ctx.run.reserve()
    ctx.run.record(1, "kyc_doc_validated", omium._runtime.config().codec.encode({"verified": True, "customer": "ann"}))
    ctx.run.close()
    assert [e.id for e in omium.resumable()] == ["crashed"]
    assert omium.recover() == {"crashed": {"limit": 7030}}
    assert calls == ["score", "offer"]
    assert omium.resumable() == []


def test_recover_refuses_unregistered_workflows(store):
    ctx = omium._runtime.begin("orphan", "no_such_workflow", None, omium._runtime.config().codec)
    ctx.run.close()
    with pytest.raises(omium.WorkflowNotRegisteredError) as e:
        omium.recover()
    assert "workflow 'no_such_workflow' is not defined in this process" in str(e.value)
    assert omium.recover(skip_unregistered=True) == {}
    assert omium.get_execution("orphan").status == "running"


async def test_async_workflows_resume_too(store):
    calls = []

    @omium.checkpoint("a")
    async def a():
        calls.append("a")
        return 1

    @omium.checkpoint("b")
    async def b(x):
        calls.append("b")
        if len(calls) == 2:
            raise TimeoutError("llm timeout")
        return x + 1

    @omium.workflow("async_flow")
    async def flow():
        return await b(await a())

    with pytest.raises(TimeoutError):
        await flow.run(execution_id="af")
    assert await flow.run(execution_id="af") == 2
    assert calls == ["a", "b", "b"]
    assert await flow.arun(execution_id="af") == 2


def test_set_execution_id_for_code_without_a_workflow(store):
    @omium.checkpoint("s")
    def s():
        return 5

    assert omium.get_execution_id() is None
    omium.set_execution_id("manual")
    try:
        assert omium.get_execution_id() == "manual"
        s()
    finally:
        omium.set_execution_id(None)
    assert omium.get_execution_id() is None
    assert [c.name for c in omium.history("manual")] == ["s"]
    assert [e.id for e in omium.resumable()] == ["manual"]


def test_verify_reports_ok(store):
    make_onboarding([]).run("ann", execution_id="v")
    r = omium.verify()
    assert r.ok and r.checkpoints == 3 and r.problems == []
    assert omium.verify("v").ok


def test_a_running_execution_cannot_be_run_twice(store):
    @omium.workflow("w")
    def w():
        return w.run(execution_id="same")

    with pytest.raises(omium.ExecutionLeasedError, match='execution "same" is being run by'):
        w.run(execution_id="same")


def test_calls_before_init_explain_what_to_do():
    omium.shutdown()
    with pytest.raises(omium.OmiumError, match="call omium.init"):
        omium.history("x")


def test_workflow_names_and_unencodable_inputs(store):
    class Client:
        pass

    @omium.checkpoint("s")
    def s():
        return 1

    @omium.workflow
    def uses_client(client):
        return s()

    assert uses_client.name.endswith("uses_client")
    assert uses_client.run(Client(), execution_id="uc") == 1
    e = omium.get_execution("uc")
    assert e.labels["omium.input"].startswith("unencodable")


def test_asyncio_gather_of_workflows_keeps_contexts_apart(store):
    @omium.checkpoint("step")
    async def step(i):
        await asyncio.sleep(0.001)
        assert omium.get_execution_id() == f"g{i}"
        return i

    @omium.workflow("par")
    async def par(i):
        return [await step(i) for _ in range(5)]

    async def main():
        return await asyncio.gather(*(par.run(i, execution_id=f"g{i}") for i in range(4)))

    assert asyncio.run(main()) == [[i] * 5 for i in range(4)]


def test_a_store_restored_from_an_older_copy_fails_against_a_recorded_audit_head(tmp_path):
    """Restoring an older copy of a store cuts the audit log's tail off; the copy is consistent
    on its own, so only a head recorded elsewhere shows it."""
    import shutil

    path, backup = tmp_path / "store", tmp_path / "backup"

    @omium.checkpoint("s")
    def s(x):
        return x

    omium.init(path=path)
    assert omium.audit_head() is None
    with omium.execution("a"):
        s(1)
    omium.shutdown()
    shutil.copytree(path, backup)
    omium.init(path=path)
    with omium.execution("b"):
        s(2)
    head = omium.audit_head()
    seq, digest = head.split(":")
    assert int(seq) > 0 and len(digest) == 64
    report = omium.verify(expect_head=head)
    assert report.ok and report.audit_head == head
    omium.shutdown()

    shutil.rmtree(path)
    shutil.copytree(backup, path)
    omium.init(path=path)
    try:
        assert omium.verify().ok, "alone, the older copy is a consistent store"
        report = omium.verify(expect_head=head)
        assert not report.ok
        assert [p for p in report.problems if p.startswith(f"audit head {head}: entry #{seq} is missing")], report
        with pytest.raises(omium.InvalidArgumentError, match=r'invalid audit head: "nonsense" has no'):
            omium.verify(expect_head="nonsense")
    finally:
        omium.shutdown()
