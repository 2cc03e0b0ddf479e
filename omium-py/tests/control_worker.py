"""The worker of test_control.py: runs the 4-step workflow `gated` as one execution on an
embedded store. Step 1 waits in its body until the gate file exists, so the test can send a
control while the run is inside a step. Each body appends "enter <i>" to the log; the worker
prints {"outcome": "completed" | "paused" | "cancelled", "error": ...} when the run ends.

Usage: control_worker.py STORE LOG GATE EXECUTION"""

from __future__ import annotations

import json
import os
import sys
import time

import omium

store, log, gate, execution = sys.argv[1:5]
omium.init(path=store)


def note(line: str) -> None:
    with open(log, "a") as f:
        f.write(line + "\n")


@omium.checkpoint
def work(i: int) -> int:
    note(f"enter {i}")
    if i == 1:
        while not os.path.exists(gate):
            time.sleep(0.01)
    return i


@omium.workflow("gated")
def gated() -> int:
    return sum(work(i) for i in range(4))


try:
    gated.run(execution_id=execution)
    outcome = {"outcome": "completed"}
except omium.ExecutionPaused as e:
    outcome = {"outcome": "paused", "error": str(e)}
except omium.ExecutionCancelled as e:
    outcome = {"outcome": "cancelled", "error": str(e)}
print(json.dumps(outcome), flush=True)
omium.shutdown()
