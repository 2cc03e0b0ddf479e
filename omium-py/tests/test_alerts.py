"""Alert rules evaluated by a real `omium serve --alerts`, notifying real receivers on loopback:
an SMTP server that requires STARTTLS (aiosmtpd, with a certificate from a test CA), and HTTP
receivers that check every message against the service's published payload schema (Slack's
incoming-webhook message, PagerDuty's Events API v2, Omium's own signed notice). One breach
gives one firing notice and one resolve per channel; repeats stop once acknowledged."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import omium
import pytest
import trustme
from aiosmtpd.controller import Controller
from test_serve import KEY, ROOT, Daemon, omium_bin

SECRET = "alert-signing-secret-0123456789"
PD_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"

# Slack's incoming-webhook message (https://api.slack.com/messaging/webhooks, Block Kit): the
# parts Omium uses, with Slack's limits.
TEXT_OBJECT = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"enum": ["mrkdwn", "plain_text"]}, "text": {"type": "string", "minLength": 1, "maxLength": 3000}},
}
SLACK_SCHEMA = {
    "type": "object",
    "required": ["text"],
    "properties": {
        "text": {"type": "string", "minLength": 1},
        "blocks": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"enum": ["section", "context", "divider", "header", "actions"]},
                    "text": TEXT_OBJECT,
                    "fields": {"type": "array", "maxItems": 10, "items": TEXT_OBJECT},
                    "elements": {"type": "array", "maxItems": 10, "items": TEXT_OBJECT},
                },
            },
        },
    },
}
# PagerDuty Events API v2 (https://developer.pagerduty.com/api-reference/, "Send Event").
PD_SCHEMA = {
    "type": "object",
    "required": ["routing_key", "event_action"],
    "properties": {
        "routing_key": {"type": "string", "minLength": 32, "maxLength": 32},
        "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
        "dedup_key": {"type": "string", "maxLength": 255},
        "payload": {
            "type": "object",
            "required": ["summary", "source", "severity"],
            "properties": {
                "summary": {"type": "string", "maxLength": 1024},
                "source": {"type": "string"},
                "severity": {"enum": ["critical", "error", "warning", "info"]},
                "timestamp": {"type": "string", "format": "date-time"},
                "component": {"type": "string"},
                "group": {"type": "string"},
                "class": {"type": "string"},
                "custom_details": {"type": "object"},
            },
        },
        "client": {"type": "string"},
        "client_url": {"type": "string"},
    },
    "if": {"properties": {"event_action": {"const": "trigger"}}},
    "then": {"required": ["payload"]},
    "else": {"required": ["dedup_key"]},
}
NOTICE_SCHEMA = json.loads((ROOT / "docs" / "schemas" / "alert-notice.schema.json").read_text())


class Receivers:
    """HTTP receivers on 127.0.0.1 that keep each message after checking it."""

    def __init__(self) -> None:
        self.got: dict[str, list] = {"slack": [], "pagerduty": [], "hook": []}
        self.bad: list[str] = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                name = self.path.strip("/")
                try:
                    msg = json.loads(body)
                    if name == "slack":
                        jsonschema.validate(msg, SLACK_SCHEMA, format_checker=jsonschema.FormatChecker())
                    elif name == "pagerduty":
                        jsonschema.validate(msg, PD_SCHEMA, format_checker=jsonschema.FormatChecker())
                    elif name == "hook":
                        jsonschema.validate(msg, NOTICE_SCHEMA, format_checker=jsonschema.FormatChecker())
                        t, v1 = (p.split("=", 1)[1] for p in self.headers["Omium-Signature"].split(","))
                        want = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
                        assert hmac.compare_digest(want, v1), "bad signature"
                except Exception as e:  # noqa: BLE001 - any problem is the test's failure
                    with outer.cond:
                        outer.bad.append(f"{name}: {e}")
                    self.send_response(400)
                    self.end_headers()
                    return
                with outer.cond:
                    outer.got[name].append(msg)
                    outer.cond.notify_all()
                if name == "pagerduty":
                    out = json.dumps({"status": "success", "message": "Event processed", "dedup_key": msg.get("dedup_key")}).encode()
                    self.send_response(202)
                else:
                    out = b"ok"
                    self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, what, timeout: float = 60) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.bad or what(self.got), timeout), (what, self.got)
            assert not self.bad, self.bad

    def close(self) -> None:
        self.server.shutdown()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list = []
        self.cond = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        with self.cond:
            self.messages.append((session.ssl is not None, envelope.rcpt_tos, email.message_from_bytes(envelope.content)))
            self.cond.notify_all()
        return "250 OK"

    def wait(self, n: int, timeout: float = 60) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.messages) >= n, timeout), self.messages


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(tmp_path):
    """An SMTP server on 127.0.0.1 that refuses mail before STARTTLS."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ctx = __import__("ssl").create_default_context(__import__("ssl").Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    box = Mailbox()
    c = Controller(box, hostname="127.0.0.1", port=_free_port(), require_starttls=True, tls_context=ctx)
    c.start()
    yield c, box, ca_file
    c.stop()


