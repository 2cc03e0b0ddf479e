"""Omium's Python benchmark: per-step overhead of ``@omium.checkpoint``, and a durable workflow
of N sequential steps against DBOS Transact (SQLite) and LangGraph (``SqliteSaver``).

Run it through ``benches/python/run.sh`` (which builds omium in release mode into its own
virtualenv with the peers). Every figure comes from this one run on this machine: the
undecorated baseline and every peer are measured side by side, each configuration in its own
fresh process and temporary store, in interleaved rounds.

    bench.py [--quick] [--rounds 3] [--steps 100] [--dir DIR] [--json FILE]

The driver spawns itself as workers (``--worker overhead|peer``); a worker prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
KIB = 1024


# ---------------------------------------------------------------- helpers


def pct(xs: list[float], q: float) -> float:
    """Percentile with linear interpolation (q in 0..100)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def result_maker(size: int, seed: int = 1) -> Callable[[int], dict]:
    """A step body: returns ``{"i": i, "data": <size characters of fresh random text>}``.

    Every result is new random text (hex of random bytes), so no two steps share content: the
    store's chunk dedup gets nothing for free (its worst case), compression only the hex's 2×.
    """
    rnd = random.Random(seed * 1_000_003 + size)
    nbytes = size // 2

    def make(i: int) -> dict:
        return {"i": i, "data": rnd.randbytes(nbytes).hex()}

    return make


def loadavg() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "-"


def filesystem_of(path: str) -> str:
    path = os.path.realpath(path)
    best = ("", "?", "?")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                    best = (mnt, fstype, dev)
    except OSError:
        pass
    return f"{best[1]} ({best[2]} on {best[0]})"


def machine_facts(bench_dir: str) -> dict:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "filesystem": filesystem_of(bench_dir),
        "omium": version("omium"),
        "dbos": version("dbos"),
        "langgraph": version("langgraph"),
        "langgraph-checkpoint-sqlite": version("langgraph-checkpoint-sqlite"),
        "sqlalchemy": version("sqlalchemy"),
    }


# ---------------------------------------------------------------- worker: step overhead


def worker_overhead(args: argparse.Namespace) -> dict:
    import omium

    omium.init(os.path.join(args.dir, "store"), durability=args.durability)
    out = {"durability": args.durability, "sizes": []}
    for size, n, warm in args.plan:
        # Two bodies with the same cost; each result is fresh random text.
        plain = result_maker(size, 1)
        durable = omium.checkpoint(f"step_{size}")(result_maker(size, 2))
        t_plain: list[float] = []
        t_durable: list[float] = []
        clock = time.perf_counter_ns
        block = 1000
        i = 0
        total = warm + n
        gc.collect()
        while i < total:
            # One execution per 1000 steps, as a long workflow would have; begin/complete of
            # the execution are outside the timed calls.
            with omium.execution(f"overhead-{size}-{i}"):
                for _ in range(min(block, total - i)):
                    # Interleaved, alternating order: both see the same machine state.
                    if i & 1:
                        t0 = clock()
                        plain(i)
                        t1 = clock()
                        durable(i)
                        t2 = clock()
                        a, b = t1 - t0, t2 - t1
                    else:
                        t0 = clock()
                        durable(i)
                        t1 = clock()
                        plain(i)
                        t2 = clock()
                        b, a = t1 - t0, t2 - t1
                    if i >= warm:
                        t_plain.append(a / 1000.0)
                        t_durable.append(b / 1000.0)
                    i += 1
        out["sizes"].append(
            {
                "size": size,
                "n": n,
                "plain_p50": pct(t_plain, 50),
                "plain_p99": pct(t_plain, 99),
                "durable_p50": pct(t_durable, 50),
                "durable_p99": pct(t_durable, 99),
                "durable_mean": statistics.fmean(t_durable),
                "plain_mean": statistics.fmean(t_plain),
            }
        )
    omium.shutdown()
    return out


# ---------------------------------------------------------------- worker: workflows


