"""Real LangGraph graphs (no LLM) on OmiumSaver: interrupts resumed with Command(resume=...),
time travel (history, replay from a checkpoint id, update_state forks), subgraphs, async
graphs, and a store reopened by a new saver between calls."""

from __future__ import annotations

import operator
from typing import Annotated

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from omium.langgraph import OmiumSaver
from typing_extensions import TypedDict


class State(TypedDict):
    log: Annotated[list[str], operator.add]
    approved: str


def approval_graph(saver, calls: list[str]):
    def draft(state: State):
        calls.append("draft")
        return {"log": ["drafted"]}

    def review(state: State):
        calls.append("review")
        answer = interrupt({"question": "approve the draft?"})
        return {"log": [f"review:{answer}"], "approved": answer}

    def publish(state: State):
        calls.append("publish")
        return {"log": ["published"]}

    b = StateGraph(State)
    b.add_node("draft", draft)
    b.add_node("review", review)
    b.add_node("publish", publish)
    b.add_edge(START, "draft")
    b.add_edge("draft", "review")
    b.add_edge("review", "publish")
    b.add_edge("publish", END)
    return b.compile(checkpointer=saver)


def test_interrupt_resumed_by_a_new_saver_on_the_reopened_store(tmp_path):
    path = tmp_path / "store"
    config = {"configurable": {"thread_id": "doc-1"}}
    calls: list[str] = []
    with OmiumSaver(path) as saver:
        out = approval_graph(saver, calls).invoke({"log": ["start"]}, config)
        assert out["__interrupt__"][0].value == {"question": "approve the draft?"}
        assert calls == ["draft", "review"]
    # The process's saver is gone; a new one on the same directory resumes the thread.
    with OmiumSaver(path) as saver:
        graph = approval_graph(saver, calls)
        state = graph.get_state(config)
        assert state.next == ("review",)
        assert state.values["log"] == ["start", "drafted"]
        out = graph.invoke(Command(resume="yes"), config)
        assert out["log"] == ["start", "drafted", "review:yes", "published"]
        assert out["approved"] == "yes"
        # draft ran once; review ran again on resume (LangGraph re-runs an interrupted node).
        assert calls == ["draft", "review", "review", "publish"]
        assert graph.get_state(config).next == ()


def counter_graph(saver):
    class S(TypedDict):
        n: int
        trail: Annotated[list[str], operator.add]

    def step(name: str):
        def node(state):
            return {"n": state["n"] + 1, "trail": [name]}

        return node

    b = StateGraph(S)
    for name in ["a", "b", "c"]:
        b.add_node(name, step(name))
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("b", "c")
    b.add_edge("c", END)
    return b.compile(checkpointer=saver)


def test_time_travel_history_replay_and_fork(tmp_path):
    with OmiumSaver(tmp_path / "store", durability="buffered") as saver:
        graph = counter_graph(saver)
        config = {"configurable": {"thread_id": "tt"}}
        assert graph.invoke({"n": 0, "trail": []}, config) == {"n": 3, "trail": ["a", "b", "c"]}

        history = list(graph.get_state_history(config))
        # input, a, b, c, plus the initial empty checkpoint: newest first.
        assert [s.next for s in history] == [(), ("c",), ("b",), ("a",), ("__start__",)]
        ids = [s.config["configurable"]["checkpoint_id"] for s in history]
        assert ids == sorted(ids, reverse=True)
        for newer, older in zip(history, history[1:], strict=False):
            assert newer.parent_config["configurable"]["checkpoint_id"] == older.config["configurable"]["checkpoint_id"]

        # Replay from the checkpoint before "b": b and c run again from n == 1.
        before_b = next(s for s in history if s.next == ("b",))
        assert before_b.values == {"n": 1, "trail": ["a"]}
        replayed = graph.invoke(None, before_b.config)
        assert replayed == {"n": 3, "trail": ["a", "b", "c"]}

        # Fork: edit the state at that checkpoint and continue from the fork.
        fork_config = graph.update_state(before_b.config, {"n": 100, "trail": ["edited"]})
        assert fork_config["configurable"]["checkpoint_id"] not in ids
        forked = graph.invoke(None, fork_config)
        assert forked == {"n": 102, "trail": ["a", "edited", "b", "c"]}

        # The original branch is still readable at its checkpoint ids.
        original_end = graph.get_state({"configurable": {"thread_id": "tt", "checkpoint_id": ids[0]}})
        assert original_end.values == {"n": 3, "trail": ["a", "b", "c"]}
        # And the thread's head is the fork's end.
        assert graph.get_state(config).values == {"n": 102, "trail": ["a", "edited", "b", "c"]}


