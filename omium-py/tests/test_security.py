"""`omium serve` as an attacker meets it (issue 17): keys with tenants and roles over TLS, a
tenant that cannot see another's executions, a reader that cannot write, a revoked key that
stops at once, rate limits, slow and surplus connections. Real daemon, loopback only."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import omium
import pytest
import trustme
from test_serve import Daemon, omium_bin


def create_key(store: Path, name: str, tenant: str, *roles: str, env: dict | None = None, url: str | None = None) -> str:
    cmd = [omium_bin(), "--store", str(store), "--json", "keys", "create", "--name", name, "--tenant", tenant]
    for r in roles:
        cmd += ["--role", r]
    if url:
        cmd += ["--url", url]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    secret = json.loads(out.stdout)["secret"]
    assert secret.startswith("omk_")
    return secret


@pytest.fixture
def tls(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {n: tmp_path / f"{n}.pem" for n in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(paths["ca"])
    paths["cert"].write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(paths["key"])
    return {**paths, "ca_obj": ca}


def call(d: Daemon, method: str, body: object, key: str | None, ca: Path | None = None) -> tuple[int, dict, dict]:
    if ca:
        c = http.client.HTTPSConnection(d.host, d.port, timeout=30, context=ssl.create_default_context(cafile=str(ca)))
    else:
        c = http.client.HTTPConnection(d.host, d.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    c.request("POST", f"/v1/{method}", body=json.dumps(body).encode(), headers=headers)
    r = c.getresponse()
    answer = json.loads(r.read() or b"null")
    c.close()
    return r.status, answer, dict(r.getheaders())


def test_tenants_roles_and_revocation_over_tls(tmp_path, tls, monkeypatch):
    store = tmp_path / "store"
    admin = create_key(store, "root", "*", "admin")
    acme = create_key(store, "acme-worker", "acme", "worker")
    reader = create_key(store, "acme-dash", "acme", "reader")
    beta = create_key(store, "beta-worker", "beta", "worker")
    d = Daemon(store, "--http", "127.0.0.1:0", "--tls-cert", str(tls["cert"]), "--tls-key", str(tls["key"]))
    url = f"https://127.0.0.1:{d.port}"
    monkeypatch.setenv("OMIUM_CA_FILE", str(tls["ca"]))
    try:
        # The binding over https, with tenant acme's worker key: its runs are acme's.
        omium.init(url=url, api_key=acme)

        @omium.checkpoint
        def charge(x: int) -> int:
            return x + 1

        @omium.workflow("billing")
        def billing(x: int) -> int:
            return charge(x)

        assert billing.run(1, execution_id="a-1") == 2
        assert {e.id: e.tenant for e in omium.executions()} == {"a-1": "acme"}

        # Tenant beta: another tenant's execution does not exist for it, in every way of asking.
        omium.init(url=url, api_key=beta)
        with pytest.raises(omium.ExecutionNotFoundError):
            omium.history("a-1")
        with pytest.raises(omium.ExecutionNotFoundError):
            omium.rollback("a-1")
        assert all(e.id != "a-1" for e in omium.executions())
        status, body, _ = call(d, "begin", {"execution_id": "a-1"}, beta, tls["ca"])
        assert status == 404 and body["code"] == "execution_not_found", body
        status, body, _ = call(d, "events", {}, beta, tls["ca"])
        assert status == 200 and body["events"] == [], body
        status, body, _ = call(d, "stats", {}, beta, tls["ca"])
        assert status == 403 and body["code"] == "forbidden" and "store-wide" in body["message"], body
        # Every tenant's figures (Prometheus) are store-wide too; the status hides the store path.
        ctx = ssl.create_default_context(cafile=str(tls["ca"]))
        for path, want in (("/metrics", 403), ("/v1/status", 200)):
            c = http.client.HTTPSConnection(d.host, d.port, timeout=30, context=ctx)
            c.request("GET", path, headers={"Authorization": f"Bearer {beta}"})
            r = c.getresponse()
            got = r.read()
            assert r.status == want, (path, got)
        assert json.loads(got)["store"] is None and json.loads(got)["caller"]["tenant"] == "beta"

        # A reader of acme sees acme's execution but cannot change it.
        omium.init(url=url, api_key=reader)
        names = [c.name for c in omium.history("a-1")]
        assert [n.rsplit(".", 1)[-1] for n in names] == ["charge"]
        with pytest.raises(omium.ForbiddenError, match="may not call rollback"):
            omium.rollback("a-1")
        status, body, _ = call(d, "control", {"execution_id": "a-1", "action": "pause"}, reader, tls["ca"])
        assert status == 403 and "may not call control (a `operate` action)" in body["message"], body
        omium.shutdown()

        # The admin issues and revokes through the daemon (it holds the store): the revoked key
        # stops at its next request, no restart.
        env = {**os.environ, "OMIUM_API_KEY": admin, "OMIUM_CA_FILE": str(tls["ca"])}
        ops = create_key(store, "acme-ops", "acme", "operator", env=env, url=url)
        status, body, _ = call(d, "fork", {"execution_id": "a-1", "at": names[0], "new_execution_id": "a-2"}, ops, tls["ca"])
        assert status == 200, body
        out = subprocess.run([omium_bin(), "--json", "keys", "revoke", "acme-dash", "--url", url], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        status, body, _ = call(d, "history", {"execution_id": "a-1"}, reader, tls["ca"])
        assert status == 401 and "revoked" in body["message"], body
        listed = subprocess.run([omium_bin(), "--json", "keys", "list", "--url", url], capture_output=True, text=True, env=env)
        keys = {k["name"]: k for k in json.loads(listed.stdout)}
        assert keys["acme-dash"]["revoked_by"] == "key:root" and "sha256" not in keys["acme-dash"]
        assert not any(reader[20:] in json.dumps(k) for k in keys.values())

        # Without a key, or with a made-up one: 401. Plain HTTP to the TLS port: no answer.
        assert call(d, "executions", {}, None, tls["ca"])[0] == 401
        assert call(d, "executions", {}, "omk_0123456789abcdef_forged", tls["ca"])[0] == 401
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            call(d, "executions", {}, admin)
        # A certificate from another CA is refused by the client.
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(other)
        monkeypatch.setenv("OMIUM_CA_FILE", str(other))
        with pytest.raises(omium.ServerUnavailableError, match="TLS"):
            omium.init(url=url, api_key=admin)
    finally:
        try:
            omium.shutdown()
        finally:
            d.stop()

    # The audit log names each caller: the worker's steps, the operator's pause, the denials.
    audit = subprocess.run([omium_bin(), "--store", str(store), "--json", "audit", "--limit", "1000"], capture_output=True, text=True)
    assert audit.returncode == 0, audit.stderr
    entries = json.loads(audit.stdout)
    by = {(e["action"], e["actor"]) for e in entries}
    assert ("execution.create", "key:acme-worker") in by
    assert ("checkpoint.create", "key:acme-worker") in by
    assert any(actor == "key:acme-ops" for _, actor in by), by
    denials = [e for e in entries if e["action"] == "api.deny"]
    assert {json.loads(e["detail"])["caller"] for e in denials} >= {"key:beta-worker", "key:acme-dash"}
    assert any(e["action"] == "api.unauthenticated" for e in entries)
    assert any(e["action"] == "key.revoke" and e["actor"] == "key:root" for e in entries)


def test_rate_limits_slow_clients_and_connection_caps(tmp_path):
    store = tmp_path / "store"
    flood = create_key(store, "flood", "*", "reader")
    calm = create_key(store, "calm", "*", "reader")
    d = Daemon(store, "--http", "127.0.0.1:0", "--rate-limit", "50", "--header-timeout", "1", "--max-connections", "8")
    try:
        # 1,000 requests on one keep-alive connection: the first ~100 (the bucket) pass, the rest
        # get 429 with Retry-After, and nothing else.
        c = http.client.HTTPConnection(d.host, d.port, timeout=30)
        codes: dict[int, int] = {}
        retry_after = set()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {flood}"}
        for _ in range(1000):
            c.request("POST", "/v1/executions", body=b"{}", headers=headers)
            r = c.getresponse()
            body = json.loads(r.read())
            codes[r.status] = codes.get(r.status, 0) + 1
            if r.status == 429:
                assert body["code"] == "rate_limited"
                retry_after.add(r.getheader("Retry-After"))
        c.close()
        assert set(codes) == {200, 429} and 90 <= codes[200] < 400, codes
        assert retry_after == {"1"}, retry_after
        # Another key is not slowed by it; the flooder gets through again after Retry-After.
        assert call(d, "executions", {}, calm)[0] == 200
        deadline = time.monotonic() + 10
        while call(d, "executions", {}, flood)[0] == 429:
            assert time.monotonic() < deadline
            time.sleep(0.05)

        # A slow client (headers never finished) is dropped after the header timeout.
        slow = socket.create_connection((d.host, d.port))
        slow.sendall(b"POST /v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        slow.settimeout(10)
        started = time.monotonic()
        data = b""
        while chunk := slow.recv(4096):
            data += chunk
        elapsed = time.monotonic() - started
        assert 0.5 < elapsed < 9, elapsed
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
        slow.close()

        # Connections over the cap are closed at once; the ones within it still work.
        held = [socket.create_connection((d.host, d.port)) for _ in range(8)]
        extra = socket.create_connection((d.host, d.port))
        extra.settimeout(5)
        assert extra.recv(16) == b""
        extra.close()
        for s in held:
            s.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                if call(d, "executions", {}, calm)[0] == 200:
                    break
            except (ConnectionError, http.client.HTTPException):
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        d.stop()


def test_large_states_inputs_and_outputs_go_up_in_pieces_below_the_body_limit(tmp_path):
    """A 40 MiB state, a 20 MiB input and a 20 MiB output through a daemon that takes bodies of
    at most 16 MiB: the binding uploads them in pieces (`run.upload`, `upload`) and the calls
    name the uploads; one body over the limit gets 413."""
    d = Daemon(tmp_path / "store", "--http", "127.0.0.1:0", "--max-body", str(16 << 20))
    big = os.urandom(40 << 20)
    given = os.urandom(20 << 20)
    try:
        omium.init(url=d.http_url)

        @omium.checkpoint
        def blob() -> bytes:
            return big

        @omium.workflow("big")
        def wf(data: bytes) -> bytes:
            return data[::-1] + len(blob()).to_bytes(8, "big")

        out = wf.run(given, execution_id="big-1")
        assert out == given[::-1] + (40 << 20).to_bytes(8, "big")
        (c,) = omium.history("big-1")
        assert c.load() == big
        # Done: the stored output comes back; the stored input is the one sent in pieces.
        assert wf.run(given, execution_id="big-1") == out
        status, stored, _ = call(d, "execution_input", {"execution_id": "big-1"}, None)
        assert status == 200 and len(base64.b64decode(stored["data"])) > 20 << 20
        status, body, _ = call(d, "executions", {"pad": "x" * (17 << 20)}, None)
        assert status == 413 and "larger than this daemon takes (--max-body)" in body["message"], body
        assert call(d, "executions", {}, None)[0] == 200
    finally:
        try:
            omium.shutdown()
        finally:
            d.stop()


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path, tls):
    """The certificate files are replaced (as cert-manager renews a Secret): new connections
    get the new certificate within the check interval; the daemon keeps serving throughout; a
    broken replacement leaves the last good certificate in use."""
    from cryptography import x509

    d = Daemon(tmp_path / "store", "--http", "127.0.0.1:0", "--tls-cert", str(tls["cert"]), "--tls-key", str(tls["key"]))

    def served_serial() -> int:
        ctx = ssl.create_default_context(cafile=str(tls["ca"]))
        with socket.create_connection((d.host, d.port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number

    def wait_for(serial: int) -> None:
        deadline = time.monotonic() + 20
        while served_serial() != serial:
            assert time.monotonic() < deadline, "the renewed certificate was not served"
            time.sleep(0.05)

    try:
        first = x509.load_pem_x509_certificate(tls["cert"].read_bytes()).serial_number
        assert served_serial() == first
        # Renewed by the same CA, the files replaced in place.
        new = tls["ca_obj"].issue_cert("127.0.0.1", "localhost")
        tls["cert"].write_bytes(b"".join(p.bytes() for p in new.cert_chain_pems))
        new.private_key_pem.write_to_path(tls["key"])
        second = x509.load_pem_x509_certificate(new.cert_chain_pems[0].bytes()).serial_number
        wait_for(second)
        assert call(d, "executions", {}, None, ca=tls["ca"])[0] == 200
        # A broken file: the daemon goes on with the certificate it has, and says why. (What it
        # said so far is read first: the cert and key files above were not replaced at once.)
        fd = d.proc.stderr.fileno()
        os.set_blocking(fd, False)

        def said() -> str:
            try:
                return os.read(fd, 1 << 16).decode(errors="replace")
            except BlockingIOError:
                return ""

        said()
        tls["cert"].write_text("not a certificate")
        err, deadline = "", time.monotonic() + 20
        while "cannot be used" not in err:
            assert time.monotonic() < deadline, err
            assert served_serial() == second
            err += said()
            time.sleep(0.05)
        assert served_serial() == second
        os.set_blocking(fd, True)
    finally:
        d.stop()
