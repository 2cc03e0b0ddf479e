"""`/metrics` of `omium serve` scraped by a real Prometheus server on loopback (Debian's
`prometheus` package, which `make test` installs) and checked with `promtool check metrics`:
the values Prometheus stores equal a count made from the executions themselves."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import omium
import pytest
from test_serve import KEY, Daemon


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make test` installs Debian's prometheus package (apt-get install prometheus)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(d: Daemon, key: str | None = KEY) -> tuple[int, str, str]:
    c = http.client.HTTPConnection(d.host, d.port, timeout=10)
    c.request("GET", "/metrics", headers={"Authorization": f"Bearer {key}"} if key else {})
    r = c.getresponse()
    return r.status, r.getheader("Content-Type") or "", r.read().decode()


def _run_mix(d: Daemon) -> dict[str, int]:
    """Executions through the daemon: completions, failures, a rollback and a resume."""
    omium.init(url=d.http_url, api_key=KEY)
    try:

        @omium.checkpoint("work", agent="worker")
        def work(i: int) -> int:
            if i % 3 == 0:
                raise ValueError(f"item {i} is bad")
            return i

        @omium.workflow("prom-batch")
        def batch(i: int) -> int:
            return work(i)

        for i in range(7):
            try:
                batch.run(i, execution_id=f"p-{i}")
            except ValueError:
                pass
        omium.rollback("p-1", to="work", reason="again")
        batch.run(1, execution_id="p-1")
        statuses = [omium.get_execution(f"p-{i}").status for i in range(7)]
    finally:
        omium.shutdown()
    return {"started": 7, "failed": statuses.count("failed"), "completed": statuses.count("completed") + 1}


def test_a_real_prometheus_scrapes_the_daemon_and_stores_the_counts(tmp_path, sockdir):
    prometheus, promtool = _tool("prometheus"), _tool("promtool")
    d = Daemon(tmp_path / "store", "--http", "127.0.0.1:0", "--socket", str(sockdir / "m.sock"), "--api-key", KEY)
    prom = None
    try:
        assert _scrape(d, key=None)[0] == 401, "the metrics need the key like every other route"
        expected = _run_mix(d)
        status, ctype, text = _scrape(d)
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4"), (status, ctype)
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        assert 'omium_executions_started_total{tenant="default",workflow="prom-batch"} 7' in text, text
        assert 'omium_failures_total{tenant="default",workflow="prom-batch",type=' in text, text

        port = _free_port()
        (tmp_path / "key").write_text(KEY)
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: omium\n"
            "    authorization:\n"
            f"      credentials_file: {tmp_path / 'key'}\n"
            "    static_configs:\n"
            f"      - targets: ['{d.host}:{d.port}']\n"
        )
        prom = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

        def query(q: str) -> list:
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
            with urllib.request.urlopen(url, timeout=5) as r:
                body = json.load(r)
            assert body["status"] == "success", body
            return body["data"]["result"]

        # Wait for the condition (a first successful scrape stored), not for a time.
        deadline = time.monotonic() + 90
        started: list = []
        while time.monotonic() < deadline and prom.poll() is None:
            try:
                started = query('omium_executions_started_total{workflow="prom-batch"}')
            except (OSError, ValueError):
                started = []
            if started:
                break
            time.sleep(0.2)
        assert started, f"prometheus stored nothing (exit {prom.poll()}): {prom.stderr.read() if prom.poll() is not None else ''}"
        assert float(started[0]["value"][1]) == expected["started"]
        assert query('up{job="omium"}')[0]["value"][1] == "1"
        ended = {r["metric"]["status"]: float(r["value"][1]) for r in query('omium_execution_endings_total{workflow="prom-batch"}')}
        assert ended["failed"] == expected["failed"] and ended["completed"] == expected["completed"], (ended, expected)
        p95 = query('histogram_quantile(0.95, omium_execution_duration_seconds_bucket{workflow="prom-batch"})')
        assert p95 and float(p95[0]["value"][1]) >= 0
        assert float(query("sum(omium_rollbacks_total)")[0]["value"][1]) == 1
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(20)
        d.stop()
