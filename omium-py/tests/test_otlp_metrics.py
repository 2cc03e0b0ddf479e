"""The analytics over OTLP (issue 19): `omium serve`, `omium node` and an embedded store push
the instruments of `/metrics` to an OTLP/HTTP receiver on loopback. The receiver decodes
every request with the OpenTelemetry project's own protobuf classes (`opentelemetry-proto`),
so a request that is not a valid `ExportMetricsServiceRequest` fails the test; the values are
checked against `/metrics` and against counts made from the executions themselves."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import omium
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from test_prometheus import _run_mix, _scrape
from test_serve import KEY, Daemon, omium_bin


class Receiver:
    """An OTLP/HTTP receiver: keeps each decoded metrics request, answers 200."""

    def __init__(self) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []
        self.paths: list[str] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = self.headers.get("Content-Type") == "application/x-protobuf"
                if ok and self.path == "/v1/metrics":
                    req = ExportMetricsServiceRequest()
                    req.ParseFromString(body)
                    with receiver.changed:
                        receiver.requests.append(req)
                        receiver.paths.append(self.path)
                        receiver.changed.notify_all()
                self.send_response(200 if ok else 415)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for(self, pred, timeout: float = 60.0, after: int = 0) -> ExportMetricsServiceRequest:
        """The newest request from the `after`-th on for which `pred` holds, waiting for it."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for r in reversed(self.requests[after:]):
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                assert left > 0, f"no such request among {len(self.requests)}: {[values(r) for r in self.requests[-3:]]}"
                self.changed.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def metrics_of(req: ExportMetricsServiceRequest) -> dict:
    return {m.name: m for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def attrs(point) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in point.attributes}


def values(req: ExportMetricsServiceRequest) -> dict[str, float]:
    """Each sum's or gauge's points added up, by metric name."""
    out: dict[str, float] = {}
    for name, m in metrics_of(req).items():
        kind = m.WhichOneof("data")
        if kind in ("sum", "gauge"):
            out[name] = sum(p.as_double for p in getattr(m, kind).data_points)
    return out


def test_the_daemon_exports_the_metrics_of_its_scrape_once_more_when_it_stops(tmp_path, sockdir):
    rx = Receiver()
    # An interval longer than the test: the only export is the one made when the daemon stops.
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": rx.base, "OTEL_METRIC_EXPORT_INTERVAL": "600000", "OTEL_SERVICE_NAME": "ops"}
    d = Daemon(tmp_path / "store", "--http", "127.0.0.1:0", "--socket", str(sockdir / "o.sock"), "--api-key", KEY, env=env)
    try:
        expected = _run_mix(d)
        status, _, scrape = _scrape(d)
        assert status == 200
        assert rx.requests == [], "nothing is sent before the first interval"
        d.stop()
        req = rx.wait_for(lambda r: True, timeout=10)
        assert len(rx.requests) == 1
        rm = req.resource_metrics[0]
        assert {kv.key: kv.value.string_value for kv in rm.resource.attributes}["service.name"] == "ops"
        assert rm.scope_metrics[0].scope.name == "omium"
        m = metrics_of(req)
        started = m["omium_executions_started"]
        assert started.sum.is_monotonic and started.sum.aggregation_temporality == 2  # cumulative
        [point] = started.sum.data_points
        assert attrs(point) == {"tenant": "default", "workflow": "prom-batch"}
        assert point.as_double == expected["started"]
        assert 0 < point.start_time_unix_nano < point.time_unix_nano
        endings = {attrs(p)["status"]: p.as_double for p in m["omium_execution_endings"].sum.data_points}
        assert endings["failed"] == expected["failed"] and endings["completed"] == expected["completed"], endings
        # The same figures as the scrape, name for name (a counter's `_total` is Prometheus's).
        for line in scrape.splitlines():
            if line.startswith("omium_") and "_total{" in line and "_bucket" not in line:
                name, rest = line.split("_total{", 1)
                labels = dict(kv.split("=", 1) for kv in rest.split("}")[0].split(",") if kv)
                labels = {k: v.strip('"') for k, v in labels.items()}
                number = float(rest.rsplit(" ", 1)[1])
                got = [p.as_double for p in m[name].sum.data_points if attrs(p) == labels]
                assert got == [number], (line, got)
        hist = m["omium_execution_duration_seconds"]
        assert hist.unit == "s" and hist.histogram.aggregation_temporality == 2
        for p in hist.histogram.data_points:
            assert len(p.bucket_counts) == len(p.explicit_bounds) + 1
            assert sum(p.bucket_counts) == p.count and p.count > 0
        count = hist.histogram.data_points[0].count
        assert f'omium_execution_duration_seconds_count{{tenant="default",workflow="prom-batch"}} {count}' in scrape
    finally:
        rx.close()
        if d.proc.poll() is None:
            d.proc.kill()


