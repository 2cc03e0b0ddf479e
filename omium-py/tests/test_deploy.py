"""The deployment artifacts under deploy/, checked without Docker or a Kubernetes cluster.

- The Kubernetes manifests (deploy/k8s/*.yaml) validate against the Kubernetes JSON schemas
  that the kubernetes-validate package bundles (strict: unknown fields are errors), with every
  socket connection refused, so the check is offline; a broken copy is rejected, naming the field.
- deploy/entrypoint.sh parses (`sh -n`) and, run with a fake `omium` on PATH that records its
  arguments, derives the node id, the advertised address, the join address or the bootstrap from
  the pod's host name.
- deploy/Dockerfile and .dockerignore state what docs/deployment.md says they do.

No store is needed: the `store` fixture of conftest.py is not used.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

kubernetes_validate = pytest.importorskip("kubernetes_validate.utils", reason="pip install kubernetes-validate")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
ENTRYPOINT = DEPLOY / "entrypoint.sh"

# The oldest Kubernetes the manifests target, and the newest schemas the package bundles.
VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]

LABELS = {"app.kubernetes.io/name": "omium", "app.kubernetes.io/component": "node"}


@pytest.fixture
def offline(monkeypatch):
    """Every socket connection fails: the validation must not fetch anything."""

    def refuse(self, *args, **kwargs):
        raise OSError("network access attempted during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def manifests() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def one(kind: str, name: str | None = None) -> dict:
    found = [d for d in by_kind(kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def validate(doc: dict, version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


# --- Kubernetes manifests -------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_validate_offline_and_strict(offline, version):
    docs = manifests()
    kinds = sorted(doc["kind"] for _, doc in docs)
    assert kinds == ["ConfigMap", "NetworkPolicy", "PodDisruptionBudget", "Service", "Service", "StatefulSet"]
    for name, doc in docs:
        try:
            validate(doc, version)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} at {where}: {e.message}")
    api = {doc["kind"]: doc["apiVersion"] for _, doc in docs}
    assert api == {
        "ConfigMap": "v1",
        "Service": "v1",
        "StatefulSet": "apps/v1",
        "PodDisruptionBudget": "policy/v1",
        "NetworkPolicy": "networking.k8s.io/v1",
    }


def test_a_wrong_type_is_rejected_naming_the_field(offline):
    sts = copy.deepcopy(one("StatefulSet"))
    sts["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError) as err:
        validate(sts, VERSIONS[0])
    assert list(err.value.path) == ["spec", "replicas"]
    assert "'three' is not of type 'integer'" in err.value.message


def test_a_misspelled_field_is_rejected_naming_it(offline):
    sts = copy.deepcopy(one("StatefulSet"))
    sts["spec"]["podManagmentPolicy"] = sts["spec"].pop("podManagementPolicy")
    with pytest.raises(kubernetes_validate.ValidationError) as err:
        validate(sts, VERSIONS[0])
    assert "podManagmentPolicy" in err.value.message
    container = copy.deepcopy(one("StatefulSet"))
    probe = container["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError) as err:
        validate(container, VERSIONS[0])
    assert "paht" in err.value.message


@pytest.mark.parametrize(
    ("good", "broken", "named"),
    [
        ("  replicas: 3\n", '  replicas: "three"\n', "spec.replicas: 'three' is not of type 'integer'"),
        ("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", "'readOnlyRootFileSystem' was unexpected"),
        ("          containerPort: 7001\n", "          containerPort: seven\n", "containerPort: 'seven' is not of type 'integer'"),
    ],
)
def test_a_broken_copy_of_the_manifest_file_is_rejected(offline, tmp_path, capsys, good, broken, named):
    text = (K8S / "statefulset.yaml").read_text()
    assert text.count(good) == 1
    copy_path = tmp_path / "statefulset.yaml"
    copy_path.write_text(text.replace(good, broken))
    assert kubernetes_validate.validate_file(str(copy_path), VERSIONS[0], True, False, False) == 1
    out = capsys.readouterr().out
    assert "ERROR" in out and named in out, out
    # The real file passes the same call.
    assert kubernetes_validate.validate_file(str(K8S / "statefulset.yaml"), VERSIONS[0], True, False, False) == 0


def test_a_removed_api_version_is_rejected(offline):
    pdb = copy.deepcopy(one("PodDisruptionBudget"))
    pdb["apiVersion"] = "policy/v1beta1"  # removed in Kubernetes 1.25
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate(pdb, VERSIONS[0])


def test_the_services_statefulset_and_budget_fit_together():
    peers = one("Service", "omium-peers")
    assert peers["spec"]["clusterIP"] == "None"
    assert peers["spec"]["publishNotReadyAddresses"] is True
    client = one("Service", "omium")
    assert client["spec"].get("clusterIP") != "None"
    sts = one("StatefulSet")
    spec = sts["spec"]
    assert spec["serviceName"] == "omium-peers"
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["selector"]["matchLabels"] == LABELS
    assert spec["template"]["metadata"]["labels"] == LABELS
    for svc in (peers, client):
        assert svc["spec"]["selector"] == LABELS
        assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(7001, "consensus")]
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": LABELS}}

    pod = spec["template"]["spec"]
    assert pod["enableServiceLinks"] is False  # else OMIUM_PORT=tcp://... from the Service "omium"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["ports"] == [{"name": "consensus", "containerPort": 7001, "protocol": "TCP"}]
    # Mutual TLS (docs/security.md): probes speak HTTPS without a certificate; the node lets them
    # reach /healthz and /readyz only. The certificates come from the Secret omium-tls.
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "consensus", "scheme": "HTTPS"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "consensus", "scheme": "HTTPS"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OMIUM_TLS_DIR"] == "/etc/omium/tls"
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["tls"] == "/etc/omium/tls"
    (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert tls["secret"]["secretName"] == "omium-tls"
    policy = one("NetworkPolicy")
    assert policy["spec"]["podSelector"] == {"matchLabels": LABELS}
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 7001, "protocol": "TCP"}]
    assert {"requests", "limits"} <= set(container["resources"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == "/data"
    assert [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]] == ["data"]

    config = one("ConfigMap")
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in container["envFrom"]
    assert config["data"]["OMIUM_STORE"] == "/data/store"
    assert config["data"]["OMIUM_PORT"] == "7001"
    assert config["data"]["OMIUM_REPLICAS"] == str(spec["replicas"])
    env = {e["name"]: e for e in container["env"]}
    assert env["OMIUM_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["OMIUM_PEER_SERVICE"]["value"] == "omium-peers.$(POD_NAMESPACE).svc"
    assert list(env).index("POD_NAMESPACE") < list(env).index("OMIUM_PEER_SERVICE")


# --- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_builds_the_cli_and_runs_the_entrypoint_as_non_root():
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == ["FROM rust:1-bookworm AS build", "FROM debian:bookworm-slim AS runtime"]
    text = "\n".join(lines)
    assert "libclang-dev" in text
    assert "cargo build --release --locked -p omium-cli" in text
    runtime = text.split("FROM debian:bookworm-slim AS runtime", 1)[1]
    assert "COPY --from=build /usr/local/bin/omium /usr/local/bin/omium" in runtime
    assert "COPY deploy/entrypoint.sh /usr/local/bin/omium-entrypoint" in runtime
    (user,) = [line for line in runtime.splitlines() if line.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in ("0", "root")
    assert 'VOLUME ["/data"]' in runtime
    assert "EXPOSE 7001 7700" in runtime
    assert 'ENTRYPOINT ["/usr/local/bin/omium-entrypoint"]' in runtime
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"target/", ".venv/", "node_modules/", ".git/"} <= set(ignored)


def test_compose_runs_three_nodes_named_like_the_statefulset_pods():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert sorted(services) == ["omium-0", "omium-1", "omium-2"]
    for name, svc in services.items():
        assert svc["hostname"] == name
        assert svc["volumes"] == [f"{name}:/data"]
        assert svc["environment"]["OMIUM_PEER_SERVICE"] == ""
        assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert svc["read_only"] is True
    assert (DEPLOY / ".." / services["omium-0"]["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


# --- entrypoint.sh ----------------------------------------------------------------------------

# Records each call's arguments in $FAKE_DIR/calls, one line per call. `node` sleeps like a
# server (until killed); `cluster ... status` answers like `omium --json cluster status`: the
# local node (127.0.0.x) lists the voters in $FAKE_DIR/voters, other pods list $FAKE_PEERS
# (a JSON array; "down": the pod does not answer), except that the pod whose name contains
# $FAKE_DOWN does not answer the first $FAKE_DOWN_CALLS times.
FAKE_OMIUM = """#!/bin/sh
echo "$*" >>"$FAKE_DIR/calls"
case " $* " in
    *" node "*)
        id=; prev=
        for a; do [ "$prev" = --id ] && id=$a; prev=$a; done
        case " $* " in *" --join "*) echo "1,2,$id" >"$FAKE_DIR/voters" ;; esac
        exec sleep 60 ;;
    *" status "*)
        case " $* " in
            *" --node 127.0.0."*) echo "{\\"id\\":0,\\"voters\\":[$(cat "$FAKE_DIR/voters" 2>/dev/null)],\\"nodes\\":{}}" ;;
            *) [ "${FAKE_PEERS:-[]}" = down ] && exit 1
               case " $* " in *"${FAKE_DOWN:-none}"*)
                   echo x >>"$FAKE_DIR/down"
                   [ "$(wc -l <"$FAKE_DIR/down")" -le "${FAKE_DOWN_CALLS:-0}" ] && exit 1 ;;
               esac
               echo "{\\"id\\":0,\\"voters\\":${FAKE_PEERS:-[]},\\"nodes\\":{}}" ;;
        esac ;;
    *" init "*) echo 1 >"$FAKE_DIR/voters"; echo '{}' ;;
    *" add "*) echo 1,2,3 >"$FAKE_DIR/voters"; echo '{}' ;;
    *) echo "fake omium: $*" ;;
