#!/usr/bin/env python3
"""Every same-run comparison of the performance targets (issue 21), in one command, with one JSON
summary of the ratios: ``make bench-all`` (about 25 minutes) writes ``docs/bench-summary.json``
beside the tables of ``docs/performance.md``; ``make bench-smoke`` (run by ``make test``) runs each
benchmark briefly on the debug builds that the tests use and checks that every figure comes out.

    scripts/bench-all.py [--smoke] [--out FILE] [--only core,consensus,python,trace,integrations,node,node_saver]

Each benchmark measures its baseline in the same run (raw RocksDB, an undecorated call, SQLite,
the embedded consensus group) and writes its own JSON; this script runs them one after another,
never two at once (two cores), and reads the figures the targets are about out of their JSON. A
smoke run's figures are of debug builds and say nothing about speed: it proves the benchmarks
run and report, not that a target is met.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIB = 1024


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/omium-target"))
    env.setdefault("ROCKSDB_STATIC", "1")
    if "ROCKSDB_LIB_DIR" not in env:
        # The version of librocksdb-sys in Cargo.lock, as the Makefile reads it.
        with open(os.path.join(REPO, "Cargo.lock")) as f:
            after = f.read().split('name = "librocksdb-sys"\nversion = "')[1]
        version = after.split('"')[0].split("+")[-1]
        env["ROCKSDB_LIB_DIR"] = os.path.expanduser(f"~/.cache/omium-rocksdb/{version}")
    env.update(extra)
    return env


def run(cmd: list[str], what: str, cwd: str = REPO, **extra: str) -> None:
    print(f"\n### {what}: {' '.join(cmd)}", flush=True)
    t = time.monotonic()
    r = subprocess.run(cmd, cwd=cwd, env=env_with(**extra))
    if r.returncode != 0:
        sys.exit(f"bench-all: {what} failed (exit {r.returncode}): {' '.join(cmd)}")
    print(f"### {what}: {time.monotonic() - t:.0f} s", flush=True)


def read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def core(tmp: str, smoke: bool) -> dict:
    out = os.path.join(tmp, "core.json")
    cmd = ["cargo", "bench", "-p", "omium-core", "--bench", "core_bench"]
    extra = {"OMIUM_BENCH_JSON": out}
    if smoke:
        cmd[2:2] = ["--profile", "dev"]
        extra.update(OMIUM_BENCH_QUICK="1", OMIUM_BENCH_SIZES="1,100", OMIUM_BENCH_WRITERS="1")
    run([*cmd, "--", "write", "resume"], "core_bench (checkpoint writes against raw RocksDB puts; resume)", **extra)
    return read(out)["figures"]


def consensus(tmp: str, smoke: bool) -> dict:
    out = os.path.join(tmp, "consensus.json")
    cmd = ["cargo", "bench", "-p", "omium-core", "--bench", "consensus_bench"]
    extra = {"OMIUM_BENCH_JSON": out}
    if smoke:
        cmd[2:2] = ["--profile", "dev"]
        extra.update(OMIUM_BENCH_SECS="0.3", OMIUM_BENCH_KILLS="2")
    run(cmd, "consensus_bench (3-node cluster against the embedded group; failover under load)", **extra)
    return read(out)["figures"]


def python_steps(tmp: str, smoke: bool) -> dict:
    out = os.path.join(tmp, "python.json")
    if smoke:
        py = os.path.join(REPO, ".venv", "bin", "python")
        cmd = [py, "benches/python/bench.py", "--quick", "--rounds", "1", "--no-strace", "--systems", "omium-sync,omium-buffered"]
    else:
        cmd = ["benches/python/run.sh"]
    run([*cmd, "--json", out], "Python @omium.checkpoint overhead (bench.py)")
    return read(out)


def python_trace(tmp: str, smoke: bool) -> dict:
    out = os.path.join(tmp, "trace.json")
    py = os.path.join(REPO, ".venv" if smoke else "benches/python/.venv", "bin", "python")
    run([py, "benches/python/bench_trace.py", *(["--quick"] if smoke else []), "--json", out], "Python span cost (bench_trace.py)")
    return read(out)["figures"]


def integrations(tmp: str, smoke: bool) -> dict:
    out = os.path.join(tmp, "integrations.json")
    if smoke:
        py = os.path.join(REPO, ".venv", "bin", "python")
        cmd = [py, "benches/python/bench_integrations.py", "--quick", "--rounds", "1", "--no-strace"]
    else:
        cmd = ["benches/python/run.sh", "--integrations"]
    run([*cmd, "--json", out], "OmiumSaver / OmiumFlowPersistence against SQLite (bench_integrations.py)")
    return read(out)


def node(tmp: str, smoke: bool) -> dict:
    out = os.path.join(tmp, "node.json")
    if not smoke:
        run(["npm", "run", "build:release"], "Node addon, release build", cwd=os.path.join(REPO, "omium-node"))
    run(
        ["node", "benches/node/bench_steps.mjs", "300" if smoke else "20000", "--json", out],
        "Node omium.checkpoint overhead (bench_steps.mjs)",
    )
    return read(out)


def node_saver(tmp: str, smoke: bool) -> dict:
    out = os.path.join(tmp, "node_saver.json")
    # The addon is built already: release by the node section, debug by `make node` for smoke.
    cmd = ["benches/node/run.sh", "--no-build", *(["--quick"] if smoke else ["--rounds", "5"])]
    run([*cmd, "--json", out], "LangGraph.js OmiumSaver against SqliteSaver (bench_saver.mjs)")
    return read(out)


def target(name: str, measured: float | None, goal: float, better: str, unit: str, baseline: str) -> dict:
    """One target: ``better`` is ``>=`` (measured must reach goal) or ``<=``."""
    met = None if measured is None else (measured >= goal if better == ">=" else measured <= goal)
    return {"target": name, "measured": measured, "goal": f"{better} {goal:g}{unit}", "met": met, "baseline": baseline}


def summarize(r: dict) -> list[dict]:
    out = []
    c = r.get("core")
    if c is not None:
        w = lambda k: c.get(k, {}).get("ratio")  # noqa: E731
        out += [
            target(
                "1 KiB buffered checkpoint / raw RocksDB put rate, 1 writer", w("write/1 KiB/fresh/buffered/1"), 0.5, ">=", "", "raw put"
            ),
            target("1 KiB sync checkpoint / raw RocksDB put rate, 1 writer", w("write/1 KiB/fresh/sync/1"), 0.9, ">=", "", "raw put"),
            target(
                "fresh 100 KiB sync checkpoint / raw RocksDB put rate, 1 writer", w("write/100 KiB/fresh/sync/1"), 0.7, ">=", "", "raw put"
            ),
            target("resume 1,000 steps, 1 KiB results (ms)", c.get("resume/1 KiB", {}).get("p50_ms"), 20, "<=", " ms", "none"),
            target("resume 1,000 steps, 16 KiB results (ms)", c.get("resume/16 KiB", {}).get("p50_ms"), 20, "<=", " ms", "none"),
        ]
    p = r.get("python")
    if p is not None:
        b1 = next((s for o in p["overhead"] if o["durability"] == "buffered" for s in o["sizes"] if s["size"] == KIB), None)
        ov = None if b1 is None else b1["durable_p50"] - b1["plain_p50"]
        out.append(
            target("Python @omium.checkpoint overhead p50, buffered, 1 KiB, tracing on (µs)", ov, 15, "<=", " µs", "the undecorated call")
        )
    t = r.get("trace")
    if t is not None:
        out.append(
            target("Python span, with omium.trace(...) (µs)", t["with omium.trace(...)"]["span_us"], 3, "<=", " µs", "nullcontext()")
        )
        out.append(
            target("Python span, @omium.trace function (µs)", t["@omium.trace function"]["span_us"], 3, "<=", " µs", "the undecorated call")
        )
    n = r.get("node")
    if n is not None:
        out.append(
            target(
                "Node omium.checkpoint overhead p50, buffered, 1 KiB (µs)",
                n["buffered"]["overhead_p50"],
                20,
                "<=",
                " µs",
                "the plain async call",
            )
        )
    i = r.get("integrations")
    if i is not None:
        for mine, peer, size_i, goal in (
            ("omium-buffered", "sqlite-off", 0, 4.0),
            ("omium-buffered", "sqlite-off", 1, 2.0),
            ("omium-sync", "sqlite-full", 0, 1.5),
        ):
            zs = [rnd["sizes"][size_i] for rnd in i["pairs"].get(f"{mine},{peer}", [])]
            size = "1 KiB" if size_i == 0 else "100 KiB"
            x = statistics.median(z["peer_p50"] / z["mine_p50"] for z in zs) if zs else None
            out.append(
                target(
                    f"OmiumSaver {mine.split('-')[1]} vs SqliteSaver {peer}, {size}, p50 speed-up",
                    x,
                    goal,
                    ">=",
                    "×",
                    f"SqliteSaver ({peer})",
                )
            )
            if mine == "omium-buffered" and zs:
                p99 = statistics.median(z["peer_p99"] for z in zs) / statistics.median(z["mine_p99"] for z in zs)
                out.append(
                    target(
                        f"OmiumSaver buffered p99 vs SqliteSaver sqlite-off, {size} (SQLite p99 / Omium p99)",
                        p99,
                        5.0,
                        ">=",
                        "×",
                        "SqliteSaver (sqlite-off)",
                    )
                )
    ns = r.get("node_saver")
    if ns is not None:
        pairs = {(x["omium"], x["size"]): x for x in ns["summary"]}
        for mine, size, goal in (("omium-buffered", KIB, 4.0), ("omium-buffered", 100 * KIB, 2.0), ("omium-sync", KIB, 1.5)):
            x = pairs.get((mine, size))
            label = f"{size // KIB} KiB"
            peer = "sqlite-off" if mine == "omium-buffered" else "sqlite-full"
            out.append(
                target(
                    f"LangGraph.js OmiumSaver {mine.split('-')[1]} vs SqliteSaver {peer}, {label}, p50 speed-up",
                    None if x is None else x["ratio_p50"],
                    goal,
                    ">=",
                    "×",
                    f"SqliteSaver of @langchain/langgraph-checkpoint-sqlite ({peer})",
                )
            )
            if mine == "omium-buffered":
                out.append(
                    target(
                        f"LangGraph.js OmiumSaver buffered p99 vs SqliteSaver sqlite-off, {label} (SQLite p99 / Omium p99)",
                        None if x is None else x["ratio_p99"],
                        5.0,
                        ">=",
                        "×",
                        "SqliteSaver (sqlite-off)",
                    )
                )
    k = r.get("consensus")
    if k is not None:
        out.append(
            target(
                "agreed messages/s, 3-node loopback cluster, batched, fsync on",
                k["cluster_batched_per_s"],
                10000,
                ">=",
                "/s",
                "embedded group",
            )
        )
        out.append(
            target(f"leader failover p99 under load over {k['failover_kills']} kills (ms)", k["failover_p99_ms"], 1000, "<=", " ms", "none")
        )
    return out


SECTIONS = {
    "core": core,
    "consensus": consensus,
    "python": python_steps,
    "trace": python_trace,
    "integrations": integrations,
    "node": node,
    "node_saver": node_saver,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="brief runs on the debug builds: the benchmarks run and report")
    ap.add_argument("--out", help="the summary (default: docs/bench-summary.json, or a temporary file with --smoke)")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections: " + ", ".join(SECTIONS))
    a = ap.parse_args()
    only = [s for s in a.only.split(",") if s]
    for s in only:
        if s not in SECTIONS:
            sys.exit(f"bench-all: unknown section {s!r}; expected some of {', '.join(SECTIONS)}")
    started = time.monotonic()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="omium-bench-all-") as tmp:
        for s in only:
            results[s] = SECTIONS[s](tmp, a.smoke)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    targets = summarize(results)
    summary = {
        "commit": commit or None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "smoke": a.smoke,
        "machine": {"cpus": os.cpu_count(), "load_average_end": os.getloadavg()},
        "seconds": round(time.monotonic() - started),
        "targets": targets,
        "figures": results,
    }
    out = a.out or (
        os.path.join(tempfile.gettempdir(), "omium-bench-smoke.json") if a.smoke else os.path.join(REPO, "docs", "bench-summary.json")
    )
    with open(out, "w") as f:
        json.dump(summary, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"\n## Targets ({'SMOKE run on debug builds: not figures' if a.smoke else 'same-run ratios'})\n")
    for t in targets:
        m = "—" if t["measured"] is None else f"{t['measured']:.2f}"
        verdict = "" if a.smoke else (" met" if t["met"] else " NOT met")
        print(f"- {t['target']}: {m} (target {t['goal']}){verdict}")
    print(f"\nsummary: {out} ({summary['seconds']} s)")
    missing = [t["target"] for t in targets if t["measured"] is None]
    expected = {"core": 5, "python": 1, "trace": 2, "node": 1, "integrations": 5, "consensus": 2, "node_saver": 5}
    if missing or len(targets) != sum(expected[s] for s in only):
        sys.exit(
            f"bench-all: {len(targets)} targets reported, {sum(expected[s] for s in only)} expected; no figure for: {', '.join(missing)}"
        )


if __name__ == "__main__":
    main()
