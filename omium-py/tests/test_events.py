"""The event feed from Python: every change as a CloudEvent, the cursor, filters, a follower
woken by writes in another thread (sync and async), and the same through `omium serve`."""

from __future__ import annotations

import asyncio
import threading

import omium
import pytest


def _workflow(name: str = "pipeline"):
    @omium.checkpoint
    def step(i: int) -> int:
        return i * i

    @omium.workflow(name)
    def pipeline(n: int) -> int:
        return sum(step(i) for i in range(n))

    return pipeline


def test_every_change_is_a_cloudevent_with_a_cursor(store):
    pipeline = _workflow()
    pipeline.run(2, execution_id="e1")
    omium.rollback("e1", to=omium.history("e1")[0].id, reason="redo")
    events = list(omium.events())
    assert [e["type"] for e in events] == [
        "io.omium.execution.started",
        "io.omium.checkpoint.created",
        "io.omium.checkpoint.created",
        "io.omium.execution.completed",
        "io.omium.execution.rolled_back",
    ]
    assert [e["omiumseq"] for e in events] == [1, 2, 3, 4, 5]
    first = events[0]
    assert first["specversion"] == "1.0" and first["subject"] == "e1" and first["id"] == "1"
    assert first["source"].startswith("urn:omium:store:")
    assert events[4]["data"]["reason"] == "redo"
    # From a cursor: nothing before it comes again.
    assert [e["omiumseq"] for e in omium.events(since=3)] == [4, 5]
    assert [e["omiumseq"] for e in omium.events(limit=2)] == [1, 2]


def test_filters_keep_types_and_executions_and_unknown_types_are_refused(store):
    pipeline = _workflow()
    pipeline.run(1, execution_id="e1")
    pipeline.run(3, execution_id="e2")
    assert [e["type"] for e in omium.events(types=["execution.*"], execution_id="e2")] == [
        "io.omium.execution.started",
        "io.omium.execution.completed",
    ]
    assert len(list(omium.events(types=["checkpoint.created"]))) == 4
    with pytest.raises(omium.InvalidArgumentError, match="is no event type"):
        list(omium.events(types=["execution.exploded"]))


def test_a_follower_sees_what_another_thread_writes(store):
    pipeline = _workflow()
    pipeline.run(1, execution_id="before")
    cursor = list(omium.events())[-1]["omiumseq"]
    started = threading.Event()

    def write() -> None:
        started.wait(30)
        pipeline.run(2, execution_id="during")

    t = threading.Thread(target=write)
    t.start()
    got = []
    started.set()
    for e in omium.events(since=cursor, follow=True, timeout=30):
        got.append((e["type"], e["subject"]))
        if e["type"] == "io.omium.execution.completed":
            break
    t.join()
    assert got[0] == ("io.omium.execution.started", "during")
    assert got[-1] == ("io.omium.execution.completed", "during")
    # A quiet feed ends a follow with a timeout.
    last = list(omium.events())[-1]["omiumseq"]
    assert list(omium.events(since=last, follow=True, timeout=0.2)) == []


def test_aevents_follows_without_blocking_the_loop(store):
    pipeline = _workflow()

    async def main() -> list[str]:
        got: list[str] = []

        async def follow() -> None:
            async for e in omium.aevents(follow=True, timeout=30, types=["execution.completed"]):
                got.append(e["subject"])
                if len(got) == 2:
                    return

        task = asyncio.create_task(follow())
        await asyncio.to_thread(pipeline.run, 1, execution_id="a1")
        await asyncio.to_thread(pipeline.run, 1, execution_id="a2")
        await asyncio.wait_for(task, 30)
        return got

    assert asyncio.run(main()) == ["a1", "a2"]


def test_the_cli_delivers_the_feed_to_a_signed_webhook_at_least_once_and_in_order(store, tmp_path):
    """`omium events --follow --webhook` against a real HTTP receiver on loopback that fails
    its first two deliveries: every event arrives, in order, in signed CloudEvents batches that
    verify with the documented recipe; a sink killed and restarted goes on from its cursor."""
    import hashlib
    import hmac
    import http.server
    import json as _json
    import os
    import subprocess
    import time

    from test_serve import omium_bin

    secret = "s3cret-for-the-test"
    received: list[dict] = []
    failures = {"left": 2}
    bad_signatures: list[str] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            if failures["left"] > 0:
                failures["left"] -= 1
                self.send_response(500)
                self.end_headers()
                return
            t, v1 = (p.split("=", 1)[1] for p in self.headers["omium-signature"].split(","))
            expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, v1) or self.headers["content-type"] != "application/cloudevents-batch+json":
                bad_signatures.append(self.headers["omium-signature"])
            received.extend(_json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    cursor = tmp_path / "hook.cursor"
    env = {**os.environ, "OMIUM_WEBHOOK_SECRET": secret, "OMIUM_WEBHOOK_ALLOW": "127.0.0.1"}

    def sink() -> subprocess.Popen:
        args = [omium_bin(), "--store", str(tmp_path / "store"), "events", "--follow", "--webhook", url, "--cursor-file", str(cursor)]
        return subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 60
        while len({e["omiumseq"] for e in received}) < n:
            assert time.monotonic() < deadline, f"only {len(received)} events arrived"
            time.sleep(0.02)

    pipeline = _workflow()
    pipeline.run(2, execution_id="h1")
    proc = sink()
    try:
        wait_for(4)
        # The sink stores its cursor after the receiver's 2xx: wait for that before the kill.
        deadline = time.monotonic() + 30
        while not (cursor.exists() and cursor.read_text().strip() == "4"):
            assert time.monotonic() < deadline, "the sink did not store its cursor"
            time.sleep(0.02)
        proc.kill()
        proc.wait(10)
        stored = int(cursor.read_text())
        assert stored == 4
        pipeline.run(1, execution_id="h2")
        first = len(received)
        proc = sink()
        wait_for(7)
    finally:
        proc.kill()
        proc.wait(10)
        server.shutdown()
    assert bad_signatures == []
    seqs = [e["omiumseq"] for e in received]
    assert sorted(set(seqs)) == list(range(1, 8)), seqs
    assert all(s > stored for s in seqs[first:]), "nothing up to the stored cursor came again"
    assert seqs == sorted(seqs), "in order"
    assert received[0]["type"] == "io.omium.execution.started" and received[-1]["subject"] == "h2"
