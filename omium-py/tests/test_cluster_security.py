"""A 3-node `omium node` cluster with mutual TLS, attacked (issue 17): a peer without a
certificate, with one of another CA, or with a client's certificate cannot join, append, vote,
snapshot or change membership; plain HTTP gets nothing; a node refuses to listen beyond
loopback without TLS. Real processes, loopback only."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import omium
import pytest
from test_serve import omium_bin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def certs(out: Path, *args: str) -> list[str]:
    r = subprocess.run([omium_bin(), "--json", "cluster", "certs", "--out", str(out), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["files"]


def tls_env(d: Path, who: str) -> dict:
    return {
        **os.environ,
        "OMIUM_CLUSTER_CA": str(d / "ca.pem"),
        "OMIUM_CLUSTER_CERT": str(d / f"{who}.pem"),
        "OMIUM_CLUSTER_KEY": str(d / f"{who}-key.pem"),
    }


def post(port: int, path: str, ca: Path, who: tuple[Path, str] | None, body: bytes = b"{}") -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(ca))
    if who:
        d, name = who
        ctx.load_cert_chain(str(d / f"{name}.pem"), str(d / f"{name}-key.pem"))
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=20, context=ctx)
    c.request("POST" if path != "/healthz" else "GET", path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    text = r.read().decode(errors="replace")
    c.close()
    return r.status, text


def sse_until(port: int, ca: Path, who: tuple[Path, str] | None, done, query: str = "") -> tuple[int, list[dict]]:
    """Reads the node's event stream as `who` until `done(event)` holds: (status, events)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if who:
        d, name = who
        ctx.load_cert_chain(str(d / f"{name}.pem"), str(d / f"{name}-key.pem"))
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=ctx)
    c.request("GET", f"/events/stream{query}", headers={"Accept": "text/event-stream"})
    r = c.getresponse()
    if r.status != 200:
        return r.status, [{"refusal": r.read().decode()}]
    events, data = [], None
    deadline = time.monotonic() + 30  # a quiet stream sends a comment every 15 s
    try:
        while True:
            assert time.monotonic() < deadline, f"nothing matched in 30 s among {events}"
            line = r.readline().decode()
            assert line, f"the stream ended after {events}"
            if line.startswith("data:"):
                data = json.loads(line[5:])
            elif line in ("\n", "\r\n") and data is not None:
                events.append(data)
                if done(data):
                    return 200, events
                data = None
    finally:
        c.close()


