"""A Python worker SIGKILLed at random points (OMIUM_CRASH_KILLS times, default 20) must
leave a store that opens and verifies; each execution resumed afterwards completes; and every
step's recorded result comes from exactly one run of its body: the last one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import omium

WORKER = Path(__file__).with_name("crash_worker.py")


def test_sigkilled_workers_resume_and_run_each_step_body_once(tmp_path):
    kills = int(os.environ.get("OMIUM_CRASH_KILLS", "20"))
    seed = int(os.environ.get("OMIUM_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    print(f"python crash test: {kills} kills, OMIUM_CRASH_SEED={seed}")
    store, log = tmp_path / "store", tmp_path / "log"
    killed, generation = 0, 0
    # Kill workers at random moments; when one finishes its generation of executions before
    # it is killed, the next worker starts a new generation, until enough kills landed.
    while killed < kills:
        proc = subprocess.Popen([sys.executable, str(WORKER), str(store), str(log), str(generation)])
        deadline = time.monotonic() + rng.uniform(0.15, 0.9)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        if proc.poll() is not None:
            assert proc.returncode == 0, f"worker failed on its own (exit {proc.returncode})"
            generation += 1
            continue
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed += 1
        # After every kill the store opens (as the next worker would) and verifies.
        s = omium.Store(str(store))
        report = s.verify()
        s.close()
        assert report["ok"], report["problems"]
    proc = subprocess.run([sys.executable, str(WORKER), str(store), str(log), str(generation)], timeout=120)
    assert proc.returncode == 0

    lines = [line.split() for line in log.read_text().splitlines()]
    bodies: dict[tuple[str, int], list[int]] = defaultdict(list)
    for kind, *rest in lines:
        if kind == "body":
            bodies[(rest[0], int(rest[1]))].append(int(rest[2]))
    assert lines[-1][0] == "all-done"

    s = omium.Store(str(store))
    try:
        ids = [f"g{g}-exec{k}" for g in range(generation + 1) for k in range(3)]
        assert sorted(e["id"] for e in s.executions()) == sorted(ids)
        for execution_id in ids:
            e = s.execution(execution_id)
            assert e["status"] == "completed"
            history = s.history(execution_id)
            assert [c["name"] for c in history] == [f"step{i}" for i in range(15)]
            for i, c in enumerate(history):
                recorded = omium.get_codec("msgpack").decode(s.read_state(c["id"]))
                runs = bodies[(execution_id, i)]
                # The recorded result is from the body's last run: no run came after it.
                assert runs and recorded["pid"] == runs[-1], (execution_id, i, runs, recorded["pid"])
                # Every earlier run was in a process killed before it could record.
                assert len(set(runs)) == len(runs)
        assert s.verify()["ok"]
    finally:
        s.close()
    reran = sum(len(v) - 1 for v in bodies.values())
    print(f"{killed} kills over {generation + 1} generations; {reran} bodies re-ran (killed between body and commit)")