def omium_peer(args: argparse.Namespace, durability: str) -> dict:
    import omium

    omium.init(os.path.join(args.dir, "store"), durability=durability)
    make = result_maker(KIB)
    lat: list[float] = []
    clock = time.perf_counter

    @omium.checkpoint("step")
    def step(i: int) -> dict:
        return make(i)

    @omium.workflow("bench_workflow")
    def wf(n: int) -> int:
        acc = 0
        for i in range(n):
            t0 = clock()
            r = step(i)
            lat.append(clock() - t0)
            acc += r["i"]
        return acc

    def run(r: int) -> None:
        wf.run(args.steps, execution_id=f"wf-{r}")

    facts = {
        "fsync": f"RocksDB WAL fsync'd before each step returns ({durability})"
        if durability == "sync"
        else "RocksDB WAL written, not fsync'd (buffered)"
    }
    res = _time_runs(args, run, lat)
    omium.shutdown()
    return {**res, "facts": facts}


def dbos_peer(args: argparse.Namespace, journal: str) -> dict:
    import sqlalchemy as sa
    from dbos import DBOS, SetWorkflowID

    path = os.path.join(args.dir, "dbos.sqlite")
    if journal == "wal":
        # journal_mode=WAL is stored in the database file: DBOS's own connections then use it.
        c = sqlite3.connect(path)
        assert c.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        c.close()
    DBOS(config={"name": "omium-bench", "system_database_url": f"sqlite:///{path}", "log_level": "WARNING"})
    make = result_maker(KIB)
    lat: list[float] = []
    clock = time.perf_counter

    @DBOS.step()
    def step(i: int) -> dict:
        return make(i)

    @DBOS.workflow()
    def wf(n: int) -> int:
        acc = 0
        for i in range(n):
            t0 = clock()
            r = step(i)
            lat.append(clock() - t0)
            acc += r["i"]
        return acc

    DBOS.launch()
    import dbos._dbos as dbos_internal

    engine = dbos_internal._dbos_global_instance._sys_db.engine  # to report what it really runs with
    with engine.connect() as conn:
        jm = conn.execute(sa.text("PRAGMA journal_mode")).scalar()
        sync = conn.execute(sa.text("PRAGMA synchronous")).scalar()

    def run(r: int) -> None:
        with SetWorkflowID(f"wf-{r}"):
            wf(args.steps)

    res = _time_runs(args, run, lat)
    DBOS.destroy()
    return {**res, "facts": {"journal_mode": jm, "synchronous": _sync_name(sync)}}


def _sync_name(v: int) -> str:
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(int(v), str(v))


def langgraph_peer(args: argparse.Namespace, awaited: bool) -> dict:
    import threading

    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.func import entrypoint, task

    class CountingSaver(SqliteSaver):
        """SqliteSaver that counts committed task results (``put_writes`` with a return value)."""

        def __init__(self, conn: sqlite3.Connection) -> None:
            super().__init__(conn)
            self.returns = 0
            self.cv = threading.Condition()

        def put_writes(self, config, writes, task_id, task_path=""):  # type: ignore[no-untyped-def]
            r = super().put_writes(config, writes, task_id, task_path)
            if any(c == "__return__" for c, _ in writes):
                with self.cv:
                    self.returns += 1
                    self.cv.notify_all()
            return r

        def wait_returns(self, n: int) -> None:
            with self.cv:
                if not self.cv.wait_for(lambda: self.returns >= n, timeout=30):
                    raise RuntimeError("LangGraph task write never committed")

    path = os.path.join(args.dir, "langgraph.sqlite")
    # As SqliteSaver.from_conn_string opens it.
    conn = sqlite3.connect(path, check_same_thread=False)
    saver = CountingSaver(conn) if awaited else SqliteSaver(conn)
    saver.setup()
    jm = conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    make = result_maker(KIB)
    lat: list[float] = []
    clock = time.perf_counter

    @task
    def step(i: int) -> dict:
        return make(i)

    @entrypoint(checkpointer=saver)
    def wf(n: int) -> int:
        acc = 0
        start = saver.returns if awaited else 0
        for i in range(n):
            t0 = clock()
            r = step(i).result()
            if awaited:
                # Bench shim, not a LangGraph setting: wait until this task's write is committed
                # (LangGraph commits it in a background thread after handing back the result).
                saver.wait_returns(start + i + 1)
            lat.append(clock() - t0)
            acc += r["i"]
        return acc

    def run(r: int) -> None:
        wf.invoke(args.steps, {"configurable": {"thread_id": f"wf-{r}"}})

    res = _time_runs(args, run, lat)
    conn.close()
    return {**res, "facts": {"journal_mode": jm, "synchronous": _sync_name(sync)}}


