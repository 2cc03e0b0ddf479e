"""Where a synced write's time goes, against SQLite: one synced 1 KiB write, p50 and p90 of N.

    python benches/python/bench_fsync.py [N] [--dir DIR]

Rows, each measured in this run on the same file system (DIR, default a new directory under
/var/tmp, which is on disk where /tmp may not be):
- append 1.1 KB to a growing file + fdatasync (the file's size changes: a journal commit)
- overwrite 1.1 KB the file already holds + fdatasync (no metadata to commit)
- a SQLite transaction of one insert, journal_mode=WAL, synchronous=FULL (Python's sqlite3)
- an ``@omium.checkpoint`` step of a 1 KiB result, durability="sync", tracing off

SQLite's WAL is written from its start again after each checkpoint, RocksDB's log grows: the
first two rows show what that costs an fsync here (docs/performance.md).
"""

import argparse
import os
import shutil
import sqlite3
import tempfile
import time


def quantiles(ns: list[int]) -> str:
    s = sorted(ns)
    return f"p50 {s[len(s) // 2] / 1e3:7.1f} µs   p90 {s[int(len(s) * 0.9)] / 1e3:7.1f} µs"


def file_loop(path: str, n: int, overwrite: bool) -> list[int]:
    buf = os.urandom(1100)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if overwrite:
            os.pwrite(fd, b"\0" * (n * len(buf) + 4096), 0)
        os.fsync(fd)
        out = []
        for i in range(n):
            if overwrite:
                os.pwrite(fd, buf, i * len(buf))
            else:
                os.write(fd, buf)
            t = time.perf_counter_ns()
            os.fdatasync(fd)
            out.append(time.perf_counter_ns() - t)
        return out
    finally:
        os.close(fd)


def sqlite_loop(path: str, n: int, value: bytes) -> list[int]:
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    out = []
    for i in range(n):
        t = time.perf_counter_ns()
        c.execute("BEGIN")
        c.execute("INSERT INTO t VALUES (?, ?)", (i, value))
        c.execute("COMMIT")
        out.append(time.perf_counter_ns() - t)
    c.close()
    return out


def omium_loop(path: str, n: int, value: bytes) -> list[int]:
    import omium

    omium.init(path=path, durability="sync", tracing=False)
    out: list[int] = []

    @omium.checkpoint("step")
    def step(i: int) -> bytes:
        return value

    @omium.workflow("fsync-bench")
    def run() -> None:
        for i in range(n):
            t = time.perf_counter_ns()
            step(i)
            out.append(time.perf_counter_ns() - t)

    run.run(execution_id="fsync-bench")
    omium.shutdown()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=2000)
    ap.add_argument("--dir", default="/var/tmp")
    a = ap.parse_args()
    value = os.urandom(512).hex().encode()
    root = tempfile.mkdtemp(prefix="omium-fsync-", dir=a.dir)
    try:
        rows = [
            ("append + fdatasync", lambda: file_loop(os.path.join(root, "append"), a.n, False)),
            ("overwrite + fdatasync", lambda: file_loop(os.path.join(root, "overwrite"), a.n, True)),
            ("SQLite commit (WAL, FULL)", lambda: sqlite_loop(os.path.join(root, "db.sqlite"), a.n, value)),
            ("omium step (sync)", lambda: omium_loop(os.path.join(root, "omium"), a.n, value)),
        ]
        print(f"{a.n} synced 1 KiB writes each, in {a.dir}")
        for name, loop in rows:
            print(f"{name:28s} {quantiles(loop())}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
