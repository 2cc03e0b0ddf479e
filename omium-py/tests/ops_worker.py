"""A worker process of test_operations.py, recording into an `omium serve` daemon.

`mix URL PREFIX N SEED FAIL_PCT`: runs N executions `PREFIX-<i>` of the 3-step workflow `orders`;
a seeded share FAIL_PCT of them fail in their second step. Prints {"completed": [...],
"failed": [...]}.
`gated URL LOG GATE ID`: runs one 4-step execution of the workflow `ctl`; its step 1 writes
"enter 1" to LOG and waits in its body until GATE exists, so the test can send a control while
the run is inside a step. Prints {"outcome": "completed" | "paused" | "cancelled"}."""

from __future__ import annotations

import json
import os
import random
import sys
import time

import omium


def main() -> None:
    mode, url = sys.argv[1:3]
    omium.init(url=url, api_key=os.environ["OMIUM_TEST_KEY"])

    if mode == "mix":
        prefix, n, seed, fail_pct = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
        rng = random.Random(seed)
        doomed = {i for i in range(n) if rng.randrange(100) < fail_pct}

        @omium.checkpoint("reserve", agent="stock")
        def reserve(i: int) -> int:
            return i

        @omium.checkpoint("charge", agent="billing")
        def charge(i: int) -> int:
            if i in doomed:
                raise ValueError(f"card declined for order {i}")
            return i * 2

        @omium.checkpoint("ship", agent="shipping")
        def ship(i: int) -> int:
            return i + 1

        @omium.workflow("orders")
        def orders(i: int) -> int:
            return ship(charge(reserve(i)))

        done: dict[str, list[str]] = {"completed": [], "failed": []}
        for i in range(n):
            eid = f"{prefix}-{i}"
            try:
                orders.run(i, execution_id=eid)
                done["completed"].append(eid)
            except ValueError:
                done["failed"].append(eid)
        print(json.dumps(done), flush=True)
    elif mode == "gated":
        log, gate, eid = sys.argv[3:6]

        @omium.checkpoint("work", agent="ctl")
        def work(i: int) -> int:
            if i == 1:
                with open(log, "a") as f:
                    f.write("enter 1\n")
                while not os.path.exists(gate):
                    time.sleep(0.01)
            return i

        @omium.workflow("ctl")
        def ctl() -> int:
            return sum(work(i) for i in range(4))

        try:
            ctl.run(execution_id=eid)
            outcome = "completed"
        except omium.ExecutionPaused:
            outcome = "paused"
        except omium.ExecutionCancelled:
            outcome = "cancelled"
        print(json.dumps({"outcome": outcome}), flush=True)
    omium.shutdown()


if __name__ == "__main__":
    main()