def test_subgraph_interrupt_and_resume(tmp_path):
    class Sub(TypedDict):
        items: Annotated[list[str], operator.add]

    def sub_ask(state: Sub):
        got = interrupt("inner question")
        return {"items": [f"inner:{got}"]}

    sb = StateGraph(Sub)
    sb.add_node("ask", sub_ask)
    sb.add_edge(START, "ask")
    sb.add_edge("ask", END)
    sub = sb.compile()

    # The parent's channel has no reducer (the subgraph's output replaces it), so the
    # subgraph's result is not added twice.
    class Outer(TypedDict):
        items: list[str]

    def before(state: Outer):
        return {"items": [*state["items"], "outer-before"]}

    def after(state: Outer):
        return {"items": [*state["items"], "outer-after"]}

    b = StateGraph(Outer)
    b.add_node("before", before)
    b.add_node("sub", sub)
    b.add_node("after", after)
    b.add_edge(START, "before")
    b.add_edge("before", "sub")
    b.add_edge("sub", "after")
    b.add_edge("after", END)

    path = tmp_path / "store"
    config = {"configurable": {"thread_id": "nested"}}
    with OmiumSaver(path) as saver:
        graph = b.compile(checkpointer=saver)
        out = graph.invoke({"items": []}, config)
        assert out["__interrupt__"][0].value == "inner question"
        state = graph.get_state(config, subgraphs=True)
        assert state.next == ("sub",)
        # The subgraph's own checkpoint lives in its namespace.
        sub_state = state.tasks[0].state
        assert sub_state.next == ("ask",)
        assert sub_state.config["configurable"]["checkpoint_ns"].startswith("sub:")
        namespaces = {t.config["configurable"]["checkpoint_ns"] for t in saver.list(config)}
        assert "" in namespaces and any(ns.startswith("sub:") for ns in namespaces)
    with OmiumSaver(path) as saver:
        graph = b.compile(checkpointer=saver)
        out = graph.invoke(Command(resume="42"), config)
        assert out["items"] == ["outer-before", "inner:42", "outer-after"]


async def test_async_graph_with_interrupt(tmp_path):
    calls: list[str] = []
    async with OmiumSaver(tmp_path / "store") as saver:
        graph = approval_graph(saver, calls)
        config = {"configurable": {"thread_id": "async-1"}}
        out = await graph.ainvoke({"log": []}, config)
        assert "__interrupt__" in out
        out = await graph.ainvoke(Command(resume="no"), config)
        assert out["log"] == ["drafted", "review:no", "published"]
        history = [s async for s in graph.aget_state_history(config)]
        assert len(history) == 5
        assert (await saver.aget_tuple(config)).checkpoint["channel_values"]["approved"] == "no"


def test_bad_config_is_a_clear_error(tmp_path):
    with OmiumSaver(tmp_path / "store") as saver:
        with pytest.raises(ValueError, match="configurable.thread_id"):
            saver.get_tuple({"configurable": {}})
        with pytest.raises(ValueError, match="configurable.checkpoint_id"):
            saver.put_writes({"configurable": {"thread_id": "t"}}, [("ch", 1)], "task")
        with pytest.raises(ValueError, match="unknown strategy 'all'"):
            saver.prune(["t"], strategy="all")
    with pytest.raises(ValueError, match="exactly one of path= .* or store="):
        OmiumSaver()


def test_metadata_fields_are_canonical_json_and_non_json_filters_work(tmp_path):
    import json

    from omium.langgraph import _field

    for v in ["a", 'é"\n', 3, -7, 10**30, True, False, None, 1.5, {"b": 1, "a": [1, "x"]}]:
        assert _field(v) == json.dumps(v, sort_keys=True, separators=(",", ":")), v
    assert _field(object()) is None

    with OmiumSaver(tmp_path / "store", durability="none") as saver:
        graph = counter_graph(saver)
        for t in ("x", "y"):
            graph.invoke({"n": 0, "trail": []}, {"configurable": {"thread_id": t}})
        # A filter on a JSON value is answered by the store, with the limit applied there.
        inputs = list(saver.list(None, filter={"source": "input"}))
        assert {c.config["configurable"]["thread_id"] for c in inputs} == {"x", "y"}
        assert len(list(saver.list(None, filter={"source": "loop", "step": 2}, limit=1))) == 1
        # A filter value JSON cannot express is checked in Python (nothing matches here).
        assert list(saver.list(None, filter={"source": object()})) == []


def test_parallel_branches_write_concurrently_and_match_in_memory(tmp_path):
    """Fan-out: LangGraph runs the three branches on its thread pool, so their put_writes reach
    the store concurrently (the native layer releases the GIL; commits are grouped). The result
    and the pending writes match LangGraph's own InMemorySaver."""
    from langgraph.checkpoint.memory import InMemorySaver

    class S(TypedDict):
        hits: Annotated[list[str], operator.add]

    def branch(name: str):
        def node(state: S):
            return {"hits": [name * 300]}

        return node

    def build(saver):
        b = StateGraph(S)
        b.add_node("start", lambda s: {"hits": ["start"]})
        for name in "abc":
            b.add_node(name, branch(name))
            b.add_edge("start", name)
        b.add_node("join", lambda s: {"hits": ["join"]})
        b.add_edge(["a", "b", "c"], "join")
        b.add_edge(START, "start")
        b.add_edge("join", END)
        return b.compile(checkpointer=saver)

    config = {"configurable": {"thread_id": "fan"}}
    expected = build(InMemorySaver()).invoke({"hits": []}, config)
    with OmiumSaver(tmp_path / "store", durability="sync") as saver:
        graph = build(saver)
        for i in range(5):
            assert graph.invoke({"hits": []}, {"configurable": {"thread_id": f"fan-{i}"}}) == expected
        history = list(graph.get_state_history({"configurable": {"thread_id": "fan-0"}}))
        # The superstep of the three branches has their three writes pending on its checkpoint.
        fan_out = next(s for s in history if set(s.next) == {"a", "b", "c"})
        tup = saver.get_tuple(fan_out.config)
        assert sorted(w[1] for w in tup.pending_writes if w[1] == "hits") == ["hits"] * 3
