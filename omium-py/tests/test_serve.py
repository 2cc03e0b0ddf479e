"""`omium serve`: a real daemon process, real worker processes sharing its store through
omium.init(url=...), a worker SIGKILLed and resumed by another, API keys, bad input, and every
answer checked against docs/openapi.yaml."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import omium
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("serve_worker.py")
KEY = "k3y-0123456789abcdef-test"


def omium_bin() -> str:
    """The `omium` binary (`make test-python` builds it and sets OMIUM_BIN)."""
    candidates = [os.environ.get("OMIUM_BIN", "")]
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/omium-target")
    candidates += [os.path.join(target, "debug", "omium"), str(ROOT / "target" / "debug" / "omium")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    pytest.fail("the omium binary is not built: run `make cli` (or set OMIUM_BIN)")


class Daemon:
    def __init__(self, store: Path, *args: str, env: dict | None = None) -> None:
        # Keys never go on the command line: `--api-key K` here becomes OMIUM_API_KEYS.
        args_, keys = list(args), []
        while "--api-key" in args_:
            i = args_.index("--api-key")
            keys.append(args_[i + 1])
            del args_[i : i + 2]
        env = dict(os.environ if env is None else env)
        if keys:
            env["OMIUM_API_KEYS"] = ",".join(keys)
        self.proc = subprocess.Popen(
            [omium_bin(), "--store", str(store), "serve", *args_], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise RuntimeError(f"omium serve exited {self.proc.returncode}: {self.proc.stderr.read()}")
        self.info = json.loads(line)
        self.socket = self.info["socket"]
        host, port = self.info["http"].rsplit(":", 1) if self.info["http"] else (None, None)
        self.host, self.port = host, int(port) if port else None

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def post(
        self, method: str, body: object = None, key: str | None = None, raw: bytes | None = None, raw_answer: bool = False
    ) -> tuple[int, object]:
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        c.request("POST", f"/v1/{method}", body=data, headers=headers)
        r = c.getresponse()
        return r.status, r.read() if raw_answer else json.loads(r.read() or b"null")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(20) == 0, self.proc.stderr.read()
        if self.socket:
            assert not os.path.exists(self.socket), "the socket file is removed on SIGTERM"


@pytest.fixture
def daemon(tmp_path, sockdir):
    d = Daemon(tmp_path / "store", "--socket", str(sockdir / "omium.sock"), "--http", "127.0.0.1:0")
    yield d
    omium.shutdown()
    d.stop()


def worker(mode: str, url: str, log: Path, *ids: str, barrier: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMIUM_TEST_BARRIER": str(barrier)} if barrier else None
    return subprocess.Popen(
        [sys.executable, str(WORKER), mode, url, str(log), *ids], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def finished(p: subprocess.Popen) -> dict:
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def log_lines(log: Path) -> list[tuple[str, int, int]]:
    if not log.exists():
        return []
    return [(e, int(s), int(pid)) for e, s, pid in (line.split() for line in log.read_text().splitlines())]


def test_four_workers_share_one_store_and_leases_keep_executions_apart(daemon, tmp_path):
    log = tmp_path / "steps.log"
    ids = [f"job-{i}" for i in range(8)]
    # A fifth process holds "held" for the whole test: every worker meets a lease it must respect.
    holder = worker("hold", daemon.unix_url, tmp_path / "held.log", "held")
    assert holder.stdout.readline().strip() == "READY", holder.stderr.read()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    # Each worker walks all eight ids from a different place: they collide on purpose.
    procs = [
        worker("claim", daemon.unix_url if i % 2 else daemon.http_url, log, *(ids[2 * i :] + ids[: 2 * i]), "held", barrier=barrier)
        for i in range(4)
    ]
    deadline = time.monotonic() + 60
    while len(list(barrier.glob("ready-*"))) < len(procs):
        assert all(p.poll() is None for p in procs), [p.stderr.read() for p in procs if p.poll() is not None]
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.01)
    (barrier / "go").touch()
    reports = [finished(p) for p in procs]
    holder.kill()
    holder.wait(10)
    lines = log_lines(log)
    ran = [(e, s) for e, s, _ in lines]
    assert sorted(ran) == sorted((e, s) for e in ids for s in range(5)), "every step ran exactly once"
    assert len({pid for _, _, pid in lines}) >= 2, f"the work was shared: {reports}"
    assert all("held" in r["skipped"] for r in reports), f"every worker respected the held lease: {reports}"
    omium.init(url=daemon.unix_url)
    by_id = {e.id: e for e in omium.executions()}
    assert all(by_id[i].status == "completed" and by_id[i].checkpoint_count == 5 for i in ids)
    assert omium.verify().ok
    # The audit head travels through the daemon like every other call.
    head = omium.audit_head()
    assert omium.verify(expect_head=head).audit_head == head
    seq, digest = head.split(":")
    cut = omium.verify(expect_head=f"{int(seq) + 1}:{digest}")
    assert not cut.ok and f"entry #{int(seq) + 1} is missing" in cut.problems[-1]


def test_a_killed_worker_resumes_in_another_without_rerunning_finished_steps(daemon, tmp_path):
    log = tmp_path / "steps.log"
    slow = worker("slow", daemon.unix_url, log, "long-1")
    deadline = time.monotonic() + 60
    while len(log_lines(log)) < 3:
        assert slow.poll() is None, slow.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)

    # While the first worker runs it, nobody else can.
    omium.init(url=daemon.http_url)

    @omium.workflow("pipeline")
    def pipeline(execution: str, steps: int, pause: float) -> int:
        raise AssertionError("must not run")

    with pytest.raises(omium.ExecutionLeasedError, match="long-1"):
        pipeline.run("long-1", 10, 0.2, execution_id="long-1")
    assert "long-1" not in [e.id for e in omium.resumable()]

    slow.send_signal(signal.SIGKILL)
    slow.wait(10)
    finished_steps = len(omium.history("long-1"))
    assert finished_steps >= 2
    # The daemon sees at once that the worker's process is gone: the execution is resumable.
    assert "long-1" in [e.id for e in omium.resumable()]
    omium.shutdown()

    report = finished(worker("recover", daemon.unix_url, log))
    assert report["done"] == ["long-1"]
    lines = log_lines(log)
    steps = [s for e, s, _ in lines if e == "long-1"]
    for s in range(finished_steps):
        assert steps.count(s) == 1, f"finished step {s} ran again: {steps}"
    assert sorted(set(steps)) == list(range(10))
    assert len(steps) <= 11, "at most the step in flight at the kill ran twice"
    omium.init(url=daemon.unix_url)
    info = omium.get_execution("long-1")
    assert info.status == "completed" and info.checkpoint_count == 10
    assert [f.type for f in omium.failures("long-1")] == ["process_crashed"]


def test_a_killed_worker_is_recovered_at_once_50_times(daemon, tmp_path):
    # A supervisor calls recover() right after it saw its worker die: the daemon must not answer
    # from a reaper's last tick (it did, and recover() found nothing for up to 250 ms).
    log = tmp_path / "steps.log"
    omium.init(url=daemon.unix_url)
    ran: list[tuple[str, int]] = []

    @omium.checkpoint("hold_step")
    def hold_step(execution: str, step: int) -> int:
        ran.append((execution, step))
        return step

    @omium.workflow("holder")
    def holder(execution: str) -> list[int]:
        return [hold_step(execution, i) for i in range(5)]

    for round_ in range(50):
        eid = f"held-{round_}"
        w = worker("hold", daemon.unix_url, log, eid)
        assert w.stdout.readline().strip() == "READY", w.stderr.read()
        w.kill()
        w.communicate(timeout=10)
        assert omium.recover() == {eid: [0, 1, 2, 3, 4]}, f"round {round_}"
        # Steps 0-2 were recorded by the killed worker: only 3 (interrupted) and 4 run here.
        assert ran == [(eid, 3), (eid, 4)], f"round {round_}: {ran}"
        ran.clear()
    assert omium.verify().ok


_LIAR = """
import http.client, json, socket, sys