def test_mutual_tls_cluster_refuses_strangers(tmp_path):
    ca = tmp_path / "certs"
    files = certs(ca, "--nodes", "1,2,3", "--client", "acme/store-1", "--client", "beta/store-2")
    assert {Path(f).name for f in files} >= {"ca.pem", "node-1.pem", "node-3-key.pem", "admin.pem", "client-store-1.pem"}
    assert oct((ca / "node-1-key.pem").stat().st_mode & 0o777) == "0o600"
    evil = tmp_path / "evil"
    certs(evil, "--nodes", "1", "--client", "acme/store-1")
    # A second CA in the same directory is refused: it would not be trusted by the first's.
    r = subprocess.run([omium_bin(), "cluster", "certs", "--out", str(ca), "--nodes", "4"], capture_output=True, text=True)
    assert r.returncode != 0 and "already holds a ca.pem" in r.stderr

    ports = [free_port() for _ in range(3)]
    procs: list[subprocess.Popen] = []
    admin = tls_env(ca, "admin")

    def cli(*args: str, env: dict = admin) -> subprocess.CompletedProcess:
        return subprocess.run([omium_bin(), *args], capture_output=True, text=True, timeout=60, env=env)

    try:
        for i, port in enumerate(ports, 1):
            args = [omium_bin(), "--store", str(tmp_path / f"n{i}"), "node", "--id", str(i), "--listen", f"127.0.0.1:{port}"]
            args += ["--tls-ca", str(ca / "ca.pem"), "--tls-cert", str(ca / f"node-{i}.pem"), "--tls-key", str(ca / f"node-{i}-key.pem")]
            p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            line = p.stdout.readline()
            assert "listening" in line, p.stderr.read()
            procs.append(p)
        node = f"127.0.0.1:{ports[0]}"
        r = cli("cluster", "--node", node, "init")
        assert r.returncode == 0, r.stderr
        for i in (2, 3):
            r = cli("cluster", "--node", node, "add", "--id", str(i), "--addr", f"127.0.0.1:{ports[i - 1]}")
            assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 60
        while True:
            st = json.loads(cli("--json", "cluster", "--node", node, "status").stdout)
            if len(st["voters"]) == 3 and st["leader"] is not None:
                break
            assert time.monotonic() < deadline, st
            time.sleep(0.1)

        # A client certificate works for the client API (a broadcast is agreed over the TLS log).
        client = tls_env(ca, "client-store-1")
        broadcast = ["broadcast", "job-1", "--sender", "planner", "--to", "critic", "--message", "{}"]
        r = cli("--json", "consensus", "--node", node, *broadcast, env=client)
        assert r.returncode == 0, r.stderr
        sent = json.loads(r.stdout)
        assert sent["execution_id"] == "job-1", sent

        # Agents of another tenant cannot read, acknowledge or vote on acme's messages: its ids
        # are acme's (filed as `acme␟…` in the cluster) and answers give them back unprefixed.
        def api(path: str, body: dict, who: str) -> tuple[int, object]:
            status, text = post(ports[0], path, ca / "ca.pem", (ca, who), json.dumps(body).encode())
            return status, json.loads(text) if text.startswith(("{", "[")) else text

        status, mine = api("/api/status", {"execution_id": "job-1"}, "client-store-1")
        assert status == 200 and [m["id"] for m in mine] == [sent["id"]] and mine[0]["execution_id"] == "job-1", mine
        assert api("/api/status", {"execution_id": "job-1"}, "client-store-2") == (200, [])
        for path, body in [
            ("/api/ack", {"message_id": sent["id"], "agent": "critic"}),
            ("/api/message", {"message_id": sent["id"]}),
        ]:
            status, answer = api(path, body, "client-store-2")
            assert status == 404 and "unknown message" in answer["message"] and "beta" not in json.dumps(answer), (path, status, answer)
        status, acked = api("/api/ack", {"message_id": sent["id"], "agent": "critic"}, "client-store-1")
        assert status == 200, acked
        # Beta's own message of the same execution id is beta's, apart from acme's.
        status, theirs = api("/api/broadcast", {"execution_id": "job-1", "sender": "x", "targets": ["y"], "message": {}}, "client-store-2")
        assert status == 200 and theirs["seq"] == 1, theirs
        status, everything = api("/api/status", {"execution_id": "acme\u001fjob-1"}, "admin")
        assert status == 200 and [m["id"] for m in everything] == ["acme\u001f" + sent["id"]], everything

        # The nodes' event feed (Server-Sent Events) follows the same scopes: acme sees its
        # decision with its own ids, beta only its own, an admin both as they are filed.
        status, acked = api("/api/ack", {"message_id": theirs["id"], "agent": "y"}, "client-store-2")
        assert status == 200, acked

        def decided(e: dict) -> bool:
            return e["type"] == "io.omium.consensus.reached"

        status, seen = sse_until(ports[0], ca / "ca.pem", (ca, "client-store-1"), decided)
        assert status == 200 and [e["subject"] for e in seen] == ["job-1"], seen
        assert [m["message_id"] for m in seen[0]["data"]["messages"]] == [sent["id"]], seen
        assert "\u001f" not in json.dumps(seen) and "beta" not in json.dumps(seen), seen
        status, seen = sse_until(ports[0], ca / "ca.pem", (ca, "client-store-2"), decided)
        assert status == 200 and [e["subject"] for e in seen] == ["job-1"], seen
        assert [m["message_id"] for m in seen[0]["data"]["messages"]] == [theirs["id"]], seen
        subjects: set[str] = set()

        def both(e: dict) -> bool:
            if decided(e):
                subjects.add(e["subject"])
            return len(subjects) == 2

        status, seen = sse_until(ports[0], ca / "ca.pem", (ca, "admin"), both)
        assert status == 200 and subjects == {"acme\u001fjob-1", "beta\u001fjob-1"}, seen
        status, seen = sse_until(ports[0], ca / "ca.pem", (ca, "client-store-1"), decided, "?execution_id=job-1&types=consensus.*")
        assert status == 200 and seen[0]["subject"] == "job-1", seen
        status, seen = sse_until(ports[0], ca / "ca.pem", None, decided)
        assert status == 403 and "presented no certificate" in seen[0]["refusal"], seen

        raft = ["/raft/append", "/raft/vote", "/raft/snapshot"]
        membership = ["/cluster/add", "/cluster/remove", "/cluster/init"]
        for port in ports:
            # No certificate: only liveness.
            assert post(port, "/healthz", ca / "ca.pem", None)[0] == 200
            for path in raft + membership + ["/api/ack", "/sync/executions", "/sync/pull"]:
                status, text = post(port, path, ca / "ca.pem", None)
                assert status == 403 and "presented no certificate" in text, (path, status, text)
            # A client's certificate: no Raft traffic, no membership change.
            for path in raft + membership:
                status, text = post(port, path, ca / "ca.pem", (ca, "client-store-1"))
                assert status == 403 and "omium://client/acme/store-1" in text, (path, status, text)
            # An admin's: membership yes (checked below through the CLI), Raft traffic no.
            for path in raft:
                assert post(port, path, ca / "ca.pem", (ca, "admin"))[0] == 403
            # A node certificate of another CA: the handshake fails.
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                post(port, "/raft/vote", ca / "ca.pem", (evil, "node-1"))
            # Plain HTTP to the TLS port: no answer.
            with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("POST", "/cluster/add", body=b"{}", headers={"Content-Type": "application/json"})
                c.getresponse().read()

        # Stores sync with their client certificates, each within its tenant: acme's store
        # pushes acme's execution; beta's cannot pull it (as if it did not exist).
        nodes = ",".join(f"127.0.0.1:{p}" for p in ports)
        for k, v in tls_env(ca, "client-store-1").items():
            if k.startswith("OMIUM_CLUSTER_"):
                os.environ[k] = v
        try:
            omium.init(path=tmp_path / "acme-store", remote=nodes, remote_durability="sync", project="acme")

            @omium.checkpoint
            def invoice() -> str:
                return "sent"

            @omium.workflow("billing")
            def billing() -> str:
                return invoice()

            assert billing.run(execution_id="acme-1") == "sent"
            omium.shutdown()
            os.environ["OMIUM_CLUSTER_CERT"] = str(ca / "client-store-2.pem")
            os.environ["OMIUM_CLUSTER_KEY"] = str(ca / "client-store-2-key.pem")
            omium.init(path=tmp_path / "beta-store", remote=nodes, project="beta")
            with pytest.raises(omium.ExecutionNotFoundError):
                omium.pull("acme-1")
            omium.shutdown()
            os.environ["OMIUM_CLUSTER_CERT"] = str(ca / "client-store-1.pem")
            os.environ["OMIUM_CLUSTER_KEY"] = str(ca / "client-store-1-key.pem")
            omium.init(path=tmp_path / "acme-2", remote=nodes, project="acme", lease_ttl=1.0)
            assert omium.pull("acme-1") is not None
        finally:
            omium.shutdown()
            for k in ("OMIUM_CLUSTER_CA", "OMIUM_CLUSTER_CERT", "OMIUM_CLUSTER_KEY"):
                os.environ.pop(k, None)

        # A stranger trying to add itself through the CLI with the other CA's certificates.
        r = cli("cluster", "--node", node, "add", "--id", "9", "--addr", "127.0.0.1:1", env=tls_env(evil, "node-1"))
        assert r.returncode != 0 and "TLS" in r.stderr and "same cluster CA" in r.stderr, r.stderr
        st = json.loads(cli("--json", "cluster", "--node", node, "status").stdout)
        assert sorted(st["voters"]) == [1, 2, 3], st
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait(10)


def test_a_node_needs_tls_beyond_loopback(tmp_path):
    def start(*args: str) -> str:
        cmd = [omium_bin(), "--store", str(tmp_path / "n"), "node", "--id", "1", *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert r.returncode != 0
        return r.stderr

    assert "--insecure-loopback to speak plain HTTP on 127.0.0.1" in start("--listen", "127.0.0.1:0")
    assert "is not a loopback address" in start("--listen", "0.0.0.0:0", "--insecure-loopback")
