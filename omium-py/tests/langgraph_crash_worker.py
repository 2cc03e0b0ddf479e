"""The worker test_langgraph_crash.py SIGKILLs: a 12-node LangGraph graph on OmiumSaver
(sync durability) on thread "crash". Started again, it resumes the thread where the last
worker stopped.

Each node logs ``body <i> <pid>`` (fsynced) before returning; the worker logs ``ready <pid>``
once imported and ``finished <pid>`` when the graph has completed."""

from __future__ import annotations

import operator
import os
import random
import signal
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


class KillingSaver(OmiumSaver):
    """With OMIUM_KILL_AT_STEP=N: SIGKILLs its own process when LangGraph asks it to store the
    checkpoint of step N, i.e. after the writes of the node before it are durable and before
    that checkpoint is: the narrowest window of a crash."""

    def put(self, config, checkpoint, metadata, new_versions):
        if metadata.get("step") == int(os.environ.get("OMIUM_KILL_AT_STEP", "-99")):
            logline(f"self-kill {os.getpid()}")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().put(config, checkpoint, metadata, new_versions)


with KillingSaver(store, durability="sync") as saver:
    graph = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "crash"}}
    logline(f"ready {os.getpid()}")
    if saver.get_tuple(config) is None:
        graph.invoke({"done": [], "payload": ""}, config)
    else:
        # Resume. (Not conditioned on get_state().next: a kill between a node's put_writes and
        # the next checkpoint leaves that node's writes pending, and `next` then leaves the
        # node out although the graph has not applied them yet. invoke(None) applies them
        # without running the node again; on a finished thread it does nothing.)
        graph.invoke(None, config)
    logline(f"finished {os.getpid()}")
