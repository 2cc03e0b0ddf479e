"""A worker process of test_sync.py: a local store syncing to a cluster (omium.init(remote=...)).

`run STORE NODES MODE LOG ID STEPS PAUSE [HOLD [STALL]]`: runs the `sync_pipeline` workflow (STEPS
steps, a transcript growing by about 6 KB a step, PAUSE seconds each) as execution ID and prints its
result; with HOLD (0-based, -1: none), step HOLD waits in its body to be killed; with STALL, the
worker stops itself (SIGSTOP, as a long pause would) between step STALL - 1 and step STALL, until
the test continues it. $SYNC_WORKER_LEASE overrides the lease. `recover STORE NODES MODE LOG`: resumes
what omium.recover() finds (pulling abandoned executions from the cluster). Each step appends
"<execution> <step> <pid>" to LOG when its body starts."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import omium

# The lease of a worker's runs. Long enough that the test's pull right after it SIGKILLs a worker
# surely comes before the lease ends, even on a loaded machine; the test then waits it out.
LEASE_TTL = float(os.environ.get("SYNC_WORKER_LEASE", "10.0"))
# The step that waits to be killed (`run ... HOLD`); None: none does.
HOLD_AT: int | None = None
# The step before which the worker stops itself (`run ... HOLD STALL`); None: none.
STALL_AT: int | None = None


def note(log: str, execution: str, step: int) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{execution} {step} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def state(execution: str, step: int) -> list[str]:
    """A transcript that grows by 100 lines (about 6 KB) a step: from the first step on it is
    chunked, not inlined, and each step's state shares its first chunks with the last one's."""
    return [f"{execution} line {i}: {i * 7919 % 10007:05d} " + "x" * 40 for i in range((step + 1) * 100)]


@omium.checkpoint
def work(log: str, execution: str, step: int, pause: float) -> list[str]:
    note(log, execution, step)
    if step == HOLD_AT:
        time.sleep(3600)  # killed here
    time.sleep(pause)
    return state(execution, step)


@omium.workflow("sync_pipeline")
def pipeline(log: str, execution: str, steps: int, pause: float) -> int:
    total = 0
    for i in range(steps):
        if i == STALL_AT:
            os.kill(os.getpid(), signal.SIGSTOP)
        total += len(work(log, execution, i, pause))
    return total


def main() -> None:
    global HOLD_AT, STALL_AT
    mode, store, nodes, durability, log = sys.argv[1:6]
    omium.init(path=store, remote=nodes, remote_durability=durability, lease_ttl=LEASE_TTL)
    if mode == "run":
        eid, steps, pause = sys.argv[6], int(sys.argv[7]), float(sys.argv[8])
        HOLD_AT = int(sys.argv[9]) if len(sys.argv) > 9 and int(sys.argv[9]) >= 0 else None
        STALL_AT = int(sys.argv[10]) if len(sys.argv) > 10 else None
        result = {eid: pipeline.run(log, eid, steps, pause, execution_id=eid)}
    else:
        result = omium.recover()
    omium.push()
    print(json.dumps({"pid": os.getpid(), "result": result, "sync": omium.sync_status()}), flush=True)
    omium.shutdown()


if __name__ == "__main__":
    main()
