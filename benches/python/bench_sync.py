"""What remote sync costs a durable step, and how much of the state it sends, in one run.

    OMIUM_BIN=~/.cache/omium-target/debug/omium .venv/bin/python benches/python/bench_sync.py

Starts a 3-node cluster of `omium node` processes on 127.0.0.1, then times STEPS durable steps
of one workflow (local durability "sync" everywhere) with the store:
- local only (the baseline);
- syncing in the background (omium.init(remote=...)): steps do not wait for the network;
- with remote_durability="sync": a step returns once it is committed in the cluster.
Each step's state is a transcript that grows by GROWTH bytes a step (an agent's conversation).
Prints p50 / p99 per step and the ratio to the baseline, then the sync throughput of a bulk
push (chunks/s, MB/s) and bytes sent against bytes of state (the dedup ratio on the wire)."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import omium

STEPS = int(os.environ.get("STEPS", "300"))
GROWTH = int(os.environ.get("GROWTH", "2000"))
BIN = os.environ.get("OMIUM_BIN") or os.path.expanduser("~/.cache/omium-target/debug/omium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(root: str) -> tuple[list[subprocess.Popen], list[str]]:
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    procs = []
    for i, addr in enumerate(addrs):
        args = [BIN, "--store", os.path.join(root, f"node{i + 1}"), "node", "--id", str(i + 1), "--insecure-loopback", "--listen", addr]
        if i:
            args += ["--join", addrs[0]]
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert "listening" in p.stdout.readline()
        procs.append(p)
        if i == 0:
            subprocess.run([BIN, "cluster", "--node", addr, "init"], check=True, capture_output=True)
    while True:
        out = subprocess.run([BIN, "--json", "cluster", "--node", addrs[0], "status"], check=True, capture_output=True, text=True)
        if len(json.loads(out.stdout)["voters"]) == 3:
            return procs, addrs
        time.sleep(0.05)


def timed_steps(tag: str) -> list[float]:
    times: list[float] = []

    @omium.checkpoint
    def step(i: int) -> str:
        return transcript[: (i + 1) * GROWTH]

    @omium.workflow("bench")
    def wf() -> None:
        for i in range(STEPS):
            t = time.perf_counter_ns()
            step(i)
            times.append((time.perf_counter_ns() - t) / 1000)

    # Each run's own text, so no run finds another's chunks in the cluster.
    transcript = "".join(f"{tag} turn {i}: {i * 7919 % 10007:05d} " + "y" * 60 + "\n" for i in range(STEPS * GROWTH // 70 + 1))
    wf.run(execution_id=f"bench-{tag}-{time.time_ns()}")
    return times


def pct(xs: list[float], p: float) -> float:
    return statistics.quantiles(xs, n=100)[int(p) - 1]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="omsync-") as d:
        procs, addrs = start_cluster(d)
        try:
            nodes = ",".join(addrs)
            rows = []
            omium.init(path=os.path.join(d, "local"), tracing=False)
            base = timed_steps("local")
            omium.shutdown()
            rows.append(("local only", base, None))
            for mode in ("background", "sync"):
                omium.init(path=os.path.join(d, mode), tracing=False, remote=nodes, remote_durability=mode)
                t = timed_steps(mode)
                omium.push(120)
                rows.append((f"remote_durability={mode}", t, omium.sync_status()))
                omium.shutdown()
            b50 = statistics.median(base)
            print(f"{STEPS} steps, state growing by {GROWTH} B a step (final {STEPS * GROWTH // 1024} KiB), 3-node cluster on loopback")
            print(f"{'mode':<32}{'p50 µs':>10}{'p99 µs':>10}{'ratio p50':>11}")
            for name, xs, _ in rows:
                print(f"{name:<32}{statistics.median(xs):>10.0f}{pct(xs, 99):>10.0f}{statistics.median(xs) / b50:>10.1f}×")

            # Bulk: a store with the same history pushes everything at once (background mode).
            src = os.path.join(d, "local")
            omium.init(path=src, tracing=False, remote=nodes)
            t0 = time.perf_counter()
            omium.push(300)
            secs = time.perf_counter() - t0
            s = omium.sync_status()
            omium.shutdown()
            print()
            print(f"bulk push of {s['checkpoints_pushed']} checkpoints: {secs:.2f} s")
            print(
                f"  chunks sent {s['chunks_sent']} ({s['chunks_sent'] / secs:.0f} chunks/s), "
                f"{s['chunk_bytes_sent'] / secs / 1e6:.1f} MB/s of chunks"
            )
            print(
                f"  state {s['state_bytes'] / 1e6:.1f} MB, bytes sent {s['bytes_sent'] / 1e6:.2f} MB: "
                f"{s['state_bytes'] / s['bytes_sent']:.1f}× less on the wire"
            )
            print(f"  chunk references not sent (dedup): {s['chunks_skipped']} of {s['chunks_skipped'] + s['chunks_sent']}")
            for name, _, st in rows[1:]:
                print(
                    f"  {name}: {st['rounds']} rounds, sent {st['bytes_sent'] / 1e6:.2f} MB for {st['state_bytes'] / 1e6:.1f} MB of state"
                )
        finally:
            for p in procs:
                p.send_signal(signal.SIGKILL)
                p.wait()


if __name__ == "__main__":
    sys.exit(main())
