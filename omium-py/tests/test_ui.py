"""`omium ui` in a real browser: Debian's headless chromium driven by Playwright, against the
dashboard over a store that a real application (tests/ui_worker.py, the store's only writer) is
writing. Keys are issued before the application starts; the dashboard asks for one.

The test watches the live feed pick up a new execution, opens it, rolls it back from the page
and sees the application's re-run; gives a paused execution the corrected output of its failed
step (the recovery page's "apply fix") and escalates another; downloads the monthly report; and checks that a reader's
buttons are disabled and that the server refuses the reader's call anyway. Each page is
screenshotted (into $OMIUM_UI_SCREENSHOTS when set: docs/ui/ holds the ones docs/ui.md shows)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import omium
import pytest

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

HERE = Path(__file__).parent
BIN = os.environ.get("OMIUM_BIN", str(Path.home() / ".cache/omium-target/debug/omium"))
WAIT = 20_000  # ms: what a condition may take on a loaded CI machine


def keys_create(store: Path, name: str, role: str) -> str:
    out = subprocess.run(
        [BIN, "--store", str(store), "--json", "keys", "create", "--name", name, "--tenant", "*", "--role", role],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)["secret"]


class Dashboard:
    def __init__(self, tmp: Path):
        self.store, self.ctl = tmp / "store", tmp / "ctl"
        self.ctl.mkdir()
        self.ops = keys_create(self.store, "ops", "operator")
        self.viewer = keys_create(self.store, "viewer", "reader")
        self.worker = subprocess.Popen(
            [sys.executable, str(HERE / "ui_worker.py"), str(self.store), str(self.ctl)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.worker.stdout.readline().strip() == "ready", self.worker.stderr.read()
        self.ui = subprocess.Popen(
            [BIN, "--store", str(self.store), "ui", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.ui.stdout.readline()
        assert line, self.ui.stderr.read()
        self.url = json.loads(line)["ui"]
        host, port = self.url.removeprefix("http://").rstrip("/").split(":")
        self.host, self.port = host, int(port)

    def start(self, execution: str) -> None:
        (self.ctl / f"start-{execution}").write_text("")

    def post(self, method: str, body: object, key: str | None, origin: str | None = None) -> tuple[int, dict]:
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if origin:
            headers["Origin"] = origin
        c.request("POST", f"/v1/{method}", body=json.dumps(body), headers=headers)
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")

    def wait_status(self, execution: str, status: str) -> dict:
        """Waits until the application has brought `execution` to `status` (it may not exist yet)."""
        deadline = time.monotonic() + WAIT / 1000
        while True:
            code, e = self.post("execution", {"execution_id": execution}, self.ops)
            if (code == 200 and e["status"] == status) or time.monotonic() > deadline:
                assert code == 200 and e["status"] == status, e
                return e
            time.sleep(0.05)

    def stop(self) -> None:
        (self.ctl / "stop").write_text("")
        self.ui.terminate()
        assert self.ui.wait(20) == 0, self.ui.stderr.read()
        try:
            assert self.worker.wait(30) == 0, self.worker.stderr.read()
        finally:
            self.worker.kill()


@pytest.fixture(scope="module")
def dash(tmp_path_factory):
    d = Dashboard(tmp_path_factory.mktemp("ui"))
    yield d
    omium.shutdown()
    d.stop()


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is installed by `make deps` (scripts/ensure-deps.sh)"
    with sync_playwright() as p:
        # The dashboard marks what tests use with data-test (omium-cluster/ui/app.js lists them).
        p.selectors.set_test_id_attribute("data-test")
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


SHOTS = Path(os.environ.get("OMIUM_UI_SCREENSHOTS", "")) if os.environ.get("OMIUM_UI_SCREENSHOTS") else None


def shot(page, name: str, tmp: Path) -> None:
    path = (SHOTS or tmp) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=False)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def login(browser, dash: Dashboard, key: str, route: str):
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(dash.url + route)
    page.get_by_test_id("login-key").fill(key)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("whoami")).to_be_visible(timeout=WAIT)
    return ctx, page, errors


def test_live_feed_then_roll_back_from_the_page_and_see_the_re_run(dash, browser, tmp_path):
    ctx, page, errors = login(browser, dash, dash.ops, "#/feed")
    expect(page.get_by_test_id("whoami")).to_have_attribute("data-identity", "key:ops")
    expect(page.get_by_test_id("live")).to_have_attribute("data-state", "live", timeout=WAIT)
    dash.start("live-1")
    row = page.locator('[data-test="feed-row"][data-execution="live-1"]').first
    expect(row).to_be_visible(timeout=WAIT)
    shot(page, "feed", tmp_path)
    dash.wait_status("live-1", "completed")
    row.click()
    header = page.get_by_test_id("execution-header")
    expect(header).to_have_attribute("data-execution", "live-1", timeout=WAIT)
    expect(header).to_have_attribute("data-status", "completed", timeout=WAIT)
    checkpoints = page.get_by_test_id("checkpoint")
    expect(checkpoints).to_have_count(3, timeout=WAIT)
    first = page.locator('[data-test="checkpoint"][data-seq="1"]').first
    first.click()
    expect(page.get_by_test_id("state-view")).to_contain_text("live-1", timeout=WAIT)
    shot(page, "execution", tmp_path)
    page.get_by_test_id("action-rollback").click()
    page.get_by_test_id("confirm-reason").fill("bad plan, run it again")
    page.get_by_test_id("confirm").click()
    expect(page.get_by_test_id("toast")).to_contain_text("applied", timeout=WAIT)
    # The application (not the dashboard) runs it again: its recover() picks the rolled-back
    # execution up; the page follows the events.
    expect(checkpoints).to_have_count(6, timeout=WAIT)
    expect(header).to_have_attribute("data-status", "completed", timeout=WAIT)
    status, history = dash.post("history", {"execution_id": "live-1"}, dash.ops)
    assert [c["name"] for c in history] == ["plan", "rollback to plan", "act", "report"]
    status, trail = dash.post("audit", {"action": "rollback", "limit": 5}, dash.ops)
    assert trail["entries"] and "bad plan" in trail["entries"][0]["detail"], trail
    shot(page, "execution-after-rollback", tmp_path)
    # The trace tab: the waterfall and the agents' graph (who handed work to whom), drawn from
    # the same `agent_graph` answer a program gets.
    page.get_by_test_id("tab-trace").click()
    expect(page.get_by_test_id("agent-graph")).to_be_visible(timeout=WAIT)
    status, graph = dash.post("agent_graph", {"execution_id": "live-1"}, dash.ops)
    assert status == 200 and {"planner", "actor", "reporter"} <= set(graph["agents"]), graph
    nodes = page.get_by_test_id("agent-node")
    expect(nodes).to_have_count(len(graph["agents"]))
    assert [nodes.nth(i).get_attribute("data-agent") for i in range(nodes.count())] == graph["agents"]
    expect(page.get_by_test_id("agent-edge")).to_have_count(len(graph["edges"]))
    shot(page, "execution-trace", tmp_path)
    assert errors == []
    ctx.close()


def test_the_feed_keeps_what_arrives_while_it_loads_the_recent_past(dash, browser):
    """The feed page asks for the recent past while the live stream already runs: events the
    stream brings before that answer is in are shown, not dropped. The recent past is answered
    as the store was before a new run, but handed to the page only after the run's events came
    through the stream (the order a slow answer gives)."""
    ctx, page, errors = login(browser, dash, dash.ops, "#/overview")
    expect(page.get_by_test_id("live")).to_have_attribute("data-state", "live", timeout=WAIT)
    held = []
    page.route(lambda url: url.endswith("/v1/events"), lambda route: held.append((route, route.fetch())))
    page.evaluate("location.hash = '#/feed'")
    while not held:
        page.wait_for_timeout(20)
    dash.start("early-1")
    dash.wait_status("early-1", "completed")
    status, head = dash.post("audit_head", {}, dash.ops)
    expect(page.locator("#sidebar-foot")).to_contain_text(f"seq {head['seq']}", timeout=WAIT)
    route, answer = held[0]
    assert "early-1" not in answer.text()
    route.fulfill(response=answer)
    rows = page.locator('[data-test="feed-row"][data-execution="early-1"]')
    expect(rows).to_have_count(5, timeout=WAIT)
    assert errors == []
    ctx.close()


def test_apply_the_fix_to_a_paused_execution_from_the_recovery_page(dash, browser, tmp_path):
    dash.start("stuck-1")
    dash.wait_status("stuck-1", "paused")
    ctx, page, errors = login(browser, dash, dash.ops, "#/recovery")
    row = page.locator('[data-test="failure-row"][data-execution="stuck-1"]').first
    expect(row).to_be_visible(timeout=WAIT)
    shot(page, "recovery", tmp_path)
    row.get_by_test_id("action-apply-fix").click()
    fixed = {"topic": "stuck-1", "steps": ["search", "summarize"], "done": ["search"], "attempt": 2, "fixed": True}
    page.get_by_test_id("fix-state").fill(json.dumps(fixed))
    page.get_by_test_id("confirm").click()
    expect(page.get_by_test_id("toast")).to_have_attribute("data-kind", "ok", timeout=WAIT)
    # The corrected output is recorded for the failed step; the application continues after it.
    done = dash.wait_status("stuck-1", "completed")
    assert done["attempts"] >= 2
    status, history = dash.post("history", {"execution_id": "stuck-1"}, dash.ops)
    assert [c["name"] for c in history] == ["plan", "act", "report"]
    status, failures = dash.post("failures", {"execution_id": "stuck-1"}, dash.ops)
    assert failures[-1]["outcome"] in ("resumed", "recovered"), failures
    resumed = [a for a in failures[-1]["actions"] if a["action"] == "resume"]
    detail = json.loads(resumed[-1]["detail"])
    assert detail["state_edited"] is True and "key:ops" in detail["by"], failures[-1]
    assert errors == []
    ctx.close()


def test_escalate_a_paused_execution_from_the_recovery_page(dash, browser, tmp_path):
    dash.start("stuck-2")
    dash.wait_status("stuck-2", "paused")
    ctx, page, errors = login(browser, dash, dash.ops, "#/recovery")
    rows = page.locator('[data-test="failure-row"][data-execution="stuck-2"]')
    expect(rows.first).to_be_visible(timeout=WAIT)
    rows.first.get_by_test_id("action-escalate").click()
    page.get_by_test_id("confirm-reason").fill("card provider down")
    page.get_by_test_id("confirm").click()
    expect(page.get_by_test_id("toast")).to_have_attribute("data-kind", "ok", timeout=WAIT)
    # Settled as escalated, so it leaves the open failures; the application (the writer) wrote
    # it, and the execution stays paused for whoever takes it over.
    expect(rows).to_have_count(0, timeout=WAIT)
    status, failures = dash.post("failures", {"execution_id": "stuck-2"}, dash.ops)
    assert status == 200 and failures[-1]["outcome"] == "escalated", failures
    detail = json.loads(failures[-1]["actions"][-1]["detail"])
    assert detail["reason"] == "card provider down" and "ops" in detail["by"], detail
    dash.wait_status("stuck-2", "paused")
    status, refused = dash.post("control", {"action": "escalate", "execution_id": "stuck-2"}, dash.viewer)
    assert status == 403, refused
    assert errors == []
    ctx.close()


def test_download_the_monthly_report(dash, browser, tmp_path):
    ctx, page, errors = login(browser, dash, dash.ops, "#/compliance")
    expect(page.get_by_test_id("audit-row").first).to_be_visible(timeout=WAIT)
    month = time.strftime("%Y-%m", time.gmtime())
    page.get_by_test_id("report-period").fill(month)
    with page.expect_download(timeout=WAIT) as d:
        page.get_by_test_id("report-pdf").click()
    pdf = Path(d.value.path()).read_bytes()
    assert pdf[:5] == b"%PDF-" and d.value.suggested_filename == f"omium-report-{month}.pdf"
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    assert month in text and "ui_demo" in text, text[:500]
    with page.expect_download(timeout=WAIT) as d:
        page.get_by_test_id("report-csv").click()
    assert "ui_demo" in Path(d.value.path()).read_text()
    shot(page, "compliance", tmp_path)
    assert errors == []
    ctx.close()


def test_every_page_renders_without_errors(dash, browser, tmp_path):
    ctx, page, errors = login(browser, dash, dash.ops, "#/overview")
    for route in ("overview", "feed", "executions", "recovery", "policies", "compliance", "cluster"):
        page.get_by_test_id(f"nav-{route}").click()
        expect(page.get_by_test_id("page")).to_have_attribute("data-page", route, timeout=WAIT)
        expect(page.get_by_test_id("loading")).to_have_count(0, timeout=WAIT)
        expect(page.get_by_test_id("error")).to_have_count(0)
        if route in ("overview", "executions", "policies"):  # the others: where they act
            shot(page, route, tmp_path)
    expect(page.get_by_test_id("kpi-executions").first).to_be_visible()
    page.get_by_test_id("nav-policies").click()
    page.get_by_test_id("policy-text").fill("recovery:\n  on_eror: [pause]\n")
    page.get_by_test_id("policy-validate").click()
    err = page.get_by_test_id("policy-error").first
    expect(err).to_have_attribute("data-line", "2", timeout=WAIT)
    assert errors == []
    ctx.close()


def test_a_reader_cannot_press_an_operators_button(dash, browser, tmp_path):
    ctx, page, errors = login(browser, dash, dash.viewer, "#/execution/first")
    expect(page.get_by_test_id("whoami")).to_have_attribute("data-roles", re.compile("reader"))
    expect(page.get_by_test_id("execution-header")).to_have_attribute("data-execution", "first", timeout=WAIT)
    for action in ("action-rollback", "action-pause", "action-cancel", "action-retry", "action-fork"):
        expect(page.get_by_test_id(action)).to_be_disabled()
    # Pressing it anyway, from the page's own origin with the reader's key: refused and audited.
    answer = page.evaluate(
        """async (key) => {
            const r = await fetch('/v1/control', {method: 'POST', headers: {'Content-Type': 'application/json',
                Authorization: 'Bearer ' + key}, body: JSON.stringify({action: 'cancel', execution_id: 'first'})});
            return {status: r.status, body: await r.json()};
        }""",
        dash.viewer,
    )
    assert answer["status"] == 403 and answer["body"]["code"] == "forbidden", answer
    assert "reader" in answer["body"]["message"], answer
    # (Beside an application the dashboard cannot write the audit log, so this denial is not in
    # it; through a daemon it is: test_security.py.)
    status, e = dash.post("execution", {"execution_id": "first"}, dash.viewer)
    assert (status, e["status"]) == (200, "completed")
    assert errors == []
    ctx.close()


def test_other_web_pages_and_names_are_refused(dash):
    status, body = dash.post("executions.page", {}, dash.ops, origin="http://evil.example")
    assert status == 403 and "Origin" in body["message"]
    status, body = dash.post("executions.page", {}, dash.ops, origin=f"http://localhost:{dash.port + 1}")
    assert status == 403
    status, body = dash.post("executions.page", {}, dash.ops, origin=f"http://{dash.host}:{dash.port}")
    assert status == 200
    c = http.client.HTTPConnection(dash.host, dash.port, timeout=30)
    c.request("GET", "/", headers={"Host": f"attacker.example:{dash.port}"})
    assert c.getresponse().status == 403
    c = http.client.HTTPConnection(dash.host, dash.port, timeout=30)
    c.request("GET", "/")
    r = c.getresponse()
    assert r.status == 200 and "script-src 'self'" in r.getheader("content-security-policy")
    assert r.getheader("x-frame-options") == "DENY"
    status, body = dash.post("executions.page", {}, None)
    assert status == 401


def test_in_front_of_a_daemon_with_the_browsers_key(browser, tmp_path):
    """`omium ui --url`: the pages here, every call passed to `omium serve` with the caller's key
    (the daemon authenticates, authorizes and audits it), the event stream passed through."""
    from test_serve import Daemon

    admin = "k" * 32
    daemon = Daemon(tmp_path / "store", "--http", "127.0.0.1:0", "--api-key", admin)
    ui = subprocess.Popen(
        [BIN, "ui", "--url", daemon.http_url, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        url = json.loads(ui.stdout.readline())["ui"]
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        reader = daemon.post("keys.create", {"name": "viewer", "tenant": "*", "roles": ["reader"]}, key=admin)[1]["secret"]
        omium.init(url=daemon.http_url, api_key=admin)

        @omium.workflow("proxied")
        def proxied() -> int:
            return 1

        proxied.run(execution_id="via-daemon")

        def post(method: str, key: str | None) -> tuple[int, dict]:
            c = http.client.HTTPConnection(host, int(port), timeout=30)
            headers = {"Content-Type": "application/json", "Origin": url.rstrip("/")}
            if key:
                headers["Authorization"] = f"Bearer {key}"
            c.request("POST", f"/v1/{method}", body=json.dumps({"action": "cancel", "execution_id": "via-daemon"}), headers=headers)
            r = c.getresponse()
            return r.status, json.loads(r.read())

        assert post("whoami", None)[0] == 401
        assert post("whoami", reader)[1]["identity"] == "key:viewer"
        status, body = post("control", reader)
        assert status == 403 and body["code"] == "forbidden"
        # The daemon audited the refusal with the caller's name.
        trail = daemon.post("audit", {"action": "api.deny", "limit": 1}, key=admin)[1]
        assert json.loads(trail["entries"][0]["detail"])["caller"] == "key:viewer"
        # The event stream comes through the proxy.
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        c.request("GET", "/v1/events/stream?since=0&types=execution.*", headers={"Authorization": f"Bearer {reader}"})
        r = c.getresponse()
        assert r.status == 200 and r.getheader("content-type").startswith("text/event-stream")
        first = b""
        while b"\n\n" not in first:
            first += r.read1(4096)
        assert b"event: execution.started" in first and b"via-daemon" in first

        ctx, page, errors = login(browser, type("D", (), {"url": url})(), reader, "#/execution/via-daemon")
        expect(page.get_by_test_id("execution-header")).to_have_attribute("data-status", "completed", timeout=WAIT)
        expect(page.get_by_test_id("action-cancel")).to_be_disabled()
        assert errors == []
        ctx.close()
    finally:
        omium.shutdown()
        ui.terminate()
        assert ui.wait(20) == 0, ui.stderr.read()
        daemon.stop()


def test_the_cluster_page_shows_a_real_cluster(dash, browser, tmp_path):
    """`omium ui --node`: the Cluster page shows the members of a real `omium node` cluster,
    its leader and term, how far each member lags, and the executions stores synced to it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = subprocess.Popen(
        [BIN, "--store", str(tmp_path / "n1"), "node", "--id", "1", "--listen", f"127.0.0.1:{port}", "--insecure-loopback"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ui = None
    try:
        assert "listening" in node.stdout.readline(), node.stderr.read()
        init = subprocess.run([BIN, "cluster", "--node", f"127.0.0.1:{port}", "init"], capture_output=True, text=True, timeout=60)
        assert init.returncode == 0, init.stderr
        # A store of its own syncs an execution to the cluster: the page lists it with its owner,
        # and says this store (the dashboard's) does not have it.
        omium.init(path=tmp_path / "synced", remote=f"127.0.0.1:{port}", remote_durability="sync", project="sync-demo")
        try:

            @omium.checkpoint
            def work() -> str:
                return "done"

            @omium.workflow("synced_wf")
            def synced_wf() -> str:
                return work()

            assert synced_wf.run(execution_id="synced-1") == "done"
        finally:
            omium.shutdown()
        ui = subprocess.Popen(
            [BIN, "--store", str(dash.store), "ui", "--listen", "127.0.0.1:0", "--node", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        url = json.loads(ui.stdout.readline())["ui"]
        ctx, page, errors = login(browser, type("D", (), {"url": url})(), dash.ops, "#/cluster")
        row = page.locator('[data-test="cluster-node"][data-node="1"]')
        expect(row).to_have_attribute("data-role", "leader", timeout=WAIT)
        expect(row).to_contain_text(f"127.0.0.1:{port}")
        expect(page.get_by_test_id("cluster-info")).to_have_attribute("data-configured", "true")
        shot(page, "cluster", tmp_path)
        answer = page.evaluate(
            """async (key) => (await fetch('/v1/cluster', {method: 'POST', headers: {'Content-Type': 'application/json',
                Authorization: 'Bearer ' + key}, body: '{}'})).json()""",
            dash.ops,
        )
        assert answer["leader"] == 1 and answer["term"] >= 1 and answer["nodes"][0]["state"] == "leader", answer
        [synced] = [x for x in answer["executions"] if x["id"] == "synced-1"]
        assert (synced["workflow"], synced["status"], synced["here"]) == ("synced_wf", "completed", "not_here"), synced
        assert synced["checkpoints"] >= 1 and answer["synced_total"] >= 1 and answer["sync_error"] is None, answer
        expect(page.locator('[data-test="synced-row"][data-execution="synced-1"]')).to_have_attribute("data-here", "not_here")
        assert errors == []
        ctx.close()
    finally:
        if ui:
            ui.terminate()
            ui.wait(20)
        node.kill()
        node.wait(10)