def _time_runs(args: argparse.Namespace, run, lat: list[float]) -> dict:  # type: ignore[no-untyped-def]
    for r in range(args.warm):
        run(-1 - r)
    lat.clear()
    gc.collect()
    t0 = time.perf_counter()
    for r in range(args.runs):
        run(r)
    wall = time.perf_counter() - t0
    steps = args.runs * args.steps
    assert len(lat) == steps, (len(lat), steps)
    lat_us = [x * 1e6 for x in lat]
    return {
        "steps": steps,
        "wall": wall,
        "steps_per_s": steps / wall,
        "p50": pct(lat_us, 50),
        "p99": pct(lat_us, 99),
        "lat_us": lat_us,
    }


PEERS = {
    "omium-sync": lambda a: omium_peer(a, "sync"),
    "omium-buffered": lambda a: omium_peer(a, "buffered"),
    "dbos": lambda a: dbos_peer(a, "default"),
    "dbos-wal": lambda a: dbos_peer(a, "wal"),
    "langgraph": lambda a: langgraph_peer(a, awaited=False),
    "langgraph-awaited": lambda a: langgraph_peer(a, awaited=True),
}

LABELS = {
    "omium-sync": "Omium `@workflow` + `@checkpoint`, durability=sync",
    "omium-buffered": "Omium `@workflow` + `@checkpoint`, durability=buffered",
    "dbos": "DBOS `@DBOS.workflow` + `@DBOS.step`, SQLite as DBOS opens it",
    "dbos-wal": "DBOS, SQLite switched to journal_mode=WAL",
    "langgraph": "LangGraph `@entrypoint` + `@task`, SqliteSaver (default durability)",
    "langgraph-awaited": "LangGraph, each task's write awaited (bench shim)",
}

# Runs per round (after warm-up runs) of a workflow of --steps steps.
RUNS = {"omium-sync": 20, "omium-buffered": 50, "dbos": 5, "dbos-wal": 8, "langgraph": 8, "langgraph-awaited": 8}


# ---------------------------------------------------------------- driver


def spawn(worker_args: list[str], root: str) -> dict:
    d = tempfile.mkdtemp(prefix="w-", dir=root)
    try:
        p = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--dir", d, *worker_args],
            capture_output=True,
            text=True,
            check=False,
        )
        if p.returncode != 0:
            sys.stderr.write(p.stdout + p.stderr)
            raise SystemExit(f"worker {' '.join(worker_args)} failed ({p.returncode})")
        return json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def fsync_floor(root: str, n: int) -> dict:
    """Append 1 KiB and fdatasync, n times: the disk's floor for any per-step-durable system."""
    path = os.path.join(root, "fsync-floor")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    buf = os.urandom(KIB)
    lat = []
    try:
        for _ in range(n // 10):  # warm-up
            os.write(fd, buf)
            os.fdatasync(fd)
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, buf)
            os.fdatasync(fd)
            lat.append((time.perf_counter() - t0) * 1e6)
    finally:
        os.close(fd)
        os.unlink(path)
    return {"p50": pct(lat, 50), "p99": pct(lat, 99)}