class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sys.argv[1])

c = Unix("localhost")
body = {"execution_id": "liar-1", "pid": int(sys.argv[2]), "host": "elsewhere"}
c.request("POST", "/v1/begin", json.dumps(body), {"Content-Type": "application/json"})
r = c.getresponse()
print(r.status, json.loads(r.read())["run"], flush=True)
sys.stdin.read()
"""


def test_liveness_rests_on_the_connecting_process_not_on_a_pid_it_claims(daemon):
    """A worker that claims another, live process's pid is still dropped when it dies: on the
    unix socket the daemon asks the kernel which process is connected (SO_PEERCRED)."""
    liar = subprocess.Popen(
        [sys.executable, "-c", _LIAR, daemon.socket, str(os.getpid())], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    status, _run = liar.stdout.readline().split()
    assert status == "200"
    omium.init(url=daemon.unix_url)
    assert omium.resumable() == [], "held by a live worker"
    liar.kill()
    liar.wait(10)
    assert [e.id for e in omium.resumable()] == ["liar-1"], "its process is gone, whatever pid it claimed"


def test_hostile_policy_documents_are_refused_and_the_daemon_keeps_answering(daemon):
    broken = Path(__file__).with_name("policies") / "broken"
    for name, want in [("billion_laughs.yaml", "more than 100000 nodes"), ("nested.yaml", "nest deeper than 64 levels")]:
        text = (broken / name).read_text()
        status, body = daemon.post("apply_policy", {"tenant": "default", "scope": "global", "text": text, "file": name})
        assert status == 400 and body["code"] == "invalid_policy", body
        assert want in body["message"], body
    c = http.client.HTTPConnection(daemon.host, daemon.port, timeout=10)
    c.request("GET", "/v1/health")
    assert json.loads(c.getresponse().read())["status"] == "ok"
    assert daemon.post("policy_versions", {}) == (200, [])


def test_api_keys_are_required_off_loopback_and_checked(tmp_path, sockdir):
    with pytest.raises(RuntimeError, match="reachable from other machines: create a key first"):
        Daemon(tmp_path / "a", "--http", "0.0.0.0:0")
    with pytest.raises(RuntimeError, match="shorter than 16 characters"):
        Daemon(tmp_path / "b", "--http", "127.0.0.1:0", "--api-key", "short")
    d = Daemon(tmp_path / "c", "--http", "127.0.0.1:0", "--socket", str(sockdir / "k.sock"), "--api-key", KEY)
    try:
        status, body = d.post("executions")
        assert status == 401 and body["code"] == "unauthorized"
        status, body = d.post("executions", key="wrong-key-0123456789")
        assert status == 401
        assert d.post("executions", key=KEY) == (200, [])
        c = http.client.HTTPConnection(d.host, d.port, timeout=10)
        c.request("GET", "/v1/health")
        assert json.loads(c.getresponse().read())["status"] == "ok"

        omium.init(url=d.http_url)  # the health check needs no key; the first call does
        with pytest.raises(omium.OmiumError, match="needs an API key") as e:
            omium.executions()
        assert e.value.code == "unauthorized"

        @omium.checkpoint
        def double(x: int) -> int:
            return 2 * x

        @omium.workflow("keyed")
        def keyed(x: int) -> int:
            return double(x)

        omium.init(url=d.http_url, api_key=KEY)
        assert keyed.run(21, execution_id="k-1") == 42
        omium.init(url=f"unix://{d.socket}")  # the socket is guarded by its file mode, not keys
        assert [c.name.rsplit(".", 1)[-1] for c in omium.history("k-1")] == ["double"]
        omium.shutdown()
    finally:
        omium.shutdown()
        d.stop()
    with pytest.raises(omium.OmiumError, match="is unavailable") as e:
        omium.init(url=d.http_url)
    assert e.value.code == "server_unavailable"
    with pytest.raises(omium.InvalidArgumentError, match="expected unix:///path/to/omium.sock, http://host:port or https://host:port"):
        omium.init(url="ftp://x")


def raw(d: Daemon, verb: str, path: str, headers: dict[str, str], body: bytes = b"{}") -> tuple[int, dict]:
    c = http.client.HTTPConnection(d.host, d.port, timeout=30)
    c.putrequest(verb, path, skip_host="Host" in headers, skip_accept_encoding=True)
    for k, v in headers.items():
        c.putheader(k, v)
    c.putheader("Content-Length", str(len(body)))
    c.endheaders(body)
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")


def test_web_pages_cannot_reach_the_daemon_and_health_tells_nothing(tmp_path, sockdir):
    # What a web page the user opens could send to a daemon on loopback without keys: a cross-site
    # POST (with Origin), a form POST as text/plain, a request to a rebound name. Each is refused,
    # and the daemon keeps answering programs.
    d = Daemon(tmp_path / "store", "--socket", str(sockdir / "omium.sock"), "--http", "127.0.0.1:0", "--allow-host", "omium.internal")
    try:
        json_ = {"Content-Type": "application/json"}
        status, body = raw(d, "POST", "/v1/executions", {**json_, "Origin": "http://evil.example"})
        assert status == 403 and body["code"] == "unauthorized", body
        assert "requests from web pages are refused (Origin: http://evil.example)" in body["message"], body
        status, body = raw(d, "POST", "/v1/executions", {"Content-Type": "text/plain"})
        assert status == 415 and body["code"] == "invalid_argument", body
        assert body["message"] == "invalid Content-Type of /v1/executions: text/plain; expected application/json", body
        status, body = raw(d, "POST", "/v1/executions", {})
        assert status == 415 and "Content-Type of /v1/executions: none" in body["message"], body
        for host in ["evil.example", f"evil.example:{d.port}", f"localhost.evil.example:{d.port}", f"localhost:{d.port + 1}"]:
            status, body = raw(d, "POST", "/v1/executions", {**json_, "Host": host})
            assert status == 403 and body["code"] == "unauthorized", (host, body)
            assert f"Host {host!r}".replace("'", '"') in body["message"] and "DNS rebinding" in body["message"], body
        for host in [f"127.0.0.1:{d.port}", f"localhost:{d.port}", f"LOCALHOST:{d.port}", "omium.internal", f"omium.internal:{d.port}"]:
            assert raw(d, "POST", "/v1/executions", {**json_, "Host": host}) == (200, []), host
        assert raw(d, "POST", "/v1/executions", {"Content-Type": "application/json; charset=utf-8"}) == (200, [])

        # Health is liveness only; what the daemon serves is a call of its own.
        assert raw(d, "GET", "/v1/health", {}) == (200, {"status": "ok"})
        status, body = raw(d, "GET", "/v1/status", {})
        assert status == 200 and body["store"] == str(tmp_path / "store") and body["durability"] == "sync", body
        assert set(body) == {"store", "durability", "version", "runs", "caller"}, body

        # The unix socket is the daemon user's only; a refused request changed nothing.
        assert os.stat(d.socket).st_mode & 0o777 == 0o600
        omium.init(url=d.unix_url)
        assert omium.executions() == []
        omium.shutdown()
        omium.init(url=d.http_url)
        assert omium._runtime.store().durability == "sync"
    finally:
        omium.shutdown()
        d.stop()


def test_the_socket_can_be_shared_with_a_group_and_a_key_guards_the_status(tmp_path, sockdir):
    gid = os.getgid()
    d = Daemon(
        tmp_path / "store", "--socket", str(sockdir / "g.sock"), "--socket-group", str(gid), "--http", "127.0.0.1:0", "--api-key", KEY
    )
    try:
        st = os.stat(d.socket)
        assert st.st_mode & 0o777 == 0o660 and st.st_gid == gid
        status, body = raw(d, "GET", "/v1/status", {})
        assert status == 401 and body["code"] == "unauthorized", body
        status, body = raw(d, "GET", "/v1/status", {"Authorization": f"Bearer {KEY}"})
        assert status == 200 and body["runs"] == 0, body
        assert raw(d, "GET", "/v1/health", {}) == (200, {"status": "ok"})
    finally:
        d.stop()
    with pytest.raises(RuntimeError, match='"no-such-group-omium": no such group in /etc/group'):
        Daemon(tmp_path / "store2", "--socket", str(sockdir / "n.sock"), "--socket-group", "no-such-group-omium")


def spec(url: str):
    from openapi_core import OpenAPI

    doc = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    doc["servers"] = [{"url": url}]  # the daemon's port is chosen at start
    return OpenAPI.from_dict(doc)


def test_the_openapi_document_is_valid_and_current(tmp_path):
    from openapi_spec_validator import validate

    doc = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    validate(doc)
    out = tmp_path / "openapi.yaml"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-openapi.py"), str(out)], check=True, capture_output=True)
    assert out.read_text() == (ROOT / "docs" / "openapi.yaml").read_text(), "run scripts/gen-openapi.py"


def test_every_answer_matches_the_openapi_document(daemon):
    from openapi_core.testing import MockRequest, MockResponse

    api = spec(daemon.http_url)
    checked = set()

    def call(method: str, body: object = None, expect: int = 200, key: str | None = None) -> object:
        data = json.dumps(body if body is not None else {})
        if expect != 400:  # a bad request is what the document forbids; the daemon names it
            api.validate_request(MockRequest(daemon.http_url, "post", f"/v1/{method}", data=data, content_type="application/json"))
        status, answer = daemon.post(method, body, key=key)
        assert status == expect, (method, answer)
        api.validate_response(
            MockRequest(daemon.http_url, "post", f"/v1/{method}", data=data, content_type="application/json"),
            MockResponse(json.dumps(answer).encode(), status_code=status, content_type="application/json"),
        )
        checked.add(method)
        return answer

    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    begun = call("begin", {"execution_id": "api-1", "workflow": "w", "input": b64(b"in"), "labels": {"team": "risk"}})
    run = begun["run"]
    assert begun["execution"]["status"] == "running"
    seq = call("run.reserve", {"run": run})["seq"]
    assert call("run.recorded", {"run": run, "seq": seq, "name": "s"}) == {"checkpoint": None}
    cid = call("run.record", {"run": run, "seq": seq, "name": "s", "state": b64(b"x" * 10_000), "preconditions": [["x > 0", True]]})["id"]
    again = call("run.recorded", {"run": run, "seq": seq, "name": "s"})
    assert base64.b64decode(again["state"]) == b"x" * 10_000 and again["checkpoint"]["id"] == cid
    call("run.heartbeat", {"run": run})
    call("run.check_control", {"run": run, "step": "s"})
    # A state in pieces: two uploads of whole base64 groups, then a record that names them.
    up = call("run.upload", {"run": run, "data": b64(b"ab" * 3)})
    up = call("run.upload", {"run": run, "upload": up["upload"], "data": b64(b"cd" * 3)})
    assert up["size"] == 12
    seq2 = call("run.reserve", {"run": run})["seq"]
    pid = call("run.record", {"run": run, "seq": seq2, "name": "pieces", "state_upload": up["upload"]})["id"]
    piece = call("run.recorded", {"run": run, "seq": seq2, "name": "pieces"})
    assert base64.b64decode(piece["state"]) == b"ababab" + b"cdcdcd"
    gone = call("run.upload", {"run": run, "upload": up["upload"], "data": b64(b"x")}, expect=409)
    assert "is not open" in gone["message"]
    assert call("run.execution", {"run": run})["checkpoint_count"] == 2
    call("run.complete", {"run": run, "output": b64(b"out")})
    call("run.close", {"run": run})
    assert call("execution", {"execution_id": "api-1"})["status"] == "completed"
    assert [e["id"] for e in call("executions")] == ["api-1"]
    assert call("resumable") == []
    assert base64.b64decode(call("execution_input", {"execution_id": "api-1"})["data"]) == b"in"
    assert base64.b64decode(call("execution_output", {"execution_id": "api-1"})["data"]) == b"out"
    assert [c["id"] for c in call("history", {"execution_id": "api-1"})] == [cid, pid]
    assert len(call("checkpoints", {"execution_id": "api-1"})) == 2
    assert call("checkpoint", {"checkpoint_id": cid})["name"] == "s"
    assert len(call("branch", {"checkpoint_id": cid})) == 1
    assert base64.b64decode(call("read_state", {"checkpoint_id": cid})["data"]) == b"x" * 10_000
    assert call("read_state", {"checkpoint_id": cid, "view": True})["view"] is None  # raw bytes: no codec
    piece = call("upload", {"data": b64(b"in")})
    assert call("upload", {"upload": piece["upload"], "data": b64(b"put")})["size"] == 5
    assert call("upload", {"upload": "nope", "data": b64(b"x")}, expect=409)["code"] == "invalid_state"
    page = call("executions.page", {"limit": 1})
    assert [e["id"] for e in page["executions"]] == ["api-1"] and page["next"] is None
    assert call("executions.page", {"status": "failed"})["executions"] == []
    assert call("executions.page", {"status": "lost"}, expect=400)["code"] == "invalid_argument"
    trail = call("audit", {"limit": 3, "action": "checkpoint."})
    assert [e["action"] for e in trail["entries"]] == ["checkpoint.create"] * 2 and trail["head"]["seq"] > 2
    assert call("policy.validate", {"text": "policies:\n  - nme: x\n"})["errors"][0]["line"] == 2
    assert call("policy.validate", {"text": "version: 1\n"})["valid"]
    me = call("whoami")
    assert (me["identity"], me["read_only"], me["may"]["control.delete"]) == ("loopback", False, True)
    assert call("cluster")["configured"] is False
    assert call("report", {"period": "2026-11"})["period"]["label"] == "2026-11"
    assert daemon.post("report", {"period": "2026-11", "format": "pdf"}, raw_answer=True)[1][:5] == b"%PDF-"
    assert call("fork", {"execution_id": "api-1", "at": cid, "new_execution_id": "api-2"})["id"] == "api-2"
    assert call("rollback", {"execution_id": "api-1", "to": "s", "reason": "test"})["kind"] == "rollback"
    assert call("verify")["problems"] == []
    head = call("audit_head")
    assert call("verify")["audit"]["head"] == head
    assert call("verify", {"expect_head": f"{head['seq']}:{head['hash']}"})["audit"]["problems"] == []
    policy = "rules:\n  - trigger: timeout_error\n    actions:\n      - retry: {max_attempts: 2}\n"
    call("apply_policy", {"tenant": "default", "scope": "global", "text": policy})
    assert len(call("policy_versions", {"tenant": "default"})) == 1
    call("policy_version", {"tenant": "default", "scope": "global"})
    assert call("policy_defaults", {"tenant": "default"})["layers"] == ["global v1"]
    rec = call("start_recovery", {"execution_id": "api-1", "agent": "a", "kind": "timeout_error", "message": "slow"})
    assert call("recovery.next_directive", {"recovery": rec["recovery"]})["name"] == "retry"
    call("recovery.done", {"recovery": rec["recovery"], "ok": True})
    call("recovery.recovered", {"recovery": rec["recovery"]})
    assert call("recovery.record", {"recovery": rec["recovery"]})["outcome"] == "recovered"
    call("recovery.close", {"recovery": rec["recovery"]})
    assert [f["kind"] for f in call("failures", {"execution_id": "api-1"})] == ["timeout_error"]
    call("recovery_metrics")
    m = call("metrics", {"since": "1h", "by": ["workflow"]})
    assert m["totals"]["started"] >= 1 and m["totals"]["failures_by_type"] == {"timeout_error": 1}, m
    assert m["by"] == ["workflow"] and m["groups"], m
    assert "workflow, agent" in call("metrics", {"by": "colour"}, expect=400)["message"]
    call("record_spans", {"spans": []})
    call("flush_spans")
    assert call("spans", {"execution_id": "api-1"}) == []
    assert call("agent_graph", {"execution_id": "api-1"}) == {"agents": [], "edges": []}
    call("stats")
    cancelled = call("control", {"action": "cancel", "execution_id": "api-1", "reason": "test", "by": "ops"})
    assert (cancelled["result"], cancelled["status"]) == ("applied", "cancelled")
    assert call("control", {"action": "retry", "execution_id": "api-1"})["status"] == "pending"
    assert call("control", {"action": "resume", "execution_id": "api-1"}, expect=409)["code"] == "invalid_state"
    assert call("control", {"action": "recover", "execution_id": "api-1"}, expect=409)["code"] == "invalid_state"
    assert call("alerts") == {"state": {"alerts": {}, "evaluated_ms": 0}, "rules": None}
    assert "no alert rules are evaluated here" in call("alerts.ack", {"rule": "r"}, expect=400)["message"]
    # Keys: while one exists, loopback callers need one too; all revoked, the daemon is open again.
    root = call("keys.create", {"name": "root", "tenant": "*", "roles": ["admin"]})["secret"]
    made = call("keys.create", {"name": "ci", "tenant": "acme", "roles": ["worker"]}, key=root)
    assert made["secret"].startswith("omk_") and made["key"]["roles"] == ["worker"]
    assert daemon.post("executions")[0] == 401
    assert call("keys.list", key=made["secret"], expect=403)["code"] == "forbidden"
    assert [k["name"] for k in call("keys.list", key=root)] == ["root", "ci"]
    assert call("keys.revoke", {"key": "ci"}, key=root)["revoked_by"] == "key:root"
    assert call("keys.revoke", {"key": "root"}, key=root)["name"] == "root"
    assert daemon.post("executions")[0] == 200
    page = call("events", {"since": 0, "types": ["execution.*"], "execution_id": "api-1", "limit": 2})
    assert [e["type"] for e in page["events"]] == ["io.omium.execution.started", "io.omium.execution.completed"]
    cancel_event = call("events", {"types": ["execution.cancelled"]})["events"][0]
    assert (cancel_event["subject"], cancel_event["data"]) == ("api-1", {"by": "ops", "reason": "test"})
    assert call("events", {"since": page["cursor"], "wait_ms": 10, "types": ["execution.started"]})["events"] == []
    assert call("events", {"types": ["nope"]}, expect=400)["code"] == "invalid_argument"
    assert call("delete_execution", {"execution_id": "api-2"})["deleted"] >= 1

    # Bad input: named, answered as {code, message}, and nothing changes.
    nf = call("execution", {"execution_id": "nope"}, expect=404)
    assert nf["code"] == "execution_not_found"
    bad = call("history", {"execution_id": 5}, expect=400)
    assert bad["message"] == 'invalid argument: history: argument "execution_id" must be a string, not 5'
    missing = call("rollback", {}, expect=400)
    assert 'argument "execution_id" (a string) is missing' in missing["message"]
    status, body = daemon.post("no_such_method")
    assert status == 400 and '"no_such_method" is not a method of this server' in body["message"]
    status, body = daemon.post("history", raw=b"{not json")
    assert status == 400 and "history: not JSON" in body["message"]
    status, body = daemon.post("run.reserve", {"run": "01J00000000000000000000000"})
    assert status == 409 and "is not open on this daemon" in body["message"]
    assert call("execution", {"execution_id": "api-1"})["checkpoint_count"] == 3

    documented = {
        p.removeprefix("/v1/") for p in yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())["paths"] if p.startswith("/v1/")
    }
    missing_from_test = (
        documented
        - checked
        - {
            "health",
            "status",
            "run.fail",
            "run.pause",
            "recovery.set_analysis",
            "recovery.failed",
            "recovery.escalated",
            "recovery.paused",
            "recovery.rolled_back",
            "recovery.send_webhooks",
            "recovery.payload",
            "resume",
            "record_crash",
            "events/stream",  # test_events_stream_as_server_sent_events
        }
    )
    assert not missing_from_test, f"documented methods this test does not call: {missing_from_test}"
    c = http.client.HTTPConnection(daemon.host, daemon.port, timeout=10)
    c.request("GET", "/openapi.yaml")
    assert c.getresponse().read().decode() == (ROOT / "docs" / "openapi.yaml").read_text()


def test_the_embedded_only_calls_say_so(daemon):
    omium.init(url=daemon.unix_url)
    with pytest.raises(omium.OmiumError, match="not available through omium serve"):
        omium.trace_text("x")


def test_events_follow_a_daemon_with_a_long_poll(daemon, tmp_path):
    omium.init(url=daemon.unix_url)
    log = tmp_path / "steps.log"
    cursor = 0
    proc = worker("claim", daemon.http_url, log, "ev-1")
    got = []
    for e in omium.events(since=cursor, follow=True, timeout=60, execution_id="ev-1"):
        got.append(e["type"].removeprefix("io.omium."))
        if got[-1] == "execution.completed":
            break
    finished(proc)
    assert got == ["execution.started"] + ["checkpoint.created"] * 5 + ["execution.completed"]


def test_events_stream_as_server_sent_events(daemon, tmp_path):
    """GET /v1/events/stream: the feed as Server-Sent Events, read by a plain HTTP client; a
    reconnect with Last-Event-ID goes on after that event."""
    log = tmp_path / "steps.log"
    finished(worker("claim", daemon.unix_url, log, "sse-1"))

    def read_events(headers: dict[str, str], n: int) -> list[tuple[str, str, dict]]:
        c = http.client.HTTPConnection(daemon.host, daemon.port, timeout=30)
        c.request("GET", "/v1/events/stream?execution_id=sse-1", headers=headers)
        r = c.getresponse()
        assert r.status == 200 and r.getheader("content-type") == "text/event-stream"
        out, fields = [], {}
        while len(out) < n:
            line = r.fp.readline().decode().rstrip("\n")
            if line == "":
                if "data" in fields:
                    out.append((fields["id"], fields["event"], json.loads(fields["data"])))
                fields = {}
            elif not line.startswith(":"):
                k, _, v = line.partition(": ")
                fields[k] = v
        c.close()
        return out

    got = read_events({}, 7)
    assert [e for _, e, _ in got] == ["execution.started"] + ["checkpoint.created"] * 5 + ["execution.completed"]
    assert all(ce["subject"] == "sse-1" and ce["id"] == i for i, _, ce in got)
    again = read_events({"Last-Event-ID": got[4][0]}, 2)
    assert [i for i, _, _ in again] == [got[5][0], got[6][0]]
