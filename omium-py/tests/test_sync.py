"""Remote sync with real processes: a 3-node cluster of `omium node` processes on 127.0.0.1,
local stores in worker processes syncing to it (omium.init(remote=...)), a worker SIGKILLed
and its execution finished from another store, a node SIGKILLed while a store pushes, conflicts,
and chunks in S3-compatible object storage (moto's server)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import omium
import pytest
from test_serve import finished, log_lines, omium_bin

WORKER = Path(__file__).with_name("sync_worker.py")
sys.path.insert(0, str(WORKER.parent))
import sync_worker  # noqa: E402  (the workflow the workers run, registered here too)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, root: Path, n: int = 3) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.addrs = [f"127.0.0.1:{free_port()}" for _ in range(n)]
        self.procs: list[subprocess.Popen | None] = [None] * n
        self.start(0)
        self.cli("cluster", "--node", self.addrs[0], "init")
        for i in range(1, n):
            self.start(i, join=self.addrs[0])
        # Generous: the nodes are processes, each status a process too, on a maybe loaded machine.
        deadline = time.monotonic() + 60
        while len((s := self.status())["voters"]) < n or s["leader"] is None:
            assert time.monotonic() < deadline, s
            time.sleep(0.05)

    @property
    def nodes(self) -> str:
        return ",".join(self.addrs)

    def cli(self, *args: str) -> str:
        r = subprocess.run([omium_bin(), *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def status(self, i: int | None = None) -> dict:
        live = [j for j, p in enumerate(self.procs) if p is not None]
        addr = self.addrs[live[0] if i is None else i]
        return json.loads(self.cli("--json", "cluster", "--node", addr, "status"))

    def start(self, i: int, join: str | None = None) -> None:
        log = open(self.root / f"node{i + 1}.log", "ab")
        store = str(self.root / f"node{i + 1}")
        args = [omium_bin(), "--store", store, "node", "--id", str(i + 1), "--insecure-loopback", "--listen", self.addrs[i]]
        if join:
            args += ["--join", join]
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
        line = p.stdout.readline()
        assert "listening" in line, f"node {i + 1} did not start: {line!r}"
        self.procs[i] = p

    def kill(self, i: int) -> None:
        p = self.procs[i]
        self.procs[i] = None
        p.send_signal(signal.SIGKILL)
        p.wait(10)

    def stop(self) -> None:
        for i, p in enumerate(self.procs):
            if p is not None:
                self.kill(i)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path / "cluster")
    yield c
    c.stop()


@pytest.fixture(autouse=True)
def _close():
    yield
    omium.shutdown()


def worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_run_killed_on_one_machine_is_pulled_and_finished_on_another(cluster, tmp_path):
    log = tmp_path / "steps.log"
    store_a = tmp_path / "a"
    # Store A runs 6 steps, 0.3 s each, pushing each before it returns; killed after 3, in step 3,
    # which waits for it (so the kill never comes too late, however slow this process is).
    a = worker("run", str(store_a), cluster.nodes, "sync", str(log), "job-1", "6", "0.3", "3")
    deadline = time.monotonic() + 60
    while len(log_lines(log)) < 4:
        assert a.poll() is None, a.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    a.send_signal(signal.SIGKILL)
    a.wait(10)

    # Store B (another directory: another machine as far as omium knows) recovers it, once
    # A's lease (sync_worker.LEASE_TTL) has expired: before that it is refused.
    omium.init(path=tmp_path / "b", remote=cluster.nodes, lease_ttl=2.0)
    with pytest.raises(omium.ExecutionLeasedError, match="job-1"):
        omium.pull("job-1")
    deadline = time.monotonic() + 60
    results = {}
    while "job-1" not in results:  # until A's lease has expired
        assert time.monotonic() < deadline, "store A's lease was never released"
        results = omium.recover()
        time.sleep(0.2)
    assert results["job-1"] == 100 * (1 + 2 + 3 + 4 + 5 + 6)
    runs = Counter((s, pid) for _, s, pid in log_lines(log))
    by_step: dict[int, list[int]] = {}
    for (s, pid), n in runs.items():
        assert n == 1, f"step {s} ran {n} times in pid {pid}"
        by_step.setdefault(s, []).append(pid)
    recorded_on_a = [s for s in range(6) if by_step[s] == [a.pid]]
    assert len(recorded_on_a) >= 3, by_step
    for s in range(6):
        # A finished step ran once; only the step A was killed in ran again, on B.
        assert len(by_step[s]) == 1 or (s == max(recorded_on_a) + 1 and a.pid in by_step[s]), by_step
    assert all(os.getpid() in by_step[s] for s in range(recorded_on_a[-1] + 1, 6)), by_step
    omium.push()
    assert omium.sync_status()["executions_pulled"] == 1

    # Store A's directory comes back and runs job-1 again from its own (stale) branch: refused
    # by branch, nothing merged; the cluster keeps B's run.
    omium.shutdown()
    rerun = worker("run", str(store_a), cluster.nodes, "sync", str(log), "job-1", "7", "0")
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode != 0
    assert "SyncConflictError" in err and "advanced elsewhere" in err, err

    # A third store sees the finished execution with B's result.
    omium.init(path=tmp_path / "c", remote=cluster.nodes)
    info = omium.pull("job-1")
    assert info.status == "completed"
    assert [c.name for c in omium.history("job-1")] == ["work"] * 6
    assert omium.verify("job-1").ok
    omium.push()
    assert omium.sync_status()["conflicts"] == {}


def stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_worker_that_stalled_while_another_took_its_run_over_stops_before_its_next_step(cluster, tmp_path):
    log = tmp_path / "steps.log"
    # A runs 4 steps, each in the cluster when it returns, with a lease of 2 s, and stops itself
    # after 2 (SIGSTOP, a stand-in for a long pause or a partition).
    a = subprocess.Popen(
        [sys.executable, str(WORKER), "run", str(tmp_path / "a"), cluster.nodes, "sync", str(log), "job-s", "4", "0", "-1", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SYNC_WORKER_LEASE": "2"},
    )
    try:
        deadline = time.monotonic() + 60
        while not stopped(a.pid):
            assert a.poll() is None, a.stderr.read()
            assert time.monotonic() < deadline, "worker A never stopped itself"
            time.sleep(0.01)
        # B recovers the run once A's lease ran out in the cluster, and finishes it.
        omium.init(path=tmp_path / "b", remote=cluster.nodes, lease_ttl=30.0)
        results: dict = {}
        while "job-s" not in results:
            assert time.monotonic() < deadline, "A's lease was never released"
            results = omium.recover()
            time.sleep(0.1)
        omium.push()
        # A wakes up: its next step raises before its body runs.
        a.send_signal(signal.SIGCONT)
        out, err = a.communicate(timeout=60)
    finally:
        if a.poll() is None:
            a.kill()
    assert a.returncode != 0, out
    assert "LeaseLostError" in err and "was taken over by another store" in err, err
    runs = Counter((s, pid) for _, s, pid in log_lines(log))
    assert runs == {(0, a.pid): 1, (1, a.pid): 1, (2, os.getpid()): 1, (3, os.getpid()): 1}, runs
    assert [c.name for c in omium.history("job-s")] == ["work"] * 4


def test_nothing_is_lost_when_a_node_is_killed_while_a_store_pushes(cluster, tmp_path):
    log = tmp_path / "steps.log"
    w = worker("run", str(tmp_path / "a"), cluster.nodes, "background", str(log), "bulk", "40", "0.02")
    deadline = time.monotonic() + 60
    while len(log_lines(log)) < 10:
        assert w.poll() is None, w.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    leader = cluster.status()["leader"] - 1
    cluster.kill(leader)
    r = finished(w)
    assert r["result"]["bulk"] == 100 * 40 * 41 // 2
    assert r["sync"]["checkpoints_pushed"] == 40 and not r["sync"]["conflicts"], r["sync"]
    # Dedup on the wire: each state shares its first chunks with the one before, which the
    # cluster already has.
    assert r["sync"]["chunks_skipped"] > r["sync"]["chunks_sent"], r["sync"]

    omium.init(path=tmp_path / "b", remote=[a for i, a in enumerate(cluster.addrs) if i != leader])
    assert omium.pull("bulk").status == "completed"
    history = omium.history("bulk")
    assert [c.name for c in history] == ["work"] * 40
    assert omium.verify("bulk").ok
    # Every state reads back whole (each chunk verified against its address).
    assert [c.load() for c in history] == [sync_worker.state("bulk", i) for i in range(40)]


def test_sync_mode_steps_are_in_the_cluster_when_they_return_and_bad_configs_are_named(cluster, tmp_path):
    omium.init(path=tmp_path / "a", remote=cluster.nodes, remote_durability="sync")

    @omium.checkpoint
    def one(x: int) -> int:
        return x + 1

    @omium.workflow("small")
    def small(x: int) -> int:
        return one(x)

    assert small.run(1, execution_id="s-1") == 2
    # No flush: with remote durability "sync" the step and the completion were in the cluster
    # when the calls returned. Another store sees them at once.
    other = omium.Store(str(tmp_path / "b"))
    other.attach_sync(cluster.nodes.split(","))
    assert other.pull("s-1")["status"] == "completed"
    assert other.read_state(other.history("s-1")[0]["id"])
    other.close()
    assert omium.sync_status()["checkpoints_pushed"] == 1
    omium.shutdown()

    with pytest.raises(omium.InvalidArgumentError, match="remote durability"):
        omium.init(path=tmp_path / "x", remote=cluster.nodes, remote_durability="eventually")
    with pytest.raises(omium.InvalidArgumentError, match="no port"):
        omium.init(path=tmp_path / "x", remote="localhost")
    with pytest.raises(TypeError, match="host:port"):
        omium.init(path=tmp_path / "x", remote=7001)
    with pytest.raises(ValueError, match="url"):
        omium.init(url="http://127.0.0.1:1", remote=cluster.nodes)
    omium.init(path=tmp_path / "y")
    with pytest.raises(omium.InvalidStateError, match="syncs to no cluster"):
        omium.pull("s-1")
    omium.shutdown()
    omium.init(path=tmp_path / "z", remote=cluster.nodes)
    with pytest.raises(omium.ExecutionNotFoundError, match="never-pushed"):
        omium.pull("never-pushed")


@pytest.fixture
def s3(tmp_path):
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    p = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket="omium-chunks")
            break
        except Exception:
            assert time.monotonic() < deadline and p.poll() is None, "moto_server did not start"
            time.sleep(0.1)
    yield endpoint, client
    p.kill()
    p.wait(10)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_chunks_go_to_object_storage_when_configured(cluster, s3, tmp_path):
    endpoint, client = s3
    log = tmp_path / "steps.log"
    bucket = "s3://omium-chunks/team-a"
    omium.init(path=tmp_path / "a", remote=cluster.nodes, remote_durability="sync", objects=bucket, objects_endpoint=endpoint)
    assert sync_worker.pipeline.run(str(log), "obj-1", 5, 0.0, execution_id="obj-1") == 100 * (1 + 2 + 3 + 4 + 5)
    status = omium.sync_status()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="omium-chunks").get("Contents", [])]
    assert len(keys) == status["chunks_sent"] > 0, (keys, status)
    assert all(k.startswith("team-a/chunks/") and len(k.rsplit("/", 1)[1]) == 64 for k in keys)
    omium.shutdown()

    # Another store with the same object storage pulls the execution, chunks from S3.
    omium.init(path=tmp_path / "b", remote=cluster.nodes, objects=bucket, objects_endpoint=endpoint)
    assert omium.pull("obj-1").status == "completed"
    assert omium.verify("obj-1").ok
    assert omium.sync_status()["chunks_fetched"] == len(keys)
    omium.shutdown()

    # A store without it is told where the chunks are.
    omium.init(path=tmp_path / "c", remote=cluster.nodes)
    with pytest.raises(omium.InvalidArgumentError, match="object storage"):
        omium.pull("obj-1")
