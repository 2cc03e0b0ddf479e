"""fsyncs and time per super-step of a LangGraph graph that fans out to 8 parallel nodes, with
``OmiumSaver`` (``sync``: every write is durable before it returns) against ``SqliteSaver`` (its
default, ``synchronous=FULL``), in one run.

Each invocation of the graph runs a ``plan`` node, then 8 ``work_i`` nodes in parallel (LangGraph
runs them on its thread pool and hands each task's writes to ``put_writes`` as the task ends), then
a ``join`` node: four checkpoints and nine ``put_writes``. Omium's group commit lets the writes
of parallel tasks share an fsync; SQLite commits each alone. fsyncs are counted by strace:
(calls for 60 invocations - calls for 20) / 40, so setup and warm-up cancel out.

    benches/python/run.sh --fanout          # release build, own venv
    .venv/bin/python benches/python/bench_fanout.py [--invocations 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Annotated, TypedDict

WIDTH = 8
SYSTEMS = ("omium-sync", "sqlite-full")


class State(TypedDict):
    topic: str
    results: Annotated[list[str], operator.add]


def graph(saver):  # type: ignore[no-untyped-def]
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(State)
    g.add_node("plan", lambda s: {"results": [f"plan {s['topic']}"]})
    for i in range(WIDTH):
        g.add_node(f"work_{i}", lambda s, i=i: {"results": [f"work {i}: " + "x" * 1000]})
        g.add_edge("plan", f"work_{i}")
        g.add_edge(f"work_{i}", "join")
    g.add_node("join", lambda s: {"results": [f"joined {len(s['results'])}"]})
    g.add_edge(START, "plan")
    g.add_edge("join", END)
    return g.compile(checkpointer=saver)


def saver_of(system: str, d: str):  # type: ignore[no-untyped-def]
    if system == "omium-sync":
        from omium.langgraph import OmiumSaver

        s = OmiumSaver(os.path.join(d, "store"), durability="sync")
        return s, s.close
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(os.path.join(d, "lg.sqlite"), check_same_thread=False)
    s = SqliteSaver(conn)
    s.setup()
    return s, conn.close


def worker(system: str, n: int, d: str) -> dict:
    saver, close = saver_of(system, d)
    app = graph(saver)
    times = []
    for k in range(n):
        t = time.perf_counter()
        out = app.invoke({"topic": f"t{k}", "results": []}, {"configurable": {"thread_id": f"fan-{k}"}})
        times.append((time.perf_counter() - t) * 1e6)
        assert len(out["results"]) == WIDTH + 2, out
    close()
    return {"p50_us": statistics.median(times), "mean_us": statistics.fmean(times), "cpu_s": time.process_time()}


def fsyncs_per_invocation(system: str, root: str) -> float | None:
    strace = shutil.which("strace")
    if strace is None:
        return None
    counts = []
    for n in (20, 60):
        d = tempfile.mkdtemp(prefix="f-", dir=root)
        log = os.path.join(root, "strace.out")
        try:
            cmd = [strace, "-f", "-c", "-o", log, "-e", "trace=fsync,fdatasync", sys.executable, os.path.abspath(__file__)]
            cmd += ["--worker", system, "--invocations", str(n), "--dir", d]
            if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
                return None
            with open(log) as f:
                counts.append(sum(int(p[3]) for line in f if (p := line.split()) and p[-1] in ("fsync", "fdatasync")))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return (counts[1] - counts[0]) / 40


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--invocations", type=int, default=200)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.invocations, a.dir)))
        return
    root = tempfile.mkdtemp(prefix="omium-fanout-")
    try:
        report = {}
        for system in SYSTEMS:
            d = tempfile.mkdtemp(prefix="w-", dir=root)
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", system, "--invocations", str(a.invocations), "--dir", d]
            timing = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
            report[system] = {**timing, "fsyncs_per_invocation": fsyncs_per_invocation(system, root)}
        print(f"LangGraph graph fanning out to {WIDTH} parallel nodes, {a.invocations} invocations (4 checkpoints, 9 put_writes each)\n")
        print("| saver | fsyncs per invocation | invocation p50 | mean |")
        print("|---|---:|---:|---:|")
        for system, r in report.items():
            fs = "-" if r["fsyncs_per_invocation"] is None else f"{r['fsyncs_per_invocation']:.1f}"
            print(f"| {system} | {fs} | {r['p50_us']:,.0f} µs | {r['mean_us']:,.0f} µs |")
        if a.json:
            with open(a.json, "w") as f:
                json.dump(report, f, indent=1)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
