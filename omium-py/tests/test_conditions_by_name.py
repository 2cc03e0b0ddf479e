"""CEL conditions see the step's parameters by name (`customer.verified == true`), besides
`args`, `kwargs` and `result`: defaults applied, `*args` as a list, `**kwargs` as a map,
`self` left out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import omium
import pytest


@dataclass
class Customer:
    name: str
    verified: bool


@pytest.fixture(autouse=True)
def store(tmp_path: Path):
    omium.init(path=tmp_path / "store", durability="none")
    yield
    omium.shutdown()


def test_preconditions_and_postconditions_name_the_parameters() -> None:
    @omium.checkpoint(
        "charge",
        preconditions=["customer.verified == true", "amount > 0", "currency == 'EUR'"],
        postconditions=["result.charged == amount && result.to == customer.name"],
    )
    def charge(customer: Customer, amount: int, currency: str = "EUR") -> dict:
        return {"charged": amount, "to": customer.name}

    @omium.workflow("billing")
    def billing(verified: bool, amount: int) -> dict:
        return charge(Customer("ada", verified), amount=amount)

    assert billing.run(True, 5, execution_id="ok") == {"charged": 5, "to": "ada"}
    with pytest.raises(omium.ConditionFailed, match=r"precondition 'customer.verified == true' does not hold"):
        billing.run(False, 5, execution_id="unverified")
    with pytest.raises(omium.ConditionFailed, match=r"precondition 'amount > 0' does not hold"):
        billing.run(True, 0, execution_id="nothing")
    # Nothing was recorded by the refused calls.
    assert [c.name.rsplit(".", 1)[-1] for c in omium.history("unverified")] == []


def test_rest_parameters_methods_and_the_reserved_names() -> None:
    class Agent:
        def __init__(self) -> None:
            self.secret = "not for conditions"

        @omium.checkpoint("plan", preconditions=["size(steps) == 2", "options.fast == true", "args[1] == 'a'"])
        def plan(self, *steps: str, **options: bool) -> int:
            return len(steps)

    @omium.checkpoint("echo", preconditions=["args[0] == 1", "kwargs.result == 2"])
    def echo(args: int, result: int) -> int:
        return args + result

    @omium.workflow("methods")
    def flow() -> int:
        return Agent().plan("a", "b", fast=True) + echo(1, result=2)

    assert flow.run(execution_id="m1") == 5

    @omium.checkpoint("leaky", preconditions=["self.secret == 'x'"])
    def leaky(self: object) -> int:
        return 1

    @omium.workflow("leak")
    def leak() -> int:
        return leaky(object())

    # `self` is not a variable of conditions: naming it fails as an unknown name does.
    with pytest.raises(omium.ConditionError, match="self"):
        leak.run(execution_id="l1")


def test_set_execution_context_records_steps_as_the_agent_and_a_step_outside_warns_once() -> None:
    @omium.checkpoint("lookup")
    def lookup(x: int) -> int:
        return x + 1

    import omium._steps as steps

    steps._warned_outside = False
    with pytest.warns(omium.OutsideExecutionWarning, match=r"step 'lookup' ran outside any execution") as seen:
        assert lookup(1) == 2
        assert lookup(2) == 3  # once per process: no second warning
    assert len([w for w in seen if issubclass(w.category, omium.OutsideExecutionWarning)]) == 1

    omium.set_execution_context(execution_id="exec_123", agent_id="agent_1")
    try:
        assert lookup(10) == 11
    finally:
        omium.set_execution_context(None)
    [c] = omium.history("exec_123")
    assert (c.name, c.agent) == ("lookup", "agent_1")
    # The same id again resumes it: the recorded step answers, the function does not run.
    calls = []

    @omium.checkpoint("lookup")
    def lookup_again(x: int) -> int:
        calls.append(x)
        return -1

    omium.set_execution_context("exec_123", "agent_1")
    try:
        assert lookup_again(10) == 11 and calls == []
    finally:
        omium.set_execution_context(None)
    with pytest.raises(TypeError, match="agent_id"):
        omium.set_execution_context("exec_124", agent_id="")
