"""Durable steps: replay, non-determinism, conditions, retries, timeouts, keys, nesting."""

from __future__ import annotations

import asyncio
import threading
import time

import omium
import pytest


def test_recorded_steps_are_not_run_again(store):
    calls = []

    @omium.checkpoint("fetch")
    def fetch(x):
        calls.append(x)
        return {"x": x, "items": [1, 2, 3]}

    with omium.execution("e1"):
        assert fetch(1) == {"x": 1, "items": [1, 2, 3]}
    # A second run of the same execution replays: the body is not called.
    with omium.execution("e1"):
        assert fetch(99) == {"x": 1, "items": [1, 2, 3]}
    assert calls == [1]


def test_a_different_step_at_a_recorded_position_raises_non_determinism(store):
    @omium.checkpoint("plan")
    def plan():
        return 1

    @omium.checkpoint("act")
    def act():
        return 2

    with omium.execution("nd"):
        plan()
    with pytest.raises(omium.NonDeterminismError) as e, omium.execution("nd"):
        act()
    assert 'recorded "plan" there but the code now calls "act"' in str(e.value)
    assert e.value.code == "non_determinism"


def test_cel_conditions_gate_recording(store):
    @omium.checkpoint("kyc", preconditions=["args[0].age >= 18"], postconditions=["result.verified == true"])
    def kyc(customer, verified=True):
        return {"verified": verified}

    with omium.execution("c1"):
        assert kyc({"age": 30}) == {"verified": True}
    with pytest.raises(omium.ConditionFailed) as e, omium.execution("c2"):
        kyc({"age": 30}, verified=False)
    assert str(e.value) == "step 'kyc': postcondition 'result.verified == true' does not hold; nothing was recorded"
    assert omium.history("c2") == []
    with pytest.raises(omium.ConditionFailed, match="precondition 'args\\[0\\].age >= 18' does not hold"), omium.execution("c3"):
        kyc({"age": 12})
    h = omium.history("c1")
    assert h[0].postconditions == [("result.verified == true", True)]
    assert h[0].preconditions == [("args[0].age >= 18", True)]


def test_callable_conditions_and_condition_errors(store):
    @omium.checkpoint("double", preconditions=[lambda n: n > 0], postconditions=[lambda r: r % 2 == 0])
    def double(n):
        return n * 2

    with omium.execution("cc"):
        assert double(2) == 4
        with pytest.raises(omium.ConditionFailed):
            double(-1)

    @omium.checkpoint("missing", postconditions=["result.nope == 1"])
    def missing():
        return {}

    with pytest.raises(omium.ConditionError, match="could not be evaluated"), omium.execution("ce"):
        missing()


def test_a_condition_that_does_not_parse_fails_at_decoration():
    with pytest.raises(omium.ConditionSyntaxError) as e:

        @omium.checkpoint("bad", postconditions=["result.ok &&"])
        def bad():
            return 1

    assert str(e.value).startswith('condition "result.ok &&" does not parse: ')
    with pytest.raises(TypeError, match="a condition must be a CEL expression string or a callable, not int"):
        omium.checkpoint("bad", postconditions=[3])(lambda: 1)


def test_retries_rerun_the_body_until_it_succeeds(store):
    attempts = []

    @omium.checkpoint("flaky", retries=3)
    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("rate limited")
        return "ok"

    with omium.execution("r"):
        assert flaky() == "ok"
    assert len(attempts) == 3
    with pytest.raises(ValueError, match="retries must be a non-negative int"):
        omium.checkpoint("x", retries=-1)(lambda: 1)


def test_timeouts_fail_the_step_and_record_nothing(store):
    @omium.checkpoint("slow", timeout=0.05)
    def slow():
        time.sleep(0.5)
        return 1

    @omium.checkpoint("aslow", timeout=0.05)
    async def aslow():
        await asyncio.sleep(0.5)
        return 1

    with pytest.raises(omium.StepTimeoutError, match="did not finish within 0.05 s"), omium.execution("t"):
        slow()

    async def main():
        with omium.execution("t2"):
            await aslow()

    with pytest.raises(omium.StepTimeoutError):
        asyncio.run(main())
    assert omium.history("t") == [] and omium.history("t2") == []


