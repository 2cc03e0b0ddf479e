"""The operator's half together, with real processes (issue 19's test): worker processes run a
seeded mix of executions with injected failures through `omium serve --alerts`, while a
follower (`omium events --follow --webhook`) delivers the feed to a receiver, a real Prometheus
scrapes `/metrics`, and the alert rule notifies schema-checking receivers. Pause, cancel, retry
and recover sent from the CLI take effect in the workers. The follower and the daemon are
SIGKILLed mid-way and restarted: no event is lost, none is delivered again past the stored
cursor, the breach fires once and resolves once, and the counts in the feed and in Prometheus
equal a count made from the executions themselves."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from test_alerts import PD_KEY, SECRET, Receivers
from test_prometheus import _free_port, _tool
from test_serve import KEY, omium_bin

WORKER = Path(__file__).with_name("ops_worker.py")


class Feed:
    """The follower's receiver: CloudEvents batches, kept in arrival order."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.events.extend(batch)
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/feed"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seqs(self) -> list[int]:
        with self.lock:
            return [e["omiumseq"] for e in self.events]


def wait_until(what: str, cond, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def cli(store: Path, *args: str) -> object:
    p = subprocess.run([omium_bin(), "--store", str(store), "--json", *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr + p.stdout
    return json.loads(p.stdout)


def test_workers_follower_prometheus_alerts_and_controls_together(tmp_path, monkeypatch):
    prometheus = _tool("prometheus")
    monkeypatch.setenv("OMIUM_WEBHOOK_ALLOW", "127.0.0.1")
    monkeypatch.setenv("TEST_PD_KEY", PD_KEY)
    monkeypatch.setenv("TEST_ALERT_SECRET", SECRET)
    monkeypatch.setenv("OMIUM_TEST_KEY", KEY)
    store, port = tmp_path / "store", _free_port()
    url = f"http://127.0.0.1:{port}"
    alerts, feed = Receivers(), Feed()
    rules = tmp_path / "alerts.yaml"
    rules.write_text(
        "evaluate_every: 200ms\n"
        "channels:\n"
        f"  hook: {{webhook: {{url: '{alerts.url}/hook', secret_env: TEST_ALERT_SECRET}}}}\n"
        f"  pager: {{pagerduty: {{routing_key_env: TEST_PD_KEY, url: '{alerts.url}/pagerduty'}}}}\n"
        "rules:\n"
        "  - {name: orders-failing, metric: success_rate, where: {workflow: orders}, window: 30m, op: '<',\n"
        "     threshold: 0.7, min_executions: 8, channels: [hook, pager]}\n"
    )
    procs: dict[str, subprocess.Popen] = {}

    def daemon() -> None:
        p = subprocess.Popen(
            [omium_bin(), "--store", str(store), "serve", "--http", f"127.0.0.1:{port}", "--alerts", str(rules)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMIUM_API_KEYS": KEY},
        )
        line = p.stdout.readline()
        assert line, p.stderr.read()
        assert json.loads(line)["alerts"] == 1
        procs["daemon"] = p

    cursor = tmp_path / "feed.cursor"

    def follower() -> None:
        procs["follower"] = subprocess.Popen(
            [omium_bin(), "--store", str(store), "events", "--follow", "--webhook", feed.url, "--cursor-file", str(cursor)],
            stderr=subprocess.PIPE,
            text=True,
        )

    def worker(*args: str) -> subprocess.Popen:
        cmd = [sys.executable, str(WORKER), args[0], url, *args[1:]]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(p: subprocess.Popen) -> dict:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])

    prom = None
    try:
        daemon()
        follower()
        (tmp_path / "key").write_text(KEY)
        prom_port = _free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n  - job_name: omium\n    authorization:\n"
            f"      credentials_file: {tmp_path / 'key'}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        )
        prom = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        # Phase 1: two workers, a seeded mix with three failures in four.
        a, b = worker("mix", "a", "8", "7", "75"), worker("mix", "b", "8", "11", "75")
        # The follower is SIGKILLed once it stored a cursor, and restarted from it.
        wait_until("the follower's cursor", lambda: cursor.exists() and cursor.read_text().strip() not in ("", "0"))
        procs["follower"].kill()
        procs["follower"].wait(10)
        stored = int(cursor.read_text())
        delivered_before = len(feed.seqs())
        follower()
        mix = [result(a), result(b)]
        completed = sum(len(m["completed"]) for m in mix)
        failed = sum(len(m["failed"]) for m in mix)
        assert completed / (completed + failed) < 0.7, mix  # the seeds make a breach
        alerts.wait(lambda g: g["hook"] and g["pagerduty"])

        # Controls from the CLI reach the workers' runs through the daemon.
        gate = tmp_path / "gate"
        runs = {}
        for eid in ("ctl-p", "ctl-c"):
            log = tmp_path / f"{eid}.log"
            runs[eid] = (worker("gated", str(log), str(gate), eid), log)
            wait_until(f"{eid} inside its step", lambda log=log: log.exists() and "enter 1" in log.read_text())
        assert cli(store, "pause", "ctl-p", "--reason", "investigating")["result"] == "requested"
        assert cli(store, "cancel", "ctl-c", "--reason", "customer left")["result"] == "requested"
        gate.touch()
        assert result(runs["ctl-p"][0])["outcome"] == "paused"
        assert result(runs["ctl-c"][0])["outcome"] == "cancelled"
        assert cli(store, "retry", "ctl-c")["status"] == "pending"
        assert cli(store, "recover", "ctl-p")["status"] == "pending"
        for eid in ("ctl-p", "ctl-c"):
            assert result(worker("gated", str(tmp_path / "again.log"), str(gate), eid))["outcome"] == "completed"

        # The daemon is SIGKILLed and restarted: the firing alert is remembered, not sent again.
        procs["daemon"].send_signal(signal.SIGKILL)
        procs["daemon"].wait(10)
        daemon()

        # Phase 2: enough successes to lift the success rate over the threshold: it resolves.
        need = math.ceil((0.7 * (completed + failed) - completed) / 0.3) + 1
        c = result(worker("mix", "c", str(need), "1", "0"))
        completed += len(c["completed"])
        alerts.wait(lambda g: any(m["status"] == "resolved" for m in g["hook"]))
        alerts.wait(lambda g: any(m["event_action"] == "resolve" for m in g["pagerduty"]))

        executions = cli(store, "executions")
        orders = [e for e in executions if e["workflow"] == "orders"]
        assert len(orders) == 16 + need
        assert sum(e["status"] == "failed" for e in orders) == failed
        assert sum(e["status"] == "completed" for e in orders) == completed
        head = cli(store, "audit", "head")["seq"]
        wait_until("the feed up to the audit head", lambda: head in feed.seqs())

        def query(q: str) -> list:
            api = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
            with urllib.request.urlopen(api, timeout=5) as r:
                return json.load(r)["data"]["result"]

        def scraped(q: str, want: float) -> bool:
            try:
                got = query(q)
            except OSError:
                return False
            return bool(got) and float(got[0]["value"][1]) == want

        wait_until("prometheus' started count", lambda: scraped('omium_executions_started_total{workflow="orders"}', len(orders)))
        wait_until("prometheus' failed count", lambda: scraped('omium_execution_endings_total{workflow="orders",status="failed"}', failed))
        wait_until(
            "prometheus' completed count", lambda: scraped('omium_execution_endings_total{workflow="orders",status="completed"}', completed)
        )
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        if prom is not None:
            prom.terminate()
            prom.wait(20)
        alerts.close()
        feed.server.shutdown()

    # The feed: nothing lost, nothing delivered again past the stored cursor, in order.
    seqs = feed.seqs()
    assert sorted(set(seqs)) == list(range(1, head + 1))
    assert all(s > stored for s in seqs[delivered_before:]), "nothing up to the stored cursor came again"
    events = {}
    for e in feed.events:
        events.setdefault(e["omiumseq"], e)
    kinds = [e["type"].removeprefix("io.omium.") for e in events.values()]
    assert kinds.count("execution.started") == len(executions)
    assert sum(1 for e in events.values() if e["type"] == "io.omium.execution.failed" and e["subject"].startswith(("a-", "b-"))) == failed
    assert kinds.count("execution.paused") == 1 and kinds.count("execution.cancelled") == 1
    assert kinds.count("execution.retried") == 1 and kinds.count("execution.recovered") == 1
    # One breach: one firing and one resolve on each channel, across the daemon's restart.
    assert [m["status"] for m in alerts.got["hook"]] == ["firing", "resolved"]
    assert [m["event_action"] for m in alerts.got["pagerduty"]] == ["trigger", "resolve"]
    assert kinds.count("alert.firing") == 1 and kinds.count("alert.resolved") == 1
