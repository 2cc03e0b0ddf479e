"""Operator controls from outside: the `omium` CLI pauses, cancels, retries, resumes and
deletes an execution that a real worker process runs on its embedded store — the request goes
through the store's control mailbox, and the worker stops at its next step boundary."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import omium
import pytest
from test_serve import omium_bin

WORKER = Path(__file__).with_name("control_worker.py")


def cli(store: Path, *args: str) -> dict:
    p = subprocess.run([omium_bin(), "--store", str(store), "--json", *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr + p.stdout
    return json.loads(p.stdout)


def start(store: Path, tmp: Path, execution: str) -> tuple[subprocess.Popen, Path, Path]:
    log, gate = tmp / f"{execution}.log", tmp / f"{execution}.gate"
    gate.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(store), str(log), str(gate), execution], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return proc, log, gate


def wait_for_line(proc: subprocess.Popen, log: Path, line: str) -> None:
    deadline = time.monotonic() + 60
    while not (log.exists() and line in log.read_text().splitlines()):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, f"the worker never logged {line!r}"
        time.sleep(0.01)


def outcome(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def entered(log: Path) -> list[str]:
    return log.read_text().splitlines()


def test_a_pause_from_the_cli_stops_the_worker_at_its_next_step_and_resume_continues(tmp_path):
    store = tmp_path / "store"
    proc, log, gate = start(store, tmp_path, "job-1")
    wait_for_line(proc, log, "enter 1")
    # The worker holds the store: the CLI's request goes through the mailbox.
    reply = cli(store, "pause", "job-1", "--reason", "bad input spotted", "--by", "ops")
    assert (reply["result"], reply["status"]) == ("requested", "running")
    gate.touch()
    result = outcome(proc)
    assert result["outcome"] == "paused" and "bad input spotted" in result["error"]
    assert entered(log) == ["enter 0", "enter 1"], "step 2 did not start"
    assert cli(store, "show", "job-1")["status"] == "paused"

    # Nobody holds the store now: the CLI applies the resume itself.
    assert cli(store, "resume", "job-1", "--by", "ops")["status"] == "pending"
    proc, log, gate = start(store, tmp_path, "job-1")
    gate.touch()
    assert outcome(proc)["outcome"] == "completed"
    assert entered(log) == ["enter 0", "enter 1", "enter 2", "enter 3"], "steps 0 and 1 were not run again"

    events = subprocess.run(
        [omium_bin(), "--store", str(store), "--json", "events", "--execution", "job-1"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    types = [json.loads(e)["type"].removeprefix("io.omium.") for e in events]
    assert "control.pause_requested" in types and types[-1] == "execution.completed"
    pause = next(json.loads(e) for e in events if json.loads(e)["type"] == "io.omium.control.pause_requested")
    assert pause["data"] == {"by": "ops", "reason": "bad input spotted"}


def test_a_cancel_from_the_cli_stops_the_worker_and_retry_lets_it_run_again(tmp_path):
    store = tmp_path / "store"
    proc, log, gate = start(store, tmp_path, "job-2")
    wait_for_line(proc, log, "enter 1")
    assert cli(store, "cancel", "job-2", "--reason", "customer left")["result"] == "requested"
    gate.touch()
    assert outcome(proc)["outcome"] == "cancelled"
    assert cli(store, "show", "job-2")["status"] == "cancelled"
    assert "job-2" not in [e["id"] for e in cli(store, "resumable")]

    # A retry while a worker holds the store (another execution runs): through the mailbox.
    other, other_log, other_gate = start(store, tmp_path, "job-3")
    wait_for_line(other, other_log, "enter 1")
    assert cli(store, "retry", "job-2")["status"] == "pending"
    other_gate.touch()
    assert outcome(other)["outcome"] == "completed"

    proc, log, gate = start(store, tmp_path, "job-2")
    gate.touch()
    assert outcome(proc)["outcome"] == "completed"
    assert entered(log).count("enter 0") == 1


def test_delete_from_the_cli_erases_an_execution_and_refusals_are_errors(tmp_path):
    store = tmp_path / "store"
    proc, log, gate = start(store, tmp_path, "job-4")
    gate.touch()
    assert outcome(proc)["outcome"] == "completed"
    p = subprocess.run([omium_bin(), "--store", str(store), "pause", "job-4"], capture_output=True, text=True)
    assert p.returncode == 1 and "cannot pause it: it has finished" in p.stderr
    p = subprocess.run(
        [omium_bin(), "--store", str(store), "delete", "job-4", "--reason", "GDPR request 17"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    line = r"deleted \(checkpoints: 4, chunks no other checkpoint used: \d+, failure records: 0, spans: \d+\)"
    assert re.search(line, p.stdout), p.stdout
    p = subprocess.run([omium_bin(), "--store", str(store), "show", "job-4"], capture_output=True, text=True)
    assert p.returncode == 1 and "job-4" in p.stderr


def test_controls_from_python_reach_a_run_of_this_process(store):
    @omium.checkpoint
    def step(i: int) -> int:
        if i == 1:
            omium.pause(omium.get_execution_id(), reason="from the inside")
        return i

    @omium.workflow("self-paused")
    def wf() -> int:
        return sum(step(i) for i in range(3))

    with pytest.raises(omium.ExecutionPaused, match="from the inside"):
        wf.run(execution_id="s1")
    assert omium.get_execution("s1").status == "paused"
    assert len(omium.history("s1")) == 2, "step 2 did not run"
    assert omium.cancel("s1")["status"] == "cancelled"
    assert omium.retry("s1")["status"] == "pending"
    assert omium.delete_execution("s1", reason="test")["erased"]["checkpoints"] == 2


def test_recover_from_the_cli_makes_a_killed_run_resumable_and_refuses_what_needs_no_recovery(tmp_path):
    store = tmp_path / "store"
    proc, log, gate = start(store, tmp_path, "job-5")
    wait_for_line(proc, log, "enter 1")
    proc.kill()  # SIGKILL: the execution stays `running` with no live run
    proc.wait(30)
    assert cli(store, "show", "job-5")["status"] == "running"
    reply = cli(store, "recover", "job-5", "--reason", "worker node lost", "--by", "ops")
    assert (reply["action"], reply["result"], reply["status"]) == ("recover", "applied", "pending")
    p = subprocess.run([omium_bin(), "--store", str(store), "recover", "job-5"], capture_output=True, text=True)
    assert p.returncode == 1 and "it is resumable already" in p.stderr, p.stderr
    proc, log, gate = start(store, tmp_path, "job-5")
    gate.touch()
    assert outcome(proc)["outcome"] == "completed"
    assert entered(log).count("enter 0") == 1, "the recorded step was not run again"
    p = subprocess.run([omium_bin(), "--store", str(store), "recover", "job-5"], capture_output=True, text=True)
    assert p.returncode == 1 and "it has completed" in p.stderr, p.stderr
    feed = [omium_bin(), "--store", str(store), "--json", "events", "--type", "execution.recovered"]
    events = subprocess.run(feed, capture_output=True, text=True, check=True)
    [e] = [json.loads(line) for line in events.stdout.splitlines()]
    assert e["subject"] == "job-5" and e["data"]["by"] == "ops", e


def test_a_cancel_or_pause_interrupts_a_step_that_awaits(store):
    """An async step that awaits (a slow LLM call, a human) is interrupted by a cancel or a pause
    asked for meanwhile: its body is cancelled and the run ends as the next step boundary
    would end it, with nothing recorded for the step."""
    import asyncio

    entered: list[str] = []

    @omium.checkpoint
    async def wait_for_ever(tag: str) -> None:
        entered.append(tag)
        await asyncio.Event().wait()

    @omium.workflow("awaiting")
    async def wf(tag: str) -> None:
        await wait_for_ever(tag)

    async def interrupt(execution: str, control, expected: type[Exception]) -> None:
        task = asyncio.create_task(wf.arun(execution, execution_id=execution))
        while execution not in entered:
            await asyncio.sleep(0.01)
        reply = await asyncio.to_thread(control, execution, reason="stuck for too long")
        assert reply["result"] == "requested", reply
        with pytest.raises(expected, match="stuck for too long"):
            await asyncio.wait_for(task, 30)

    asyncio.run(interrupt("aw-cancel", omium.cancel, omium.ExecutionCancelled))
    asyncio.run(interrupt("aw-pause", omium.pause, omium.ExecutionPaused))
    assert omium.get_execution("aw-cancel").status == "cancelled"
    assert omium.get_execution("aw-pause").status == "paused"
    assert omium.history("aw-cancel") == [] and omium.history("aw-pause") == []


def test_escalate_from_the_cli_settles_the_open_failure_and_tells_the_policys_channels(tmp_path, monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OMIUM_WEBHOOK_ALLOW", "127.0.0.1")
    store = tmp_path / "store"
    try:
        omium.init(path=store)
        omium.policy.apply(
            f"recovery:\n  on_error: [pause]\nchannels:\n  ops: {{webhook: 'http://127.0.0.1:{server.server_address[1]}/hook'}}\n"
        )

        @omium.checkpoint("charge")
        def charge() -> None:
            raise ValueError("card declined")

        @omium.workflow("billing")
        def billing() -> None:
            charge()

        with pytest.raises(omium.errors.ExecutionPaused):
            billing.run(execution_id="bill-1")
        omium.shutdown()

        reply = cli(store, "escalate", "bill-1", "--reason", "needs a human", "--by", "alice")
        assert reply["action"] == "escalate" and reply["status"] == "paused" and reply["failure"], reply
        assert reply["notified"] == {"ops": "delivered"}, reply
        [notice] = got
        assert notice["event"] == "omium.failure.escalation" and notice["escalated_by"] == "alice", notice
        assert notice["reason"] == "needs a human" and notice["failure"]["id"] == reply["failure"], notice
        assert notice["failure"]["outcome"] == "escalated" and notice["failure"]["step"] == "charge", notice

        actions = cli(store, "recoveries", "--execution", "bill-1")
        assert [(a["action"], a["outcome"]) for a in actions] == [("pause", "ok"), ("escalate", "ok")], actions
        assert actions[-1]["detail"] == {"by": "alice", "reason": "needs a human"}, actions
        # Settled: a second escalation is refused, and the execution is still paused for whoever
        # takes it over.
        p = subprocess.run([omium_bin(), "--store", str(store), "escalate", "bill-1"], capture_output=True, text=True)
        assert p.returncode == 1 and "no open failure to escalate" in p.stderr, p.stderr
        feed = [omium_bin(), "--store", str(store), "--json", "events", "--type", "recovery.escalated"]
        events = subprocess.run(feed, capture_output=True, text=True, check=True).stdout
        assert '"subject"' in events and reply["failure"] in events, events
        omium.init(path=store)
        assert omium.get_execution("bill-1").status == "paused"
        [failure] = omium.failures(execution_id="bill-1")
        assert failure.outcome == "escalated" and failure.resolved_at is not None, failure
        assert omium.recovery_metrics()["escalated"] == 1
    finally:
        omium.shutdown()
        server.shutdown()
