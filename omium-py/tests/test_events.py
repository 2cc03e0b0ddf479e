"""The event feed from Python: every change as a CloudEvent, the cursor, filters, a follower
woken by writes in another thread (sync and async), and the same through `omium serve`."""

from __future__ import annotations

import asyncio
import threading

import omium
import pytest


def _workflow(name: str = "pipeline"):
    @omium.checkpoint
    def step(i: int) -> int:
        return i * i

    @omium.workflow(name)
    def pipeline(n: int) -> int:
        return sum(step(i) for i in range(n))

    return pipeline


def test_every_change_is_a_cloudevent_with_a_cursor(store):
    pipeline = _workflow()
    pipeline.run(2, execution_id="e1")
    omium.rollback("e1", to=omium.history("e1")[0].id, reason="redo")
    events = list(omium.events())
    assert [e["type"] for e in events] == [
        "io.omium.execution.started",
        "io.omium.checkpoint.created",
        "io.omium.checkpoint.created",
        "io.omium.execution.completed",
        "io.omium.execution.rolled_back",
    ]
    assert [e["omiumseq"] for e in events] == [1, 2, 3, 4, 5]
    first = events[0]
    assert first["specversion"] == "1.0" and first["subject"] == "e1" and first["id"] == "1"
    assert first["source"].startswith("urn:omium:store:")
    assert events[4]["data"]["reason"] == "redo"
    # From a cursor: nothing before it comes again.
    assert [e["omiumseq"] for e in omium.events(since=3)] == [4, 5]
    assert [e["omiumseq"] for e in omium.events(limit=2)] == [1, 2]


def test_filters_keep_types_and_executions_and_unknown_types_are_refused(store):
    pipeline = _workflow()
    pipeline.run(1, execution_id="e1")
    pipeline.run(3, execution_id="e2")
    assert [e["type"] for e in omium.events(types=["execution.*"], execution_id="e2")] == [
        "io.omium.execution.started",
        "io.omium.execution.completed",
    ]
    assert len(list(omium.events(types=["checkpoint.created"]))) == 4
    with pytest.raises(omium.InvalidArgumentError, match="is no event type"):
        list(omium.events(types=["execution.exploded"]))


def test_a_follower_sees_what_another_thread_writes(store):
    pipeline = _workflow()
    pipeline.run(1, execution_id="before")
    cursor = list(omium.events())[-1]["omiumseq"]
    started = threading.Event()

    def write() -> None:
        started.wait(30)
        pipeline.run(2, execution_id="during")

    t = threading.Thread(target=write)
    t.start()
    got = []
    started.set()
    for e in omium.events(since=cursor, follow=True, timeout=30):
        got.append((e["type"], e["subject"]))
        if e["type"] == "io.omium.execution.completed":
            break
    t.join()
    assert got[0] == ("io.omium.execution.started", "during")
    assert got[-1] == ("io.omium.execution.completed", "during")
    # A quiet feed ends a follow with a timeout.
    last = list(omium.events())[-1]["omiumseq"]
    assert list(omium.events(since=last, follow=True, timeout=0.2)) == []


def test_aevents_follows_without_blocking_the_loop(store):
    pipeline = _workflow()

    async def main() -> list[str]:
        got: list[str] = []

        async def follow() -> None:
            async for e in omium.aevents(follow=True, timeout=30, types=["execution.completed"]):
                got.append(e["subject"])
                if len(got) == 2:
                    return

        task = asyncio.create_task(follow())
        await asyncio.to_thread(pipeline.run, 1, execution_id="a1")
        await asyncio.to_thread(pipeline.run, 1, execution_id="a2")
        await asyncio.wait_for(task, 30)
        return got

    assert asyncio.run(main()) == ["a1", "a2"]
