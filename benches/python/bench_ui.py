"""How fast the dashboard's pages answer on a large store, against the same pages on a small one,
in one run (issue 20: every page within 200 ms on a store of 100,000 executions).

    OMIUM_BIN=~/.cache/omium-target/release/omium .venv/bin/python benches/python/bench_ui.py

Builds two stores with the Python package — SMALL (1,000) and LARGE (100,000 by default)
executions of three steps each, one in twenty failing — then starts `omium ui --store` on each and
loads every page the way the browser does: the page's API calls as the dashboard makes them
(`omium-cluster/ui/*.js`), over HTTP on loopback, all of a page's calls one after the other (the
browser runs them in parallel, so this is an upper bound). Prints p50 and p95 per page over
ROUNDS loads, the large store's time over the small one's, and whether 200 ms is met. Stores are
kept in BENCH_DIR (default a temporary folder) so a second run skips building them."""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LARGE = int(os.environ.get("LARGE", "100000"))
SMALL = int(os.environ.get("SMALL", "1000"))
ROUNDS = int(os.environ.get("ROUNDS", "20"))
TARGET_MS = 200.0
BIN = os.environ.get("OMIUM_BIN", str(Path.home() / ".cache/omium-target/release/omium"))


def build(path: Path, n: int) -> None:
    if (path / "built").exists():
        return
    code = f"""
import omium
omium.init(path={str(path)!r}, durability="none")
@omium.checkpoint(agent="planner")
def plan(i): return {{"topic": i, "steps": ["a", "b"]}}
@omium.checkpoint(agent="actor")
def act(s):
    if s["topic"] % 20 == 7: raise ValueError("the tool answered nothing")
    return {{**s, "done": s["steps"]}}
@omium.checkpoint(agent="reporter")
def report(s): return len(s["done"])
for i in range({n}):
    try:
        with omium.execution(f"bench-{{i:06d}}", workflow=("research", "support", "billing")[i % 3]):
            report(act(plan(i)))
    except ValueError:
        pass
omium.shutdown()
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    (path / "built").write_text("ok")


class Ui:
    def __init__(self, store: Path):
        self.proc = subprocess.Popen(
            [BIN, "--store", str(store), "ui", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"omium ui did not start: {self.proc.stderr.read()}")
        url = json.loads(line)["ui"]
        self.host, port = url.removeprefix("http://").rstrip("/").split(":")
        self.port = int(port)
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def call(self, method: str, body: dict | None = None) -> object:
        if method == "status":  # a GET, like health
            self.conn.request("GET", "/v1/status")
        else:
            self.conn.request("POST", f"/v1/{method}", body=json.dumps(body or {}), headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise SystemExit(f"{method}: {r.status} {data[:300]!r}")
        return json.loads(data) if r.getheader("content-type", "").startswith("application/json") else data

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def pages(ui: Ui, execution: str, checkpoint: str) -> dict:
    """Each page's calls on load, as the dashboard makes them."""
    now = time.time()
    return {
        "overview": lambda: (
            ui.call("whoami"),
            ui.call("status"),
            ui.call("metrics", {"since": "7d", "by": ["day"]}),
            ui.call("metrics", {"since": "7d", "by": ["workflow"]}),
            ui.call("executions.page", {"status": "running", "limit": 500}),
            ui.call("executions.page", {"status": "paused", "limit": 500}),
        ),
        "feed": lambda: feed(ui),
        "executions": lambda: ui.call("executions.page", {"limit": 50}),
        "executions (failed)": lambda: ui.call("executions.page", {"limit": 50, "status": "failed"}),
        "execution": lambda: (
            ui.call("execution", {"execution_id": execution}),
            ui.call("checkpoints", {"execution_id": execution}),
            ui.call("history", {"execution_id": execution}),
            ui.call("failures", {"execution_id": execution}),
            ui.call("spans", {"execution_id": execution}),
            ui.call("read_state", {"checkpoint_id": checkpoint, "view": True}),
        ),
        "recovery": lambda: (
            ui.call("failures"),
            ui.call("recovery_metrics"),
            ui.call("metrics", {"since": "30d", "by": ["failure_type"]}),
            ui.call("metrics", {"since": "30d", "by": ["agent"]}),
            ui.call("metrics", {"since": "30d", "by": ["failure_type", "agent"]}),
        ),
        "policies": lambda: (ui.call("policy_versions"), ui.call("alerts")),
        "compliance": lambda: (ui.call("audit", {"limit": 100}), ui.call("audit_head")),
        "report (month, pdf)": lambda: ui.call("report", {"period": time.strftime("%Y-%m", time.gmtime(now)), "format": "pdf"}),
    }


def feed(ui: Ui) -> None:
    """The feed's first paint: the last 400 events (the server names each one's workflow and
    tenant, `omiumworkflow` and `omiumtenant`; the page looks up only executions it does not)."""
    head = ui.call("audit_head")
    since = max(0, (head or {}).get("seq", 0) - 400)
    events = ui.call("events", {"since": since, "limit": 400})["events"]
    unnamed = [e["subject"] for e in events if e.get("subject") and "omiumworkflow" not in e]
    for subject in list(dict.fromkeys(unnamed))[:300]:
        ui.call("execution", {"execution_id": subject})


def measure(store: Path) -> dict[str, list[float]]:
    ui = Ui(store)
    try:
        first = ui.call("executions.page", {"limit": 1})["executions"][0]
        cp = ui.call("history", {"execution_id": first["id"]})[0]["id"]
        out: dict[str, list[float]] = {}
        for name, load in pages(ui, first["id"], cp).items():
            load()  # warm
            times = []
            for _ in range(ROUNDS):
                t = time.perf_counter()
                load()
                times.append((time.perf_counter() - t) * 1000)
            out[name] = times
        return out
    finally:
        ui.stop()


def main() -> None:
    base = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="omium-bench-ui-"))
    small, large = base / f"small-{SMALL}", base / f"large-{LARGE}"
    t = time.perf_counter()
    build(small, SMALL)
    build(large, LARGE)
    print(f"stores in {base} ({time.perf_counter() - t:.0f} s to build); binary {BIN}")
    s, big = measure(small), measure(large)
    print(f"\n{'page':<22} {'small p50':>10} {'large p50':>10} {'large p95':>10} {'ratio':>7}  ≤ {TARGET_MS:.0f} ms")
    for name in s:
        p50s, p50l = statistics.median(s[name]), statistics.median(big[name])
        p95l = statistics.quantiles(big[name], n=20)[18]
        ok = "met" if p95l <= TARGET_MS else "NOT met"
        print(f"{name:<22} {p50s:>8.1f}ms {p50l:>8.1f}ms {p95l:>8.1f}ms {p50l / p50s:>6.2f}x  {ok}")


if __name__ == "__main__":
    main()
