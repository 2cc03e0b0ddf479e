"""The worker test_langgraph_crash.py SIGKILLs: a 12-node LangGraph graph on OmiumSaver
(sync durability) on thread "crash". Started again, it resumes the thread where the last
worker stopped.

Each node logs ``body <i> <pid>`` (fsynced) before returning; the worker logs ``ready <pid>``
once imported and ``finished <pid>`` when the graph has completed."""

from __future__ import annotations

import operator
import os
import random
import sys
import time
from typing import Annotated

from langgraph.graph import END, START, StateGraph
from omium.langgraph import OmiumSaver
from typing_extensions import TypedDict

NODES = 12
store, log = sys.argv[1], sys.argv[2]


def logline(line: str) -> None:
    with open(log, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


class State(TypedDict):
    done: Annotated[list[int], operator.add]
    payload: str


def make_node(i: int):
    def node(state: State):
        time.sleep(random.uniform(0.01, 0.05))
        logline(f"body {i} {os.getpid()}")
        return {"done": [i], "payload": state["payload"] + f"<{i}>" + "x" * 2000}

    return node


builder = StateGraph(State)
for i in range(NODES):
    builder.add_node(f"n{i}", make_node(i))
builder.add_edge(START, "n0")
for i in range(NODES - 1):
    builder.add_edge(f"n{i}", f"n{i + 1}")
builder.add_edge(f"n{NODES - 1}", END)

with OmiumSaver(store, durability="sync") as saver:
    graph = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "crash"}}
    logline(f"ready {os.getpid()}")
    if saver.get_tuple(config) is None:
        graph.invoke({"done": [], "payload": ""}, config)
    elif graph.get_state(config).next:
        graph.invoke(None, config)
    logline(f"finished {os.getpid()}")
