"""The worker that test_crash.py kills: three executions (named after a generation) of a 15-step
workflow, sync durability.

Each step body appends ``body <execution> <i> <pid>`` to a log (fsynced) before returning, and
returns its pid inside its result; after each step returns, the workflow checks the value
(replayed or fresh) and logs ``returned <execution> <i> <pid>``."""

from __future__ import annotations

import os
import random
import sys
import time

import omium

STEPS = 15
EXECUTIONS = 3
store, log, generation = sys.argv[1], sys.argv[2], sys.argv[3]
omium.init(path=store)


def logline(line: str) -> None:
    with open(log, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def make_step(i: int):
    @omium.checkpoint(f"step{i}")
    def step(execution: str, prev: int | None) -> dict:
        time.sleep(random.uniform(0, 0.01))
        logline(f"body {execution} {i} {os.getpid()}")
        return {"i": i, "prev": prev, "pid": os.getpid(), "payload": "x" * (i * 400)}

    return step


steps = [make_step(i) for i in range(STEPS)]


@omium.workflow("crashy")
def crashy(execution: str) -> str:
    prev = None
    for i, step in enumerate(steps):
        r = step(execution, prev)
        if r["i"] != i or r["prev"] != prev or len(r["payload"]) != i * 400:
            raise SystemExit(f"step {i} of {execution} returned {r!r}")
        logline(f"returned {execution} {i} {os.getpid()}")
        prev = i
    return "done"


for k in range(EXECUTIONS):
    execution_id = f"g{generation}-exec{k}"
    assert crashy.run(execution_id, execution_id=execution_id) == "done"
logline(f"all-done {os.getpid()}")
