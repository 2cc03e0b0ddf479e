"""A LangGraph graph on OmiumSaver whose process is SIGKILLed mid-graph, again and again, then
resumed by a new process: the thread completes with every node's output exactly once, and no
node that finished before a kill runs again (only the node in flight may)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from omium.langgraph import OmiumSaver

WORKER = Path(__file__).with_name("langgraph_crash_worker.py")
NODES = 12


def wait_for(log: Path, line: str, proc: subprocess.Popen, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and line in log.read_text().splitlines():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    raise AssertionError(f"worker never logged {line!r}")


def test_sigkilled_graph_resumes_without_rerunning_finished_nodes(tmp_path):
    kills = min(int(os.environ.get("OMIUM_CRASH_KILLS", "6")), 12)
    seed = int(os.environ.get("OMIUM_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    print(f"langgraph crash test: {kills} kills, OMIUM_CRASH_SEED={seed}")
    store, log = tmp_path / "store", tmp_path / "log"
    killed = 0
    while killed < kills:
        proc = subprocess.Popen([sys.executable, str(WORKER), str(store), str(log)])
        if not wait_for(log, f"ready {proc.pid}", proc):
            break
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is not None:
            assert proc.returncode == 0, f"worker failed on its own (exit {proc.returncode})"
            break  # the graph finished before this kill
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed += 1
        # After every kill the store opens and the thread reads back.
        with OmiumSaver(store) as saver:
            tup = saver.get_tuple({"configurable": {"thread_id": "crash"}})
            if tup is not None:
                done = tup.checkpoint["channel_values"].get("done", [])
                assert done == list(range(len(done))), done
    proc = subprocess.run([sys.executable, str(WORKER), str(store), str(log)], timeout=120)
    assert proc.returncode == 0
    assert killed > 0 or kills == 0, "no kill landed mid-graph"

    with OmiumSaver(store) as saver:
        tup = saver.get_tuple({"configurable": {"thread_id": "crash"}})
        values = tup.checkpoint["channel_values"]
        evidence = "\n".join(
            f"{c.config['configurable']['checkpoint_id']} step={c.metadata.get('step')} "
            f"done={c.checkpoint['channel_values'].get('done')} writes={[w[1] for w in c.pending_writes]}"
            for c in saver.list({"configurable": {"thread_id": "crash"}})
        )
        assert values["done"] == list(range(NODES)), f"{values['done']}\n{evidence}\n{log.read_text()}"
        assert values["payload"] == "".join(f"<{i}>" + "x" * 2000 for i in range(NODES))

    lines = [line.split() for line in log.read_text().splitlines()]
    runs: dict[int, list[str]] = {}
    for kind, *rest in lines:
        if kind == "body":
            runs.setdefault(int(rest[0]), []).append(rest[1])
    assert sorted(runs) == list(range(NODES))
    # A node runs again only if a kill interrupted it: at most one extra run per kill, and
    # never a second run by the same process.
    extra = sum(len(pids) - 1 for pids in runs.values())
    assert extra <= killed, (extra, killed, runs)
    for i, pids in runs.items():
        assert len(pids) == len(set(pids)), f"node {i} ran twice in one process: {pids}"
    # Nodes ran in order across processes: once node i ran, no node before it ran again.
    order = [int(rest[0]) for kind, *rest in lines if kind == "body"]
    for a, b in zip(order, order[1:], strict=False):
        assert b >= a, f"node {b} ran after node {a}: a finished node was re-run ({order})"


def test_killed_between_a_nodes_writes_and_the_next_checkpoint_the_node_does_not_run_again(tmp_path):
    store, log = tmp_path / "store", tmp_path / "log"
    env = {**os.environ, "OMIUM_KILL_AT_STEP": "6"}
    first = subprocess.run([sys.executable, str(WORKER), str(store), str(log)], env=env, timeout=120)
    assert first.returncode == -signal.SIGKILL
    with OmiumSaver(store) as saver:
        tup = saver.get_tuple({"configurable": {"thread_id": "crash"}})
        # The checkpoint of step 5 (after node n5) is the newest; node n6 ran and its writes
        # are stored against it, pending.
        assert tup.metadata["step"] == 5
        assert {w[1] for w in tup.pending_writes} >= {"done", "payload"}
    second = subprocess.run([sys.executable, str(WORKER), str(store), str(log)], timeout=120)
    assert second.returncode == 0
    bodies = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("body")]
    assert bodies == [str(i) for i in range(NODES)], bodies
    with OmiumSaver(store) as saver:
        done = saver.get_tuple({"configurable": {"thread_id": "crash"}}).checkpoint["channel_values"]["done"]
        assert done == list(range(NODES))
