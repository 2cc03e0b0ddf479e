"""Ctrl-C (SIGINT) during a step leaves the store consistent and the execution resumable."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import omium
from conftest import ctrl_c_as_in_a_terminal

SCRIPT = textwrap.dedent("""
    import sys, time, omium
    omium.init(path=sys.argv[1])

    @omium.checkpoint("fast")
    def fast():
        return "done"

    @omium.checkpoint("slow")
    def slow():
        if len(sys.argv) > 2:
            print("in slow step", flush=True)
            time.sleep(30)
        return "slow done"

    @omium.workflow("interrupted")
    def flow():
        return [fast(), slow()]

    print(flow.run(execution_id="ctrl-c"), flush=True)
""")


def test_ctrl_c_during_a_step_keeps_the_store_consistent(tmp_path):
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(store), "hang"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    assert proc.stdout.readline().strip() == "in slow step"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err

    ro = omium.Store(str(store), read_only=True)
    assert ro.verify()["ok"]
    assert [c["name"] for c in ro.history("ctrl-c")] == ["fast"]
    # Interrupted, not failed: it is resumable like a crash.
    assert ro.execution("ctrl-c")["status"] == "running"
    ro.close()

    out = subprocess.run([sys.executable, "-c", SCRIPT, str(store)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['done', 'slow done']"