def count_fsyncs(name: str, root: str, steps: int) -> float | None:
    """fsync+fdatasync calls per step, by strace: (calls for 12 runs - calls for 2 runs) / 10 runs."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    counts = []
    for runs in (2, 12):
        d = tempfile.mkdtemp(prefix="s-", dir=root)
        log = os.path.join(root, "strace.out")
        try:
            cmd = [strace, "-f", "-c", "-o", log, "-e", "trace=fsync,fdatasync", sys.executable, os.path.abspath(__file__)]
            cmd += ["--dir", d, "--worker", "peer", "--system", name, "--runs", str(runs), "--warm", "0", "--steps", str(steps)]
            p = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if p.returncode != 0:
                return None
            total = 0
            with open(log) as f:
                for line in f:
                    parts = line.split()
                    if parts and parts[-1] in ("fsync", "fdatasync"):
                        total += int(parts[3])
            counts.append(total)
        finally:
            shutil.rmtree(d, ignore_errors=True)
            if os.path.exists(log):
                os.unlink(log)
    return (counts[1] - counts[0]) / (10 * steps)


def main_driver(args: argparse.Namespace) -> None:
    root = args.dir or tempfile.mkdtemp(prefix="omium-pybench-")
    os.makedirs(root, exist_ok=True)
    facts = machine_facts(root)
    q = args.quick
    scale = 10 if q else 1
    report: dict = {"facts": facts, "load": {"start": loadavg()}}

    print("# Omium Python benchmark")
    print()
    for k, v in facts.items():
        print(f"- {k}: {v}")
    print(f"- load average at start: {report['load']['start']}")
    print(f"- bench dir: {root}")
    print(flush=True)

    floor = fsync_floor(root, 2000 // scale)
    report["fsync_floor"] = floor
    print(f"Disk floor, append 1 KiB + fdatasync: p50 {floor['p50']:.0f} µs, p99 {floor['p99']:.0f} µs\n", flush=True)

    # 1. per-step overhead
    plans = {
        "buffered": [(KIB, 20000 // scale, 2000 // scale), (100 * KIB, 5000 // scale, 500 // scale)],
        "sync": [(KIB, 3000 // scale, 300 // scale), (100 * KIB, 2000 // scale, 200 // scale)],
    }
    overhead = []
    for dur in ("buffered", "sync"):
        plan = json.dumps(plans[dur])
        overhead.append(spawn(["--worker", "overhead", "--durability", dur, "--plan", plan], root))
    report["overhead"] = overhead
    report["load"]["after_overhead"] = loadavg()

    print("## 1. `@omium.checkpoint` per-step overhead (decorated minus undecorated, same run, interleaved)\n")
    print("| durability | result | n | undecorated p50 | decorated p50 | **overhead p50** | overhead p99 | mean overhead |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for o in overhead:
        for s in o["sizes"]:
            print(
                f"| {o['durability']} | {s['size'] // KIB} KiB | {s['n']} | {s['plain_p50']:.1f} µs | {s['durable_p50']:.1f} µs | "
                f"**{s['durable_p50'] - s['plain_p50']:.1f} µs** | {s['durable_p99'] - s['plain_p99']:.1f} µs | "
                f"{s['durable_mean'] - s['plain_mean']:.1f} µs |"
            )
    print(flush=True)

    # 2. peers, interleaved rounds
    names = args.systems.split(",")
    per: dict[str, list[dict]] = {n: [] for n in names}
    floors = []
    for rnd in range(args.rounds):
        floors.append(fsync_floor(root, 300)["p50"])  # the disk's state this round (others may write)
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            runs = max(2, RUNS[name] // scale)
            warm = 1 if name.startswith("dbos") else 2
            r = spawn(["--worker", "peer", "--system", name, "--runs", str(runs), "--warm", str(warm), "--steps", str(args.steps)], root)
            per[name].append(r)
            print(f"  round {rnd + 1} {name}: {r['steps_per_s']:.0f} steps/s (load {loadavg()})", file=sys.stderr, flush=True)
    report["load"]["after_peers"] = loadavg()
    report["fsync_floor_per_round_p50"] = floors

    fsyncs: dict[str, float | None] = {}
    if not args.no_strace:
        for name in names:
            fsyncs[name] = count_fsyncs(name, root, args.steps)

    rows = {}
    for name in names:
        rs = per[name]
        lat = [x for r in rs for x in r["lat_us"]]
        rows[name] = {
            "steps_per_s": statistics.median(r["steps_per_s"] for r in rs),
            "rounds_steps_per_s": [round(r["steps_per_s"], 1) for r in rs],
            "p50": pct(lat, 50),
            "p99": pct(lat, 99),
            "steps": sum(r["steps"] for r in rs),
            "facts": rs[0]["facts"],
            "fsyncs_per_step": fsyncs.get(name),
        }
    report["peers"] = rows
    report["load"]["end"] = loadavg()

    ref = rows.get("omium-sync")
    title = f"## 2. Workflow of {args.steps} sequential steps, each returning ~1 KiB"
    print(f"{title} ({args.rounds} rounds, median steps/s; latency pooled)\n")
    print("| system | durability as configured | fsyncs/step | steps/s (rounds' min–max) | step p50 | step p99 ", end="")
    print("| Omium sync faster by (steps/s) | (p50) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        r = rows[name]
        f = r["facts"]
        dur = f.get("fsync") or f"journal_mode={f['journal_mode']}, synchronous={f['synchronous']}"
        fs = "-" if r["fsyncs_per_step"] is None else f"{r['fsyncs_per_step']:.2f}"
        mine = ref is None or name.startswith("omium")
        ratio = "" if mine else f"**{ref['steps_per_s'] / r['steps_per_s']:.1f}×**"
        ratio50 = "" if mine else f"{r['p50'] / ref['p50']:.1f}×"
        spread = f"{min(r['rounds_steps_per_s']):,.0f}–{max(r['rounds_steps_per_s']):,.0f}"
        print(f"| {LABELS[name]} | {dur} | {fs} | {r['steps_per_s']:,.0f} ({spread}) ", end="")
        print(f"| {r['p50']:,.0f} µs | {r['p99']:,.0f} µs | {ratio} | {ratio50} |")
    print()
    print("fdatasync floor p50 at the start of each round: " + ", ".join(f"{x:.0f} µs" for x in floors) + "\n")

    # verdicts
    print("## Verdicts\n")
    b1 = next(s for o in overhead if o["durability"] == "buffered" for s in o["sizes"] if s["size"] == KIB)
    ov = b1["durable_p50"] - b1["plain_p50"]

    def per_round(peer: str) -> str:
        """Range of the ratio over rounds (round k of Omium sync against round k of the peer)."""
        xs = [a["steps_per_s"] / b["steps_per_s"] for a, b in zip(per["omium-sync"], per[peer], strict=True)]
        return f" (per round {min(xs):.1f}–{max(xs):.1f}×)" if len(xs) > 1 else ""

    print(f"- overhead p50, buffered, 1 KiB: {ov:.1f} µs (target ≤ 15 µs): {'MET' if ov <= 15 else 'MISSED'}")
    if ref is not None:
        for peer, target in (("langgraph", 3.0), ("dbos", 8.0)):
            if peer in rows:
                x = ref["steps_per_s"] / rows[peer]["steps_per_s"]
                verdict = "MET" if x >= target else "MISSED"
                print(f"- Omium sync vs {peer}: {x:.1f}× faster{per_round(peer)} (target ≥ {target:.0f}×): {verdict}")
        for peer in ("langgraph-awaited", "dbos-wal"):
            if peer in rows:
                x = ref["steps_per_s"] / rows[peer]["steps_per_s"]
                print(f"- Omium sync vs {peer} (equal per-step durability): {x:.1f}× faster{per_round(peer)}")
    print(
        f"\nload average: start {report['load']['start']}, after overhead {report['load']['after_overhead']}, "
        f"after peers {report['load']['after_peers']}, end {report['load']['end']}"
    )

    if args.json:
        for r in report["peers"].values():
            r.pop("lat_us", None)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if not args.dir:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tenth of the iterations (smoke test)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=100, help="steps per workflow")
    ap.add_argument("--systems", default=",".join(PEERS))
    ap.add_argument("--dir", help="where stores go (must be a real disk: fsync on tmpfs is free)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--no-strace", action="store_true", help="do not count fsyncs with strace")
    # worker arguments
    ap.add_argument("--worker", choices=["overhead", "peer"], help=argparse.SUPPRESS)
    ap.add_argument("--durability", help=argparse.SUPPRESS)
    ap.add_argument("--plan", help=argparse.SUPPRESS)
    ap.add_argument("--system", help=argparse.SUPPRESS)
    ap.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--warm", type=int, default=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "overhead":
        args.plan = json.loads(args.plan)
        print(json.dumps(worker_overhead(args)))
    elif args.worker == "peer":
        print(json.dumps(PEERS[args.system](args)))
    else:
        main_driver(args)


if __name__ == "__main__":
    main()
