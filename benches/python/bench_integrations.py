"""Omium's framework integrations against the frameworks' own persistence, in one run:

1. LangGraph checkpointer, per step (``put_writes`` + ``put``, as the Pregel loop calls them),
   p50 and p99, at 1 KiB and 100 KiB of state: ``OmiumSaver`` (sync and async) against
   ``InMemorySaver``, ``SqliteSaver`` and ``AsyncSqliteSaver``. Like is compared with like:
   Omium ``sync`` against SQLite's default (``synchronous=FULL``: an fsync per commit), Omium
   ``buffered`` against SQLite with ``PRAGMA synchronous=OFF`` (both survive a process crash,
   not a power loss).
2. Bytes on disk after a 1,000-step conversation (a real LangGraph graph whose node appends one
   message per step), ``OmiumSaver`` against ``SqliteSaver``.
3. CrewAI flow state ``save_state`` and ``load_state``: ``OmiumFlowPersistence`` against
   ``SQLiteFlowPersistence``.

Run it through ``benches/python/run.sh --integrations`` (release build of omium in the
benchmark's own virtualenv). Each configuration runs in its own fresh process and temporary
store, in interleaved rounds; the driver prints markdown tables with the ratios.

    bench_integrations.py [--quick] [--rounds 3] [--dir DIR] [--json FILE] [--no-strace]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import operator
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Annotated, TypedDict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import fsync_floor, loadavg, machine_facts, pct, version  # noqa: E402

KIB = 1024
for _var, _value in {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_DISABLE_TRACKING": "true",
    "OTEL_SDK_DISABLED": "true",
    "CREWAI_TRACING_ENABLED": "false",
}.items():
    os.environ.setdefault(_var, _value)

# A fixed vocabulary: messages read like text (compressible as real conversations are), and
# are different every step.
WORDS = (
    "the agent tool call result user asked for a summary of report data customer order "
    "invoice shipping status update please check whether this account has been verified and "
    "then send an email with the details of next steps we found three issues in document "
    "review approved rejected pending escalate to human operator thanks for waiting here is "
    "what I know about your request it seems that payment failed because card expired"
).split()


def message(rnd: random.Random, i: int) -> dict:
    words = " ".join(rnd.choice(WORDS) for _ in range(36))
    return {"role": "assistant" if i % 2 else "user", "content": f"({i}) {words}"}


# ---------------------------------------------------------------- 1. per-step latency


def _savers(system: str, path: str):  # type: ignore[no-untyped-def]
    """(saver, facts, closer) for a sync system."""
    if system == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        return InMemorySaver(), {"durability": "none (process memory)"}, lambda: None
    if system.startswith("sqlite"):
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(os.path.join(path, "lg.sqlite"), check_same_thread=False)
        if system == "sqlite-off":
            conn.execute("PRAGMA synchronous=OFF")
        saver = SqliteSaver(conn)
        saver.setup()
        jm = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        facts = {"durability": f"journal_mode={jm}, synchronous={_sync_name(sync)}"}
        return saver, facts, conn.close
    if system.startswith("omium"):
        from omium.langgraph import OmiumSaver

        durability = system.split("-")[1]
        saver = OmiumSaver(os.path.join(path, "store"), durability=durability)
        return saver, {"durability": durability}, saver.close
    raise SystemExit(f"unknown system {system}")


def _sync_name(v: int) -> str:
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(int(v), str(v))


class Workload:
    """The calls the Pregel loop makes for one step of an agent whose state is a message list
    of ~``size`` bytes: the node's writes (one new message) with ``put_writes`` against the
    current checkpoint, then the next checkpoint with ``put``. The list is a window: each step
    appends a message and drops the oldest, so the state stays at its size and changes every
    step. Checkpoints are built before the clock starts (the graph builds them whatever the
    saver); the saver's own serialization is inside the timed calls."""

    def __init__(self, saver, size: int, thread: str) -> None:  # type: ignore[no-untyped-def]
        from langgraph.checkpoint.base.id import uuid6

        self.uuid6 = uuid6
        self.saver = saver
        self.rnd = random.Random(size)
        self.i = 0
        self.messages: list[dict] = []
        while len(json.dumps(self.messages)) < size:
            self.messages.append(message(self.rnd, self.i))
            self.i += 1
        self.versions = {"messages": None, "step": None}
        self.config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        self.run_id = str(uuid.uuid4())

    def next_step(self) -> tuple:
        new = message(self.rnd, self.i)
        self.i += 1
        writes = [("messages", [new]), ("step", self.i)]
        self.messages = [*self.messages[1:], new]
        for ch in self.versions:
            self.versions[ch] = self.saver.get_next_version(self.versions[ch], None)
        checkpoint = {
            "v": 4,
            "id": str(self.uuid6(clock_seq=self.i)),
            "ts": "2026-11-27T08:00:00+00:00",
            "channel_values": {"messages": list(self.messages), "step": self.i},
            "channel_versions": dict(self.versions),
            "versions_seen": {"agent": dict(self.versions)},
            "updated_channels": ["messages", "step"],
        }
        metadata = {"source": "loop", "step": self.i, "parents": {}, "run_id": self.run_id}
        return writes, checkpoint, metadata, dict(self.versions)


