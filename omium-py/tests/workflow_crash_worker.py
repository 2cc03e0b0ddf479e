"""Runs the workflow of test_workflows.py's SIGKILL test: `a` and `b` in parallel, then
`slow`, which hangs on the first run (the test kills or interrupts the process there) and
finishes on the next. Each agent appends a line to the log when its body runs."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import omium

SPEC = """
name: crashy
agents:
  - id: a
  - id: b
  - id: slow
flow:
  - step: a
    agent: a
    inputs: [n]
    outputs: [x]
  - step: b
    agent: b
    inputs: [n]
    outputs: [y]
  - step: slow
    agent: slow
    inputs: [x, y]
    outputs: [z]
"""


def main(store: str, log: str) -> None:
    omium.init(path=store, durability="sync")
    logf = Path(log)

    def note(line: str) -> None:
        with logf.open("a") as f:
            f.write(line + "\n")

    def a(n):
        note("a")
        return {"x": n + 1}

    def b(n):
        note("b")
        return {"y": n + 2}

    def slow(x, y):
        first = "slow-start" not in logf.read_text()
        note("slow-start")
        if first:
            time.sleep(60)  # killed here
        note("slow-end")
        return {"z": x * y}

    spec = omium.workflows.parse(SPEC).bind(a=a, b=b, slow=slow)
    try:
        result = spec.run({"n": 1}, execution_id="crash-1")
    except KeyboardInterrupt:
        note(f"interrupted {omium.get_execution('crash-1').status}")
        os._exit(130)  # the slow agent's thread is abandoned, as a crash would
    note(f"done {result.data['z']}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
