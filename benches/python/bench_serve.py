"""What a durable step costs through `omium serve` against the embedded store, in one run.

    OMIUM_BIN=~/.cache/omium-target/debug/omium .venv/bin/python benches/python/bench_serve.py

For each durability (sync, buffered) it times STEPS durable steps of one workflow with the store
embedded in the process (the baseline), then with the same kind of store owned by a daemon,
reached over its unix socket and over HTTP on loopback, and then (issue 17) with a stored API key
(every call authenticated and Cedar-authorized) over HTTP and over HTTPS (TLS 1.3, certificates
from `omium cluster certs`). Each step is reserve + lookup + record: three round trips to the
daemon. Prints p50 / p99 per step and the ratio to the baseline."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import omium

STEPS = int(os.environ.get("STEPS", "2000"))
STATE = {"messages": ["x" * 100] * 10}  # ~1 KiB


def timed_steps() -> list[float]:
    times: list[float] = []

    @omium.checkpoint
    def step(i: int) -> dict:
        return STATE

    @omium.workflow("bench")
    def wf() -> None:
        for i in range(STEPS):
            t = time.perf_counter_ns()
            step(i)
            times.append((time.perf_counter_ns() - t) / 1000)

    wf.run(execution_id=f"bench-{time.time_ns()}")
    return times


def pct(xs: list[float], p: float) -> float:
    return statistics.quantiles(xs, n=100)[int(p) - 1]


def start(binary: str, store: str, *args: str) -> tuple[subprocess.Popen, dict]:
    daemon = subprocess.Popen([binary, "--store", store, "serve", *args], stdout=subprocess.PIPE, text=True)
    return daemon, json.loads(daemon.stdout.readline())


def secured(binary: str, d: str, durability: str, tls: bool) -> list[float]:
    """Steps through a daemon that authenticates and authorizes every call (and speaks TLS)."""
    store = os.path.join(d, "tls" if tls else "keyed")
    made = subprocess.run(
        [binary, "--store", store, "--json", "keys", "create", "--name", "bench", "--tenant", "default", "--role", "worker"],
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(made.stdout)["secret"]
    args = ["--http", "127.0.0.1:0", "--durability", durability, "--rate-limit", "0"]
    if tls:
        certs = os.path.join(d, "certs")
        if not os.path.exists(certs):
            subprocess.run([binary, "cluster", "certs", "--out", certs, "--nodes", "1"], capture_output=True, check=True)
        args += ["--tls-cert", os.path.join(certs, "node-1.pem"), "--tls-key", os.path.join(certs, "node-1-key.pem")]
        os.environ["OMIUM_CA_FILE"] = os.path.join(certs, "ca.pem")
    daemon, info = start(binary, store, *args)
    try:
        omium.init(url=f"{'https' if tls else 'http'}://{info['http']}", api_key=key, tracing=False)
        return timed_steps()
    finally:
        omium.shutdown()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(20)


def main() -> None:
    binary = os.environ.get("OMIUM_BIN") or os.path.expanduser("~/.cache/omium-target/debug/omium")
    rows = []
    for durability in ("sync", "buffered"):
        with tempfile.TemporaryDirectory(prefix="omb-") as d:
            omium.init(path=os.path.join(d, "embedded"), durability=durability, tracing=False)
            base = timed_steps()
            omium.shutdown()
            sock = os.path.join(d, "s.sock")
            args = ["--socket", sock, "--http", "127.0.0.1:0", "--durability", durability, "--rate-limit", "0"]
            daemon, info = start(binary, os.path.join(d, "served"), *args)
            try:
                results = {"embedded": base}
                for name, url in (("serve, unix socket", f"unix://{sock}"), ("serve, HTTP loopback", f"http://{info['http']}")):
                    omium.init(url=url, tracing=False)
                    results[name] = timed_steps()
                    omium.shutdown()
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(20)
            results["serve, HTTP + key"] = secured(binary, d, durability, tls=False)
            results["serve, HTTPS + key"] = secured(binary, d, durability, tls=True)
        b50 = pct(base, 50)
        for name, xs in results.items():
            rows.append((durability, name, pct(xs, 50), pct(xs, 99), pct(xs, 50) / b50))
    print(f"{'durability':<10} {'store':<22} {'p50 µs':>9} {'p99 µs':>9} {'p50 / embedded':>15}")
    for durability, name, p50, p99, ratio in rows:
        print(f"{durability:<10} {name:<22} {p50:>9.1f} {p99:>9.1f} {ratio:>14.2f}x")
    print(f"({STEPS} steps of a ~1 KiB state each; python {sys.version.split()[0]}; load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