def _rules(tmp_path: Path, recv: Receivers, smtp_port: int, ca_file: Path) -> Path:
    p = tmp_path / "alerts.yaml"
    p.write_text(
        f"""evaluate_every: 200ms
channels:
  ops-slack:
    slack: {{webhook: "{recv.url}/slack"}}
  pager:
    pagerduty: {{routing_key_env: TEST_PD_KEY, url: "{recv.url}/pagerduty"}}
  mail:
    email:
      smtp: "127.0.0.1:{smtp_port}"
      from: omium@example.com
      to: [oncall@example.com]
      ca_file: "{ca_file}"
  hook:
    webhook: {{url: "{recv.url}/hook", secret_env: TEST_ALERT_SECRET}}
rules:
  - name: batch-failing
    metric: success_rate
    where: {{workflow: alert-batch}}
    window: 10m
    op: "<"
    threshold: 0.5
    min_executions: 2
    repeat: 1s
    severity: critical
    labels: {{team: payments}}
    channels: [ops-slack, pager, mail, hook]
"""
    )
    return p


def _status(store: Path) -> dict:
    out = subprocess.run([omium_bin(), "--store", str(store), "--json", "alerts", "status"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_an_alert_fires_once_repeats_until_acknowledged_and_resolves_once(tmp_path, sockdir, smtp, monkeypatch):
    controller, box, ca_file = smtp
    recv = Receivers()
    monkeypatch.setenv("OMIUM_WEBHOOK_ALLOW", "127.0.0.1")
    monkeypatch.setenv("TEST_PD_KEY", PD_KEY)
    monkeypatch.setenv("TEST_ALERT_SECRET", SECRET)
    store = tmp_path / "store"
    rules = _rules(tmp_path, recv, controller.port, ca_file)
    d = Daemon(store, "--http", "127.0.0.1:0", "--socket", str(sockdir / "a.sock"), "--api-key", KEY, "--alerts", str(rules))
    assert d.info["alerts"] == 1
    omium.init(url=d.http_url, api_key=KEY)
    try:

        @omium.checkpoint("charge", agent="biller")
        def charge(i: int) -> int:
            if i < 0:
                raise ValueError("card declined")
            return i

        @omium.workflow("alert-batch")
        def batch(i: int) -> int:
            return charge(i)

        # A breach: two failures, success rate 0.
        for i in (-1, -2):
            with pytest.raises(ValueError):
                batch.run(i, execution_id=f"bad{i}")
        recv.wait(lambda g: g["slack"] and g["pagerduty"] and g["hook"])
        box.wait(1)
        trigger = recv.got["pagerduty"][0]
        assert trigger["event_action"] == "trigger" and trigger["routing_key"] == PD_KEY
        assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["component"] == "omium"
        dedup = trigger["dedup_key"]
        first = recv.got["hook"][0]
        assert (first["status"], first["repeat"], first["value"], first["labels"]) == ("firing", False, 0.0, {"team": "payments"})
        assert first["dedup_key"] == dedup
        assert "FIRING" in recv.got["slack"][0]["text"] and "batch-failing" in recv.got["slack"][0]["text"]
        tls, rcpt, mail = box.messages[0]
        assert tls, "the mail went over STARTTLS"
        assert rcpt == ["oncall@example.com"] and "[FIRING critical] batch-failing" in mail["Subject"]

        # Unacknowledged, it repeats (every 1s); acknowledged, PagerDuty hears `acknowledge`.
        recv.wait(lambda g: any(m["repeat"] for m in g["hook"]))
        ack = subprocess.run(
            [omium_bin(), "--json", "alerts", "ack", "batch-failing", "--url", d.http_url, "--by", "alice"],
            capture_output=True,
            text=True,
            env={**os.environ, "OMIUM_API_KEY": KEY},
        )
        assert ack.returncode == 0, ack.stderr
        assert json.loads(ack.stdout)[0]["delivered"] == {"hook": "ok", "mail": "ok", "ops-slack": "ok", "pager": "ok"}
        recv.wait(lambda g: any(m["event_action"] == "acknowledge" for m in g["pagerduty"]))
        acked_at = time.time()
        repeats_at_ack = sum(m["repeat"] for m in recv.got["hook"])
        # Two more evaluations after the ack's repeat interval: no more repeats.
        deadline = time.monotonic() + 30
        while _status(store)["evaluated_ms"] < (acked_at + 1.5) * 1000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sum(m["repeat"] for m in recv.got["hook"]) == repeats_at_ack
        again = subprocess.run(
            [omium_bin(), "alerts", "ack", "batch-failing", "--url", d.http_url],
            capture_output=True,
            text=True,
            env={**os.environ, "OMIUM_API_KEY": KEY},
        )
        assert again.returncode != 0 and "nothing of rule" in again.stderr, again.stderr

        # Recovery: three successes make it 3/5 = 0.6, above the threshold: one resolve each.
        for i in (1, 2, 3):
            assert batch.run(i, execution_id=f"ok{i}") == i
        recv.wait(lambda g: any(m["status"] == "resolved" for m in g["hook"]))
        recv.wait(lambda g: any(m["event_action"] == "resolve" for m in g["pagerduty"]))
        recv.wait(lambda g: any("RESOLVED" in m["text"] for m in g["slack"]))
        box.wait(2 + repeats_at_ack + 1)  # firing, repeats, the acknowledgement, resolved
        resolve = next(m for m in recv.got["pagerduty"] if m["event_action"] == "resolve")
        assert resolve["dedup_key"] == dedup and "payload" not in resolve
        hook = recv.got["hook"]
        assert [m["status"] for m in hook if not m["repeat"]] == ["firing", "acknowledged", "resolved"]
        assert hook[-1]["value"] == pytest.approx(0.6) and hook[-1]["by"] == "alice"
        assert [m["event_action"] for m in recv.got["pagerduty"] if not m.get("payload", {}).get("custom_details", {}).get("repeat")] == [
            "trigger",
            "acknowledge",
            "resolve",
        ]
        assert _status(store)["alerts"] == {}
    finally:
        omium.shutdown()
        d.stop()
        recv.close()

    # The history is in the audit log, as events.
    feed = subprocess.run(
        [omium_bin(), "--store", str(store), "--json", "events", "--type", "alert."], capture_output=True, text=True, check=True
    )
    kinds = [json.loads(line)["type"] for line in feed.stdout.splitlines()]
    assert kinds[0] == "io.omium.alert.firing" and kinds[-1] == "io.omium.alert.resolved", kinds
    assert kinds.count("io.omium.alert.firing") == 1 and kinds.count("io.omium.alert.acknowledged") == 1, kinds


def test_mail_is_not_sent_in_clear_text_to_a_server_without_starttls(tmp_path, monkeypatch):
    """A server that offers no STARTTLS gets nothing (`security: starttls` is the default)."""
    box = Mailbox()
    plain = Controller(box, hostname="127.0.0.1", port=_free_port())
    plain.start()
    try:
        monkeypatch.setenv("OMIUM_WEBHOOK_ALLOW", "127.0.0.1")
        store = tmp_path / "store"
        omium.init(str(store))

        @omium.workflow("plain-batch")
        def fails() -> None:
            raise ValueError("no")

        with pytest.raises(ValueError):
            fails.run(execution_id="p1")
        omium.shutdown()
        rules = tmp_path / "r.yaml"
        rules.write_text(
            f"channels:\n  mail:\n    email: {{smtp: '127.0.0.1:{plain.port}', from: a@example.com, to: [b@example.com]}}\n"
            "rules:\n  - {name: any-failure, metric: failed, threshold: 0, channels: [mail]}\n"
        )
        once = [omium_bin(), "--store", str(store), "--json", "alerts", "run", str(rules), "--once"]
        out = subprocess.run(once, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        [t] = json.loads(out.stdout)
        assert t["status"] == "firing" and t["delivered"]["mail"].startswith("failed: TLS"), t
        assert box.messages == []
    finally:
        plain.stop()


def test_rule_files_are_checked_with_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "channels:\n  h: {webhook: {url: 'https://hooks.example.com/x'}}\n"
        "rules:\n  - name: r\n    metric: sucess_rate\n    threshold: 0.9\n    channels: [h]\n"
    )
    out = subprocess.run([omium_bin(), "alerts", "check", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0
    assert f"{bad}:5:13: rules[0].metric: unknown metric" in out.stderr and 'did you mean "success_rate"' in out.stderr, out.stderr
    good = tmp_path / "good.yaml"
    good.write_text(bad.read_text().replace("sucess_rate", "success_rate").replace("0.9", "0.9\n    op: '<'"))
    out = subprocess.run([omium_bin(), "alerts", "check", str(good)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "r: success_rate < 0.9 over 5m" in out.stdout


def test_a_long_running_process_evaluates_its_own_rules(tmp_path, monkeypatch):
    """The embedded evaluator: `omium.start_alerts` in the process that runs the agents."""
    recv = Receivers()
    monkeypatch.setenv("OMIUM_WEBHOOK_ALLOW", "127.0.0.1")
    monkeypatch.setenv("TEST_ALERT_SECRET", SECRET)
    omium.init(str(tmp_path / "store"))
    rules = (
        "evaluate_every: 100ms\n"
        f"channels:\n  hook:\n    webhook: {{url: '{recv.url}/hook', secret_env: TEST_ALERT_SECRET}}\n"
        "rules:\n"
        "  - {name: slow-or-failing, metric: failed, where: {workflow: embedded}, op: '>=', threshold: 1,\n"
        "     severity: warning, channels: [hook]}\n"
    )
    try:
        with pytest.raises(omium.OmiumError, match=r"<alerts>:6:37: rules\[0\]\.metric: unknown metric \"faild\"; did you mean \"failed\""):
            omium.start_alerts(rules.replace("metric: failed", "metric: faild"))

        @omium.workflow("embedded")
        def flaky(fail: bool) -> str:
            if fail:
                raise RuntimeError("upstream down")
            return "ok"

        with omium.start_alerts(rules) as ev:
            assert ev.running
            with pytest.raises(omium.OmiumError, match="one already evaluates"):
                omium.start_alerts(rules)
            flaky.run(False, execution_id="e-ok")
            with pytest.raises(RuntimeError):
                flaky.run(True, execution_id="e-bad")
            recv.wait(lambda g: g["hook"])
            [fired] = recv.got["hook"]
            assert (fired["status"], fired["value"], fired["severity"]) == ("firing", 1.0, "warning")
            # The notice goes out before the state is committed: wait for the commit.
            deadline = time.monotonic() + 30
            while "slow-or-failing" not in omium.alerts()["state"]["alerts"] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert omium.alerts()["state"]["alerts"]["slow-or-failing"]["phase"] == "firing"
            [ack] = omium.acknowledge_alert("slow-or-failing", by="bob")
            assert ack["status"] == "acknowledged" and ack["delivered"] == {"hook": "ok"}
            assert ev.last_error is None
        assert not ev.running
        with pytest.raises(omium.OmiumError, match="no alert rules are evaluated in this process"):
            omium.acknowledge_alert("slow-or-failing")
        # Evaluated once more (a cron job's way): it still fires, so nothing changes.
        assert omium.evaluate_alerts(rules) == []
    finally:
        omium.shutdown()
        recv.close()


def test_shutdown_stops_the_evaluators_of_this_process_and_the_api_hides_channel_secrets(tmp_path):
    store = tmp_path / "s"
    omium.init(str(store))
    ev = omium.start_alerts("channels: {s: {slack: {webhook: 'https://hooks.example.com/T0/B0/secret-token'}}}\nrules: []\n")
    listed = omium.alerts()["rules"]
    assert listed["channels"] == {"s": "slack"} and "secret-token" not in json.dumps(listed)
    omium.shutdown()
    assert not ev.running
    omium.init(str(store))  # a leftover evaluator would still hold the store
    omium.shutdown()