def test_non_encodable_results_raise_type_error_naming_step_and_type(store):
    class Opaque:
        pass

    @omium.checkpoint("leaky")
    def leaky():
        return {"conn": Opaque()}

    with pytest.raises(TypeError) as e, omium.execution("ne"):
        leaky()
    assert "step 'leaky' returned a value the msgpack codec cannot encode" in str(e.value)
    assert "Opaque" in str(e.value)
    assert omium.history("ne") == []

    @omium.checkpoint("pickled", codec="pickle")
    def pickled():
        return {"n": 1}

    with omium.execution("pk"):
        assert pickled() == {"n": 1}


def test_keyed_steps_match_by_key_whatever_the_schedule(store):
    ran = []

    @omium.checkpoint("fetch", key=lambda url: url)
    def fetch(url):
        ran.append(url)
        return url.upper()

    with omium.execution("k"):
        assert [fetch("a"), fetch("b")] == ["A", "B"]
    with omium.execution("k"):
        assert [fetch("b"), fetch("a")] == ["B", "A"]
    assert ran == ["a", "b"]


def test_nested_steps_replay_without_shifting_positions(store):
    ran = []

    @omium.checkpoint("inner")
    def inner(i):
        ran.append(f"inner{i}")
        return i

    @omium.checkpoint("outer")
    def outer():
        ran.append("outer")
        return inner(1) + inner(2)

    @omium.checkpoint("after")
    def after():
        ran.append("after")
        return 0

    with omium.execution("n"):
        assert outer() == 3
        after()
    with omium.execution("n"):
        assert outer() == 3
        after()
    assert ran == ["outer", "inner1", "inner2", "after"]


def test_outside_an_execution_steps_just_run(store):
    @omium.checkpoint("plain", postconditions=["result > 0"])
    def plain(x):
        return x

    assert plain(3) == 3
    with pytest.raises(omium.ConditionFailed):
        plain(-3)
    assert omium.executions() == []


def test_async_steps_take_their_position_when_called(store):
    ran = []

    @omium.checkpoint("work")
    async def work(i, delay):
        await asyncio.sleep(delay)
        ran.append(i)
        return i

    async def main():
        with omium.execution("g"):
            # The first finishes last; positions follow the call order anyway.
            return await asyncio.gather(work(0, 0.05), work(1, 0.0), work(2, 0.02))

    assert asyncio.run(main()) == [0, 1, 2]
    assert sorted(c.seq for c in omium.history("g")) == [1, 2, 3]
    assert asyncio.run(main()) == [0, 1, 2]
    assert sorted(ran) == [0, 1, 2]


def test_checkpoint_context_manager_records_state_and_restores_it(store):
    with omium.execution("cm"):
        with omium.Checkpoint("plan") as cp:
            assert not cp.restored
            cp.update_state(step=1, items=["a"])
    with omium.execution("cm"):
        with omium.Checkpoint("plan") as cp:
            assert cp.restored
            assert cp.state == {"step": 1, "items": ["a"]}
            cp.update_state(step=2)  # ignored on replay
        assert cp.state["step"] == 1

    async def main():
        with omium.execution("acm"):
            async with omium.Checkpoint("s") as cp:
                cp.update_state(x=1)
        return cp.checkpoint_id

    assert asyncio.run(main()) is not None
    assert omium.history("acm")[0].kind == "snapshot"


def test_an_exception_in_the_block_records_nothing(store):
    with pytest.raises(RuntimeError), omium.execution("x"):
        with omium.Checkpoint("plan") as cp:
            cp.update_state(a=1)
            raise RuntimeError("boom")
    assert omium.history("x") == []
    assert omium.get_execution("x").status == "failed"


def test_threads_keep_their_own_execution(store):
    @omium.checkpoint("step")
    def step(i):
        return i

    errors = []

    def worker(i):
        try:
            with omium.execution(f"th{i}"):
                for _ in range(20):
                    assert omium.get_execution_id() == f"th{i}"
                    step(i)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i in range(6):
        assert len(omium.history(f"th{i}")) == 20
    assert omium.verify().ok
