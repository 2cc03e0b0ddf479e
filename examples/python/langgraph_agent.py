"""A LangGraph support agent on Omium (no LLM: the "model" is a rule, so this runs anywhere).

    python examples/python/langgraph_agent.py [STORE_DIR]

1. The agent drafts a refund and stops at a human approval (`interrupt`). The process ends.
2. A new process (a new `OmiumSaver` on the same store) shows the pending question and resumes
   the thread with `Command(resume="approve")`.
3. Time travel: the thread's history, then a fork from the checkpoint before the approval with
   an edited amount; the original branch stays readable.
"""

from __future__ import annotations

import operator
import sys
import tempfile
from pathlib import Path
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from omium.langgraph import OmiumSaver


class Ticket(TypedDict):
    customer: str
    amount: int
    log: Annotated[list[str], operator.add]
    decision: str


def draft_refund(t: Ticket) -> dict:
    return {"log": [f"drafted a refund of {t['amount']} EUR for {t['customer']}"]}


def approval(t: Ticket) -> dict:
    # The graph stops here until a human answers; the answer comes back as interrupt()'s value.
    answer = interrupt({"question": f"refund {t['amount']} EUR to {t['customer']}?"})
    return {"decision": answer, "log": [f"human said {answer}"]}


def send(t: Ticket) -> dict:
    done = "refund sent" if t["decision"] == "approve" else "refund cancelled"
    return {"log": [f"{done} ({t['amount']} EUR)"]}


def build(saver: OmiumSaver):
    g = StateGraph(Ticket)
    g.add_node("draft_refund", draft_refund)
    g.add_node("approval", approval)
    g.add_node("send", send)
    g.add_edge(START, "draft_refund")
    g.add_edge("draft_refund", "approval")
    g.add_edge("approval", "send")
    g.add_edge("send", END)
    return g.compile(checkpointer=saver)


def main(store: Path) -> None:
    thread = {"configurable": {"thread_id": "ticket-7"}}

    print("1. run until the human approval")
    with OmiumSaver(store) as saver:
        out = build(saver).invoke({"customer": "ada", "amount": 120, "log": []}, thread)
        print(f"   paused: {out['__interrupt__'][0].value['question']}")

    print("2. a new saver on the same store resumes the thread")
    with OmiumSaver(store) as saver:
        graph = build(saver)
        print(f"   waiting at: {graph.get_state(thread).next}")
        out = graph.invoke(Command(resume="approve"), thread)
        for line in out["log"]:
            print(f"   - {line}")

        print("3. time travel")
        history = list(graph.get_state_history(thread))
        for s in history:
            print(f"   checkpoint {s.config['configurable']['checkpoint_id'][:13]}… next={s.next} log={len(s.values.get('log', []))}")
        before_approval = next(s for s in history if s.next == ("approval",))
        fork = graph.update_state(before_approval.config, {"amount": 80})
        graph.invoke(None, fork)
        out = graph.invoke(Command(resume="approve"), fork)
        print(f"   fork: {out['log'][-1]}")
        original = graph.get_state(history[0].config)
        print(f"   original branch still reads: {original.values['log'][-1]}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as d:
            main(Path(d) / "store")