def worker_steps(args: argparse.Namespace) -> dict:
    out: dict = {"system": args.system, "sizes": []}
    is_async = args.system.startswith("a")
    for size, n in args.plan:
        d = tempfile.mkdtemp(dir=args.dir)
        if is_async:
            lat, facts = asyncio.run(_async_steps(args.system[1:], d, size, n))
        else:
            saver, facts, close = _savers(args.system, d)
            lat = _sync_steps(saver, size, n)
            close()
        out["facts"] = facts
        out["sizes"].append({"size": size, "n": n, "p50": pct(lat, 50), "p99": pct(lat, 99), "mean": statistics.fmean(lat)})
    return out


def _sync_steps(saver, size: int, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    w = Workload(saver, size, "bench")
    config = saver.put(w.config, *w.next_step()[1:])
    warm = max(10, n // 10)
    lat = []
    clock = time.perf_counter_ns
    gc.collect()
    for k in range(warm + n):
        writes, checkpoint, metadata, versions = w.next_step()
        t0 = clock()
        saver.put_writes(config, writes, task_id=f"task-{k}", task_path="~agent")
        config = saver.put(config, checkpoint, metadata, versions)
        t1 = clock()
        if k >= warm:
            lat.append((t1 - t0) / 1000.0)
    return lat


async def _async_steps(system: str, path: str, size: int, n: int) -> tuple[list[float], dict]:
    if system.startswith("sqlite"):
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        conn = await aiosqlite.connect(os.path.join(path, "lg.sqlite"))
        if system == "sqlite-off":
            await conn.execute("PRAGMA synchronous=OFF")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        async with conn.execute("PRAGMA journal_mode") as c:
            jm = (await c.fetchone())[0]
        async with conn.execute("PRAGMA synchronous") as c:
            sync = (await c.fetchone())[0]
        facts = {"durability": f"journal_mode={jm}, synchronous={_sync_name(sync)}"}

        async def close() -> None:
            await conn.close()
    else:
        from omium.langgraph import OmiumSaver

        durability = system.split("-")[1]
        saver = OmiumSaver(os.path.join(path, "store"), durability=durability)
        facts = {"durability": durability}

        async def close() -> None:
            saver.close()

    w = Workload(saver, size, "bench")
    config = await saver.aput(w.config, *w.next_step()[1:])
    warm = max(10, n // 10)
    lat = []
    clock = time.perf_counter_ns
    gc.collect()
    for k in range(warm + n):
        writes, checkpoint, metadata, versions = w.next_step()
        t0 = clock()
        await saver.aput_writes(config, writes, task_id=f"task-{k}", task_path="~agent")
        config = await saver.aput(config, checkpoint, metadata, versions)
        t1 = clock()
        if k >= warm:
            lat.append((t1 - t0) / 1000.0)
    await close()
    return lat, facts


def worker_pair(args: argparse.Namespace) -> dict:
    """Omium and its like-for-like SQLite peer in one process, step by step in alternating
    order, so both see the same disk and machine at the same moments (fsync latency on a
    shared VM moves by 10x within minutes)."""
    mine, peer = args.system.split(",")
    out: dict = {"pair": [mine, peer], "sizes": []}
    for size, n in args.plan:
        sides = []
        for s in (mine, peer):
            d = tempfile.mkdtemp(dir=args.dir)
            saver, facts, close = _savers(s, d)
            w = Workload(saver, size, "bench")
            config = saver.put(w.config, *w.next_step()[1:])
            sides.append({"saver": saver, "w": w, "config": config, "close": close, "lat": [], "facts": facts})
        warm = max(10, n // 10)
        clock = time.perf_counter_ns
        gc.collect()
        for k in range(warm + n):
            order = sides if k % 2 == 0 else sides[::-1]
            for side in order:
                writes, checkpoint, metadata, versions = side["w"].next_step()
                saver = side["saver"]
                t0 = clock()
                saver.put_writes(side["config"], writes, task_id=f"task-{k}", task_path="~agent")
                side["config"] = saver.put(side["config"], checkpoint, metadata, versions)
                t1 = clock()
                if k >= warm:
                    side["lat"].append((t1 - t0) / 1000.0)
        for side in sides:
            side["close"]()
        a, b = sides
        out["facts"] = [a["facts"], b["facts"]]
        out["sizes"].append(
            {
                "size": size,
                "n": n,
                "mine_p50": pct(a["lat"], 50),
                "mine_p99": pct(a["lat"], 99),
                "peer_p50": pct(b["lat"], 50),
                "peer_p99": pct(b["lat"], 99),
            }
        )
    return out


# ---------------------------------------------------------------- 2. conversation bytes


def dir_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


class ConversationState(TypedDict):
    turn: int
    messages: Annotated[list[dict], operator.add]


def worker_conversation(args: argparse.Namespace) -> dict:
    from langgraph.graph import END, START, StateGraph

    rnd = random.Random(7)

    def agent(state: ConversationState) -> dict:
        return {"messages": [message(rnd, state["turn"])]}

    b = StateGraph(ConversationState)
    b.add_node("agent", agent)
    b.add_edge(START, "agent")
    b.add_edge("agent", END)

    d = os.path.join(args.dir, "conv")
    os.makedirs(d)
    if args.system == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(os.path.join(d, "lg.sqlite"), check_same_thread=False)
        saver = SqliteSaver(conn)
        saver.setup()
        close = conn.close
    else:
        from omium.langgraph import OmiumSaver

        saver = OmiumSaver(os.path.join(d, "store"), durability="sync")
        close = saver.close
    graph = b.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "conversation"}}
    t0 = time.perf_counter()
    for turn in range(args.steps):
        graph.invoke({"turn": turn}, config)
    wall = time.perf_counter() - t0
    final = graph.get_state(config).values["messages"]
    assert len(final) == args.steps
    raw_final = len(json.dumps(final))
    checkpoints = sum(1 for _ in saver.list(config))
    close()
    return {
        "system": args.system,
        "steps": args.steps,
        "checkpoints": checkpoints,
        "final_state_json_bytes": raw_final,
        "disk_bytes": dir_bytes(d),
        "wall": wall,
    }


# ---------------------------------------------------------------- 3. CrewAI


def worker_crewai(args: argparse.Namespace) -> dict:
    from pydantic import BaseModel

    class Ticket(BaseModel):
        id: str
        customer: uuid.UUID
        opened_at: str
        tags: set[str]
        messages: list[dict]

    d = tempfile.mkdtemp(dir=args.dir)
    if args.system == "crewai-sqlite":
        from crewai.flow.persistence import SQLiteFlowPersistence

        p = SQLiteFlowPersistence(os.path.join(d, "flows.db"))
        c = sqlite3.connect(os.path.join(d, "flows.db"))
        facts = {
            "durability": "journal_mode={}, synchronous={} (a new connection per call, as SQLiteFlowPersistence opens them)".format(
                c.execute("PRAGMA journal_mode").fetchone()[0], _sync_name(c.execute("PRAGMA synchronous").fetchone()[0])
            )
        }
        c.close()
    else:
        from omium.crewai import OmiumFlowPersistence

        durability = args.system.split("-")[1]
        p = OmiumFlowPersistence(os.path.join(d, "store"), durability=durability)
        facts = {"durability": durability}
    out: dict = {"system": args.system, "facts": facts, "sizes": []}
    for size, n in args.plan:
        rnd = random.Random(size)
        msgs: list[dict] = []
        i = 0
        while len(json.dumps(msgs)) < size:
            msgs.append(message(rnd, i))
            i += 1
        flow_id = f"flow-{size}"
        warm = max(10, n // 10)
        saves, loads = [], []
        clock = time.perf_counter_ns
        for k in range(warm + n):
            new = message(rnd, i)
            i += 1
            msgs = [*msgs[1:], new]
            state = Ticket(id=flow_id, customer=uuid.UUID(int=size), opened_at="2026-11-27", tags={"a", "b"}, messages=msgs)
            t0 = clock()
            p.save_state(flow_id, f"method_{k % 3}", state)
            t1 = clock()
            loaded = p.load_state(flow_id)
            t2 = clock()
            assert len(loaded["messages"]) == len(msgs)
            if k >= warm:
                saves.append((t1 - t0) / 1000.0)
                loads.append((t2 - t1) / 1000.0)
        out["sizes"].append(
            {
                "size": size,
                "n": n,
                "save_p50": pct(saves, 50),
                "save_p99": pct(saves, 99),
                "load_p50": pct(loads, 50),
                "load_p99": pct(loads, 99),
            }
        )
    return out


# ---------------------------------------------------------------- driver

STEP_SYSTEMS = [
    "memory",
    "sqlite-full",
    "sqlite-off",
    "asqlite-full",
    "asqlite-off",
    "omium-sync",
    "omium-buffered",
    "aomium-sync",
    "aomium-buffered",
]
LABELS = {
    "memory": "LangGraph `InMemorySaver`",
    "sqlite-full": "LangGraph `SqliteSaver`, SQLite default",
    "sqlite-off": "LangGraph `SqliteSaver`, `synchronous=OFF`",
    "asqlite-full": "LangGraph `AsyncSqliteSaver`, SQLite default",
    "asqlite-off": "LangGraph `AsyncSqliteSaver`, `synchronous=OFF`",
    "omium-sync": "`OmiumSaver`, sync",
    "omium-buffered": "`OmiumSaver`, buffered",
    "aomium-sync": "`OmiumSaver` async, sync",
    "aomium-buffered": "`OmiumSaver` async, buffered",
    "crewai-sqlite": "CrewAI `SQLiteFlowPersistence`",
    "crewai-sync": "`OmiumFlowPersistence`, sync",
    "crewai-buffered": "`OmiumFlowPersistence`, buffered",
}
# (Omium configuration, its like-for-like SQLite peer, target at 1 KiB, target at 100 KiB)
PAIRS = [
    ("omium-sync", "sqlite-full", 1.5, 1.5),
    ("omium-buffered", "sqlite-off", 4.0, 2.0),
    ("aomium-sync", "asqlite-full", None, None),
    ("aomium-buffered", "asqlite-off", None, None),
]


def spawn(worker_args: list[str], root: str) -> dict:
    d = tempfile.mkdtemp(prefix="w-", dir=root)
    try:
        p = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--dir", d, *worker_args], capture_output=True, text=True, check=False
        )
        if p.returncode != 0:
            sys.stderr.write(p.stdout + p.stderr)
            raise SystemExit(f"worker {' '.join(worker_args)} failed ({p.returncode})")
        return json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def count_fsyncs(system: str, root: str) -> float | None:
    """fsync + fdatasync calls per step at 1 KiB, by strace: (calls for 300 steps - calls for
    100 steps) / 200, so setup and warm-up cancel out."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    counts = []
    for n in (100, 300):
        d = tempfile.mkdtemp(prefix="s-", dir=root)
        log = os.path.join(root, "strace.out")
        try:
            cmd = [strace, "-f", "-c", "-o", log, "-e", "trace=fsync,fdatasync", sys.executable, os.path.abspath(__file__)]
            cmd += ["--dir", d, "--worker", "steps", "--system", system, "--plan", json.dumps([[KIB, n]])]
            p = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if p.returncode != 0:
                return None
            total = 0
            with open(log) as f:
                for line in f:
                    parts = line.split()
                    if parts and parts[-1] in ("fsync", "fdatasync"):
                        total += int(parts[3])
            counts.append((n + max(10, n // 10), total))
        finally:
            shutil.rmtree(d, ignore_errors=True)
            if os.path.exists(log):
                os.unlink(log)
    (n0, c0), (n1, c1) = counts
    return (c1 - c0) / (n1 - n0)


def main_driver(args: argparse.Namespace) -> None:
    root = args.dir or tempfile.mkdtemp(prefix="omium-intbench-")
    os.makedirs(root, exist_ok=True)
    facts = machine_facts(root)
    facts["crewai"] = version("crewai")
    scale = 10 if args.quick else 1
    report: dict = {"facts": facts, "load": {"start": loadavg()}}
    print("# Omium integrations benchmark (LangGraph, CrewAI)\n")
    for k, v in facts.items():
        print(f"- {k}: {v}")
    print(f"- load average at start: {report['load']['start']}\n", flush=True)
    floor = fsync_floor(root, 1000 // scale)
    report["fsync_floor"] = floor
    print(f"Disk floor, append 1 KiB + fdatasync: p50 {floor['p50']:.0f} µs, p99 {floor['p99']:.0f} µs\n", flush=True)

    # 1. per-step latency, interleaved rounds
    def plan(system: str) -> list[list[int]]:
        durable = system.endswith("full") or system.endswith("sync")
        if durable:
            return [[KIB, 600 // scale], [100 * KIB, 300 // scale]]
        return [[KIB, 3000 // scale], [100 * KIB, 600 // scale]]

    per: dict[str, list[dict]] = {s: [] for s in STEP_SYSTEMS}
    pairs: dict[str, list[dict]] = {f"{m},{p}": [] for m, p, _, _ in PAIRS[:2]}
    floors = []
    for rnd in range(args.rounds):
        floors.append(fsync_floor(root, 200)["p50"])
        order = STEP_SYSTEMS[rnd % len(STEP_SYSTEMS) :] + STEP_SYSTEMS[: rnd % len(STEP_SYSTEMS)]
        for s in order:
            r = spawn(["--worker", "steps", "--system", s, "--plan", json.dumps(plan(s))], root)
            per[s].append(r)
            summary = ", ".join(f"{x['size'] // KIB} KiB p50 {x['p50']:.0f} µs" for x in r["sizes"])
            print(f"  round {rnd + 1} {s}: {summary} (load {loadavg()})", file=sys.stderr, flush=True)
        for pair in pairs:
            r = spawn(["--worker", "pair", "--system", pair, "--plan", json.dumps(plan(pair.split(",")[0]))], root)
            pairs[pair].append(r)
            summary = ", ".join(f"{x['size'] // KIB} KiB {x['peer_p50'] / x['mine_p50']:.2f}x" for x in r["sizes"])
            print(f"  round {rnd + 1} pair {pair}: {summary} (load {loadavg()})", file=sys.stderr, flush=True)
    report["load"]["after_steps"] = loadavg()
    report["fsync_floor_per_round_p50"] = floors
    fsyncs = {}
    if not args.no_strace:
        for s in STEP_SYSTEMS:
            fsyncs[s] = count_fsyncs(s, root)

    # median over rounds of each round's p50 / p99
    steps: dict[str, dict[int, dict]] = {}
    for s, rs in per.items():
        steps[s] = {}
        for i, size in enumerate(x["size"] for x in rs[0]["sizes"]):
            p50s = [r["sizes"][i]["p50"] for r in rs]
            p99s = [r["sizes"][i]["p99"] for r in rs]
            steps[s][size] = {
                "p50": statistics.median(p50s),
                "p99": statistics.median(p99s),
                "p50_rounds": [round(x, 1) for x in p50s],
                "n": rs[0]["sizes"][i]["n"],
            }
    report["steps"] = {s: {str(k): v for k, v in d.items()} for s, d in steps.items()}
    report["fsyncs_per_step"] = fsyncs

    print("## 1. LangGraph checkpointer: one step = `put_writes` + `put` (median over rounds of each round's p50 / p99)\n")
    print("| saver | durability as configured | fsyncs/step | 1 KiB p50 | 1 KiB p99 | 100 KiB p50 | 100 KiB p99 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for s in STEP_SYSTEMS:
        f = per[s][0]["facts"]["durability"]
        fs = fsyncs.get(s)
        fs_txt = "-" if fs is None else f"{fs:.2f}"
        a, b = steps[s][KIB], steps[s][100 * KIB]
        print(f"| {LABELS[s]} | {f} | {fs_txt} | {a['p50']:,.0f} µs | {a['p99']:,.0f} µs | {b['p50']:,.0f} µs | {b['p99']:,.0f} µs |")
    print()
    print("fdatasync floor p50 at the start of each round: " + ", ".join(f"{x:.0f} µs" for x in floors) + "\n")
    print("Ratios from the table above (separate processes, so each side saw the disk at other moments):\n")
    print("| Omium | against | size | Omium faster by (p50) | per round | p99 ratio (SQLite / Omium) |")
    print("|---|---|---|---:|---:|---:|")
    for mine, peer, _, _ in PAIRS:
        for size in (KIB, 100 * KIB):
            x = steps[peer][size]["p50"] / steps[mine][size]["p50"]
            rounds = [a / b for a, b in zip(steps[peer][size]["p50_rounds"], steps[mine][size]["p50_rounds"], strict=True)]
            p99 = steps[peer][size]["p99"] / steps[mine][size]["p99"]
            print(f"| {LABELS[mine]} | {LABELS[peer]} | {size // KIB} KiB | {x:.1f}× | {min(rounds):.1f}–{max(rounds):.1f}× | {p99:.1f}× |")
    print()
    # The verdicts come from the interleaved pairs: one process, alternating steps.
    print("### 1b. Like with like, interleaved: Omium and SQLite in one process, alternating steps\n")
    print(
        "| Omium | against | size | Omium p50 | SQLite p50 | **Omium faster by (p50)** | per round "
        "| Omium p99 | SQLite p99 | p99 ratio | target |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    verdicts = []
    report["pairs"] = pairs
    for mine, peer, t1, t100 in PAIRS[:2]:
        rs = pairs[f"{mine},{peer}"]
        for i, (size, target) in enumerate(((KIB, t1), (100 * KIB, t100))):
            zs = [r["sizes"][i] for r in rs]
            m50 = statistics.median(z["mine_p50"] for z in zs)
            p50 = statistics.median(z["peer_p50"] for z in zs)
            m99 = statistics.median(z["mine_p99"] for z in zs)
            p99 = statistics.median(z["peer_p99"] for z in zs)
            x = statistics.median(z["peer_p50"] / z["mine_p50"] for z in zs)
            xs = [z["peer_p50"] / z["mine_p50"] for z in zs]
            print(
                f"| {LABELS[mine]} | {LABELS[peer]} | {size // KIB} KiB | {m50:,.0f} µs | {p50:,.0f} µs | **{x:.1f}×** "
                f"| {min(xs):.1f}–{max(xs):.1f}× | {m99:,.0f} µs | {p99:,.0f} µs | {p99 / m99:.1f}× | ≥ {target:g}× |"
            )
            verdicts.append(
                f"- {LABELS[mine]} vs {LABELS[peer]}, {size // KIB} KiB, interleaved: {x:.1f}× "
                f"(rounds {min(xs):.1f}–{max(xs):.1f}×; target ≥ {target:g}×): {'MET' if x >= target else 'MISSED'}"
            )
            if mine == "omium-buffered":
                verdicts.append(f"  - p99: SQLite's is {p99 / m99:.1f}× Omium's (target ≥ 5×): {'MET' if p99 / m99 >= 5 else 'MISSED'}")
    print(flush=True)

    # 2. conversation bytes
    conv = {
        s: spawn(["--worker", "conversation", "--system", s, "--steps", str(args.conversation_steps // scale)], root)
        for s in ("sqlite", "omium")
    }
    report["conversation"] = conv
    x = conv["sqlite"]["disk_bytes"] / conv["omium"]["disk_bytes"]
    print(f"## 2. Bytes on disk after a {conv['omium']['steps']:,}-step conversation (one message appended per step, real graph)\n")
    print("| checkpointer | checkpoints | final state (JSON) | bytes on disk | wall time |")
    print("|---|---:|---:|---:|---:|")
    for s, label in (("sqlite", "`SqliteSaver`, SQLite default"), ("omium", "`OmiumSaver`, sync")):
        c = conv[s]
        print(f"| {label} | {c['checkpoints']:,} | {c['final_state_json_bytes']:,} B | {c['disk_bytes']:,} B | {c['wall']:.1f} s |")
    print(f"\nOmium is **{x:.1f}×** smaller on disk (target ≥ 20×).\n", flush=True)
    verdicts.append(
        f"- bytes on disk, {conv['omium']['steps']:,}-step conversation: {x:.1f}× smaller (target ≥ 20×): {'MET' if x >= 20 else 'MISSED'}"
    )

    # 3. CrewAI
    crew_plan = json.dumps([[KIB, 400 // scale], [100 * KIB, 150 // scale]])
    crew = {
        s: spawn(["--worker", "crewai", "--system", s, "--plan", crew_plan], root)
        for s in ("crewai-sqlite", "crewai-sync", "crewai-buffered")
    }
    report["crewai"] = crew
    print("## 3. CrewAI flow state: `save_state` and `load_state`\n")
    print("| persistence | durability | state | save p50 | save p99 | load p50 | load p99 |")
    print("|---|---|---|---:|---:|---:|---:|")
    for s, r in crew.items():
        for z in r["sizes"]:
            print(
                f"| {LABELS[s]} | {r['facts']['durability']} | {z['size'] // KIB} KiB | {z['save_p50']:,.0f} µs "
                f"| {z['save_p99']:,.0f} µs | {z['load_p50']:,.0f} µs | {z['load_p99']:,.0f} µs |"
            )
    print()
    for i, z in enumerate(crew["crewai-sync"]["sizes"]):
        q = crew["crewai-sqlite"]["sizes"][i]
        line = (
            f"- CrewAI, {z['size'] // KIB} KiB: Omium sync saves {q['save_p50'] / z['save_p50']:.1f}× faster (p50) "
            f"and loads {q['load_p50'] / z['load_p50']:.1f}× faster than SQLiteFlowPersistence"
        )
        print(line)
        verdicts.append(line)
    report["load"]["end"] = loadavg()
    print("\n## Verdicts\n")
    print("\n".join(verdicts))
    print(
        f"\nload average: start {report['load']['start']}, after step rounds {report['load']['after_steps']}, end {report['load']['end']}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tenth of the iterations (smoke test)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conversation-steps", type=int, default=1000)
    ap.add_argument("--dir", help="where stores go (must be a real disk: fsync on tmpfs is free)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--no-strace", action="store_true", help="do not count fsyncs with strace")
    ap.add_argument("--worker", choices=["steps", "pair", "conversation", "crewai"], help=argparse.SUPPRESS)
    ap.add_argument("--system", help=argparse.SUPPRESS)
    ap.add_argument("--plan", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "steps":
        args.plan = json.loads(args.plan)
        print(json.dumps(worker_steps(args)))
    elif args.worker == "pair":
        args.plan = json.loads(args.plan)
        print(json.dumps(worker_pair(args)))
    elif args.worker == "conversation":
        print(json.dumps(worker_conversation(args)))
    elif args.worker == "crewai":
        args.plan = json.loads(args.plan)
        print(json.dumps(worker_crewai(args)))
    else:
        main_driver(args)


if __name__ == "__main__":
    main()
