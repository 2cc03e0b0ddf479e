"""A worker process of test_serve.py: it records into an `omium serve` daemon (omium.init(url=...)).

`claim URL LOG ID...`: runs the 5-step `pipeline` workflow for each id it can get; an id another
worker is running answers ExecutionLeasedError and is skipped. `slow URL LOG ID`: runs one
10-step execution, 0.5 s a step (the test kills it mid-way). `recover URL LOG`: resumes every
resumable execution; with OMIUM_TEST_BARRIER=DIR it first writes DIR/ready-PID and waits for DIR/go,
so that the test starts every worker's work at once. `hold URL LOG ID`: runs the 5-step `holder` workflow, prints READY when
it reaches step 3 and waits there to be killed. Each step appends "<execution> <step> <pid>" to LOG when its body runs."""

from __future__ import annotations

import json
import os
import sys
import time

import omium


def main() -> None:
    mode, url, log = sys.argv[1:4]
    ids = sys.argv[4:]
    omium.init(url=url)

    def note(execution: str, step: int) -> None:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{execution} {step} {os.getpid()}\n".encode())
        finally:
            os.close(fd)

    @omium.checkpoint
    def work(execution: str, step: int, pause: float) -> int:
        note(execution, step)
        time.sleep(pause)
        return step * step

    @omium.workflow("pipeline")
    def pipeline(execution: str, steps: int, pause: float) -> int:
        return sum(work(execution, i, pause) for i in range(steps))

    @omium.checkpoint("hold_step")
    def hold_step(execution: str, step: int) -> int:
        note(execution, step)
        if step == 3:
            print("READY", flush=True)
            time.sleep(3600)
        return step

    @omium.workflow("holder")
    def holder(execution: str) -> list[int]:
        return [hold_step(execution, i) for i in range(5)]

    barrier = os.environ.get("OMIUM_TEST_BARRIER")
    if barrier:
        open(os.path.join(barrier, f"ready-{os.getpid()}"), "w").close()
        while not os.path.exists(os.path.join(barrier, "go")):
            time.sleep(0.005)

    done, skipped = [], []
    if mode == "hold":
        holder.run(ids[0], execution_id=ids[0])
    elif mode == "claim":
        for eid in ids:
            try:
                pipeline.run(eid, 5, 0.01, execution_id=eid)
                done.append(eid)
            except omium.ExecutionLeasedError:
                skipped.append(eid)
    elif mode == "slow":
        pipeline.run(ids[0], 10, 0.5, execution_id=ids[0])
        done.append(ids[0])
    elif mode == "recover":
        done = sorted(omium.recover())
    print(json.dumps({"pid": os.getpid(), "done": done, "skipped": skipped}), flush=True)
    omium.shutdown()


if __name__ == "__main__":
    main()