def test_an_embedded_store_exports_its_analytics_while_it_runs(tmp_path):
    rx = Receiver()
    try:
        omium.init(path=tmp_path / "store", project="embedded")
        omium.enable_otlp_export(endpoint=f"{rx.base}/v1/traces", metrics_endpoint=f"{rx.base}/v1/metrics", metrics_interval=0.1)

        @omium.checkpoint("fetch", agent="reader")
        def fetch(i: int) -> int:
            return i

        @omium.checkpoint("sum", agent="adder")
        def add(a: int) -> int:
            return a + 1

        @omium.workflow("etl")
        def etl(i: int) -> int:
            return add(fetch(i))

        for i in range(3):
            etl.run(i, execution_id=f"e-{i}")
        req = rx.wait_for(lambda r: values(r).get("omium_executions_started") == 3 and values(r).get("omium_steps") == 6)
        steps = {attrs(p)["agent"]: p.as_double for p in metrics_of(req)["omium_steps"].sum.data_points}
        assert steps == {"reader": 3, "adder": 3}, steps
        # Cumulative: later exports never go below earlier ones.
        later = rx.wait_for(lambda r: True, after=len(rx.requests))
        assert values(later)["omium_executions_started"] == 3 and later.resource_metrics[0].scope_metrics[0].metrics
    finally:
        omium.shutdown()
        rx.close()


def test_a_node_exports_its_raft_health(tmp_path):
    rx = Receiver()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{rx.base}/v1/metrics", "OTEL_METRIC_EXPORT_INTERVAL": "100"}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    args = [omium_bin(), "--store", str(tmp_path / "n1"), "node", "--id", "1", "--listen", f"127.0.0.1:{port}", "--insecure-loopback"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert "listening" in p.stdout.readline(), p.stderr.read()
        r = subprocess.run([omium_bin(), "cluster", "--node", f"127.0.0.1:{port}", "init"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        req = rx.wait_for(lambda r: values(r).get("omium_raft_is_leader") == 1 and values(r).get("omium_raft_voters") == 1)
        m = metrics_of(req)
        assert m["omium_raft_term"].WhichOneof("data") == "gauge"
        [term] = m["omium_raft_term"].gauge.data_points
        assert attrs(term) == {"node": "1"} and term.as_double >= 1
        r = subprocess.run([omium_bin(), "--json", "cluster", "--node", f"127.0.0.1:{port}", "status"], capture_output=True, text=True)
        assert json.loads(r.stdout)["leader"] == 1
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        rx.close()


def test_a_bad_metrics_endpoint_is_refused_with_its_name(tmp_path):
    omium.init(path=tmp_path / "store")
    try:
        try:
            omium.enable_otlp_export(endpoint="http://127.0.0.1:9/v1/traces", metrics_endpoint="ftp://collector/v1/metrics")
        except omium.OmiumError as e:
            assert "OTLP metrics export" in str(e) and "ftp://collector/v1/metrics" in str(e), e
        else:
            raise AssertionError("an ftp:// metrics endpoint was accepted")
    finally:
        omium.shutdown()
    assert Path(tmp_path / "store").exists()
