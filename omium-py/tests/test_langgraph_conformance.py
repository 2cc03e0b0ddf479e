"""LangGraph's own checkpointer conformance suite (langgraph-checkpoint-conformance), every
base and extended capability, against OmiumSaver on a real store in each durability mode."""

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from omium.langgraph import OmiumSaver


@pytest.mark.parametrize("durability", ["sync", "buffered"])
async def test_conformance_all_capabilities(tmp_path, durability):
    counter = iter(range(1000))

    @checkpointer_test(name=f"OmiumSaver-{durability}")
    async def omium_saver():
        saver = OmiumSaver(tmp_path / f"store-{next(counter)}", durability=durability)
        try:
            yield saver
        finally:
            saver.close()

    report = await validate(omium_saver)
    results = report.results
    assert {c.value for c in ALL_CAPABILITIES} <= set(results)
    problems = []
    for name, r in sorted(results.items()):
        if not r.detected:
            problems.append(f"{name}: not implemented")
        elif not r.passed or r.tests_failed:
            problems.append(f"{name}: {r.tests_failed} failed: {r.failures}")
        elif r.tests_passed == 0:
            problems.append(f"{name}: no test ran")
    assert not problems, "\n".join(problems)
