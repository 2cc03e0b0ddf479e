"""User spans from Python: `omium.Span` and `omium.trace` (both native) as blocks, async
blocks, decorators and plain objects; their fields; their errors."""

from __future__ import annotations

import asyncio
import json

import omium
import pytest


@pytest.fixture
def traced(store):
    omium.configure_tracing(enabled=True, capture_content=False)
    yield store
    omium.configure_tracing(enabled=True, capture_content=False)


def by_name(execution_id: str) -> dict[str, dict]:
    return {s["name"]: s for s in omium.spans(execution_id)}


def test_blocks_nest_and_record_their_fields(traced):
    with omium.Span("root", "agent", execution_id="s-1", agent="planner") as root:
        assert root.execution_id == "s-1" and root.parent is None
        with omium.trace("inner", span_type="tool", tool="search") as inner:
            assert inner.trace_id == root.trace_id and inner.parent == root.span_id
            assert omium.get_traceparent() == inner.traceparent
            inner.set_attributes({"hits": 3, "ratio": 0.5})
            inner.add_event("cache miss", {"key": "k"})
        assert inner.ended and inner.status == "ok"
        assert omium.get_traceparent() == root.traceparent
        root.set_attribute("flags", ["a", "b"])
    assert omium.get_traceparent() is None
    s = by_name("s-1")
    assert s["root"]["agent"] == "planner" and s["root"]["span_type"] == "agent"
    assert s["root"]["attributes"] == {"flags": ["a", "b"]}
    assert s["inner"]["parent"] == s["root"]["span_id"]
    assert s["inner"]["attributes"] == {"tool": "search", "hits": 3, "ratio": 0.5}
    assert [e["name"] for e in s["inner"]["events"]] == ["cache miss"]
    assert s["inner"]["status"] == "ok"


def test_one_trace_object_in_nested_blocks_records_each(traced):
    t = omium.trace("again")
    with omium.Span("root", execution_id="s-2"):
        with t as outer:
            with t as inner:
                assert inner.parent == outer.span_id
            assert not outer.ended and inner.ended
        assert outer.ended
    spans = [x for x in omium.spans("s-2") if x["name"] == "again"]
    assert len(spans) == 2
    assert {x["parent"] for x in spans} == {by_name("s-2")["root"]["span_id"], outer.span_id.hex()}


def test_async_blocks_and_decorated_coroutines(traced):
    @omium.trace
    async def fetch(n):
        await asyncio.sleep(0)
        return n * 2

    async def main():
        async with omium.Span("root", execution_id="s-3") as root:
            async with omium.trace("step") as step:
                assert step.parent == root.span_id
                assert await fetch(2) == 4
        return root

    root = asyncio.run(main())
    s = by_name("s-3")
    fetched = s["test_async_blocks_and_decorated_coroutines.<locals>.fetch"]
    assert fetched["parent"] == s["step"]["span_id"] and s["step"]["parent"] == root.span_id.hex()


def test_errors_are_recorded_as_asked(traced):
    @omium.trace
    def fails():
        raise ValueError("bad input")

    @omium.trace("quiet", capture_errors=False)
    def fails_quietly():
        raise KeyError("k")

    with omium.Span("root", execution_id="s-4"):
        with pytest.raises(ValueError):
            fails()
        with pytest.raises(KeyError):
            fails_quietly()
        with pytest.raises(RuntimeError), omium.trace("block"):
            raise RuntimeError("boom")
        with pytest.raises(RuntimeError), omium.trace("quiet block", capture_errors=False):
            raise RuntimeError("boom")
    s = by_name("s-4")
    loud = s["test_errors_are_recorded_as_asked.<locals>.fails"]
    assert loud["status"] == "error" and loud["status_message"] == "ValueError: bad input"
    ev = loud["events"][0]
    assert ev["name"] == "exception"
    assert ev["attributes"] == {"exception.type": "ValueError", "exception.message": "bad input"}
    assert s["block"]["status"] == "error" and s["block"]["events"][0]["name"] == "exception"
    for quiet in ("quiet", "quiet block"):
        assert s[quiet]["status"] == "error" and s[quiet]["events"] == [], quiet


def test_a_span_ended_explicitly_and_its_fields_set(traced):
    s = omium.Span("manual", kind="client", execution_id="s-5")
    s.name, s.span_type, s.status_message = "renamed", "llm", ""
    s.kind = "server"
    s.trace_id = bytes(range(16))
    s.parent = bytes(range(8, 16))
    s.end(end_ns=s.start_ns + 1_000)
    s.end()  # twice: nothing more
    [span] = omium.spans("s-5")
    assert (span["name"], span["span_type"], span["kind"]) == ("renamed", "llm", "server")
    assert span["trace_id"] == bytes(range(16)).hex() and span["parent"] == bytes(range(8, 16)).hex()
    assert span["end_ns"] - span["start_ns"] == 1_000


def test_bad_arguments_and_fields_are_refused_with_their_names(traced):
    with pytest.raises(TypeError, match=r"omium.trace\(name\): expected a str, not int"):
        omium.trace(123)
    with pytest.raises(TypeError, match=r"omium.trace\(name\): expected a str, not builtin_function"):
        omium.trace(len, span_type="tool")
    with pytest.raises(TypeError, match="must decorate a function, not int"):
        omium.trace("x")(3)
    s = omium.Span("fields")
    with pytest.raises(TypeError, match="Span.trace_id must be 16 bytes, not 3"):
        s.trace_id = b"abc"
    with pytest.raises(TypeError, match="Span.parent must be 8 bytes, not str"):
        s.parent = "00"
    with pytest.raises(ValueError, match="span kind.*expected internal, server"):
        s.kind = "sideways"
    with pytest.raises(ValueError, match="span kind"):
        omium.Span("x", kind="sideways")
    with pytest.raises(TypeError, match="span status must be ok, error or unset"):
        s.status = "fine"
    s.attributes["none"] = None  # left out, not an error
    s.attributes["bad"] = object()  # stored as its text
    s.end()


def test_spans_without_init_or_with_tracing_off_record_nothing(tmp_path):
    with omium.trace("before init") as s:
        pass
    assert s.ended
    store = omium.init(path=tmp_path / "store", durability="buffered")
    try:
        omium.configure_tracing(enabled=False)
        with omium.Span("off", execution_id="s-6"):
            pass
        omium.configure_tracing(enabled=True)
        assert omium.spans("s-6") == []
        assert json.loads(store.span_stats())["recorded"] == 0
    finally:
        omium.configure_tracing(enabled=True)
        omium.shutdown()
