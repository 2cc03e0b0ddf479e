"""The application of test_ui.py: holds the store (its only writer) and runs the workflow
`ui_demo` (steps plan → act → report), as the dashboard watches from beside it.

- at start it runs execution `first` to completion and prints "ready";
- a file `start-<id>` in CTL starts execution <id>; if <id> starts with `stuck`, its step `act`
  fails with a `ValueError`, and the policy pauses it;
- between those it calls `omium.recover()`, so an execution the dashboard rolled back, retried or
  resumed is run again here (the writer also answers the dashboard's controls: the mailbox);
- a file `stop` in CTL ends it.

Usage: ui_worker.py STORE CTL"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import omium

store, ctl = sys.argv[1], Path(sys.argv[2])
omium.init(path=store)
omium.policy.apply(
    "recovery:\n  on_error: [inspect, pause]\n",
    scope="workflow:ui_demo",
)


@omium.checkpoint(agent="planner")
def plan(topic: str) -> dict:
    return {"topic": topic, "steps": ["search", "summarize"], "attempt": 1}


@omium.checkpoint(agent="actor")
def act(state: dict) -> dict:
    if state["topic"].startswith("stuck") and not state.get("fixed"):
        raise ValueError(f"the tool answered nothing for {state['topic']}")
    return {**state, "done": state["steps"], "attempt": state["attempt"] + 1}


@omium.checkpoint(agent="reporter")
def report(state: dict) -> str:
    return f"{state['topic']}: {len(state['done'])} steps"


@omium.workflow("ui_demo")
def ui_demo(topic: str) -> str:
    return report(act(plan(topic)))


ui_demo.run("first", execution_id="first")
print("ready", flush=True)
while not (ctl / "stop").exists():
    for f in sorted(ctl.glob("start-*")):
        eid = f.name.removeprefix("start-")
        f.unlink()
        try:
            ui_demo.run(eid, execution_id=eid)
        except omium.ExecutionPaused:
            pass
    try:
        omium.recover()
    except omium.ExecutionPaused:
        pass
    time.sleep(0.05)
omium.shutdown()