esac
"""


class Entrypoint:
    def __init__(self, tmp_path: Path):
        self.dir = tmp_path
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        fake = bin_dir / "omium"
        fake.write_text(FAKE_OMIUM)
        fake.chmod(0o755)
        self.store = tmp_path / "data" / "store"
        self.store.mkdir(parents=True)
        self.marker = Path(f"{self.store}.node-id")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("OMIUM_", "FAKE_"))}
        self.env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_DIR=str(tmp_path), OMIUM_STORE=str(self.store))

    def calls(self) -> list[str]:
        path = self.dir / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def start(self, *args: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            ["sh", str(ENTRYPOINT), *args],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run_until(self, done, **env: str) -> tuple[list[str], str]:
        """Starts the entrypoint, waits until done(self) holds, stops it with SIGTERM as
        Kubernetes does, and returns the recorded calls and its stderr."""
        proc = self.start(**env)
        try:
            # Generous: the entrypoint polls every 2 s, and the machine may be loaded.
            deadline = time.monotonic() + 60
            while not done(self):
                if proc.poll() is not None:
                    pytest.fail(f"the entrypoint exited with {proc.returncode}: {proc.stderr.read()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"timed out; calls: {self.calls()}")
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        return self.calls(), err


@pytest.fixture
def entry(tmp_path):
    return Entrypoint(tmp_path)


def node_call(calls: list[str]) -> str:
    (line,) = [c for c in calls if " node " in f" {c} "]
    return line


def test_entrypoint_parses_as_posix_sh():
    subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True)
    if shutil.which("dash"):
        subprocess.run(["dash", "-n", str(ENTRYPOINT)], check=True)
    text = ENTRYPOINT.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert "\nset -eu\n" in text


def test_pod_2_is_node_3_and_joins_through_pod_0(entry):
    calls, _ = entry.run_until(lambda e: e.marker.exists(), HOSTNAME="omium-2")
    assert node_call(calls) == (
        f"--store {entry.store} node --id 3 --listen 0.0.0.0:7001 --advertise omium-2.omium-peers:7001 --join omium-0.omium-peers:7001"
    )
    assert not any(" init" in c for c in calls)
    assert entry.marker.read_text() == "3\n"


def test_pod_0_bootstraps_once_every_other_pod_answers(entry):
    calls, err = entry.run_until(lambda e: e.marker.exists(), HOSTNAME="omium-0", FAKE_PEERS="[]")
    assert node_call(calls) == f"--store {entry.store} node --id 1 --listen 0.0.0.0:7001 --advertise omium-0.omium-peers:7001"
    assert "--json cluster --node omium-1.omium-peers:7001 status" in calls
    assert "--json cluster --node omium-2.omium-peers:7001 status" in calls
    assert calls.count("cluster --node 127.0.0.1:7001 init") == 1
    assert entry.marker.read_text() == "1\n"
    assert "initialising one with node 1" in err


def test_pod_0_reaches_its_node_at_a_specific_listen_address(entry):
    calls, _ = entry.run_until(lambda e: e.marker.exists(), HOSTNAME="omium-0", OMIUM_LISTEN="127.0.0.5:9000")
    # Loopback without OMIUM_TLS_DIR: plain HTTP, which the node allows only there.
    assert node_call(calls).endswith("--listen 127.0.0.5:9000 --advertise omium-0.omium-peers:7001 --insecure-loopback")
    assert calls.count("cluster --node 127.0.0.5:9000 init") == 1


def test_tls_dir_gives_the_node_and_the_script_their_certificates(entry, tmp_path):
    tls = tmp_path / "tls"
    tls.mkdir()
    for f in ("ca.crt", "tls.crt", "tls.key"):
        (tls / f).write_text("x")
    calls, _ = entry.run_until(lambda e: e.marker.exists(), HOSTNAME="omium-2", OMIUM_TLS_DIR=str(tls))
    flags = f"--tls-ca {tls}/ca.crt --tls-cert {tls}/tls.crt --tls-key {tls}/tls.key"
    assert node_call(calls).endswith(f"--join omium-0.omium-peers:7001 {flags}")
    (tls / "tls.key").unlink()
    proc = entry.start(HOSTNAME="omium-2", OMIUM_TLS_DIR=str(tls))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and f"OMIUM_TLS_DIR={tls} has no readable tls.key" in err


def test_pod_0_does_not_bootstrap_while_another_pod_does_not_answer(entry):
    def asked_peers_twice(e):
        return e.calls().count("--json cluster --node omium-2.omium-peers:7001 status") >= 2

    calls, err = entry.run_until(asked_peers_twice, HOSTNAME="omium-0", FAKE_PEERS="down")
    assert not any(" init" in c for c in calls)
    assert not entry.marker.exists()
    assert "waiting for 2 of the other 2 pod(s) to answer" in err


def test_pod_0_counts_a_pod_that_answered_once(entry):
    calls, err = entry.run_until(lambda e: e.marker.exists(), HOSTNAME="omium-0", FAKE_DOWN="omium-2.", FAKE_DOWN_CALLS="2")
    assert calls.count("--json cluster --node omium-1.omium-peers:7001 status") == 1
    assert calls.count("--json cluster --node omium-2.omium-peers:7001 status") == 3
    assert calls.count("cluster --node 127.0.0.1:7001 init") == 1
    assert "waiting for 1 of the other 2 pod(s) to answer" in err


def test_pod_0_with_a_new_volume_joins_the_existing_cluster(entry):
    calls, _ = entry.run_until(lambda e: e.marker.exists(), HOSTNAME="omium-0", FAKE_PEERS="[2,3]")
    assert not any(" init" in c for c in calls)
    assert "cluster --node omium-1.omium-peers:7001 add --id 1 --addr omium-0.omium-peers:7001" in calls


def test_a_restarted_member_neither_joins_nor_bootstraps(entry):
    entry.marker.write_text("3\n")
    calls, _ = entry.run_until(lambda e: any(" node " in f" {c} " for c in e.calls()), HOSTNAME="omium-2")
    assert calls == [f"--store {entry.store} node --id 3 --listen 0.0.0.0:7001 --advertise omium-2.omium-peers:7001"]
    entry.marker.write_text("1\n")
    (entry.dir / "calls").unlink()
    calls, _ = entry.run_until(lambda e: any(" node " in f" {c} " for c in e.calls()), HOSTNAME="omium-0")
    assert calls == [f"--store {entry.store} node --id 1 --listen 0.0.0.0:7001 --advertise omium-0.omium-peers:7001"]


def test_environment_overrides(entry):
    calls, _ = entry.run_until(
        lambda e: e.marker.exists(),
        HOSTNAME="whatever",
        OMIUM_NODE_ID="7",
        OMIUM_ADVERTISE="n7.example:9000",
        OMIUM_JOIN="seed.example:7001",
        OMIUM_LISTEN="0.0.0.0:9000",
    )
    expected = ["node --id 7", "--listen 0.0.0.0:9000", "--advertise n7.example:9000", "--join seed.example:7001"]
    assert node_call(calls) == f"--store {entry.store} " + " ".join(expected)
    # The namespace-qualified peer domain the StatefulSet sets, and an empty one (compose).
    entry.marker.unlink()
    (entry.dir / "calls").unlink()
    calls, _ = entry.run_until(lambda e: e.marker.exists(), OMIUM_POD_NAME="omium-1", OMIUM_PEER_SERVICE="omium-peers.prod.svc")
    expected = ["--id 2 --listen 0.0.0.0:7001", "--advertise omium-1.omium-peers.prod.svc:7001", "--join omium-0.omium-peers.prod.svc:7001"]
    assert node_call(calls).endswith(" ".join(expected))
    entry.marker.unlink()
    (entry.dir / "calls").unlink()
    calls, _ = entry.run_until(lambda e: e.marker.exists(), HOSTNAME="omium-1", OMIUM_PEER_SERVICE="")
    assert node_call(calls).endswith("--id 2 --listen 0.0.0.0:7001 --advertise omium-1:7001 --join omium-0:7001")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HOSTNAME": "3f2a9c"}, "cannot tell the node id from the pod name '3f2a9c'"),
        ({"HOSTNAME": "omium-x"}, "cannot tell the node id"),
        ({"HOSTNAME": "host", "OMIUM_NODE_ID": "4"}, "set OMIUM_JOIN"),
        ({"HOSTNAME": "omium-1", "OMIUM_NODE_ID": "0"}, "OMIUM_NODE_ID must be a whole number >= 1"),
        ({"HOSTNAME": "omium-1", "OMIUM_PORT": "tcp://10.0.0.1:7001"}, "enableServiceLinks: false"),
        ({"HOSTNAME": "omium-0", "OMIUM_REPLICAS": "three"}, "OMIUM_REPLICAS must be a whole number >= 1"),
    ],
)
def test_entrypoint_refuses_what_it_cannot_derive(entry, env, message):
    proc = entry.start(**env)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 1
    assert message in err
    assert entry.calls() == []


def test_a_store_of_another_node_is_refused(entry):
    entry.marker.write_text("2\n")
    proc = entry.start(HOSTNAME="omium-2")
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 1
    assert "belongs to node 2, not node 3" in err
    assert entry.calls() == []


def test_arguments_run_the_omium_command(entry):
    proc = entry.start("cluster", "--node", "omium-0.omium-peers:7001", "status", HOSTNAME="omium-0")
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert entry.calls() == ["cluster --node omium-0.omium-peers:7001 status"]
