"""Cost of a span from Python (target: ≤ 3 µs, issue 21) against a no-op baseline in the same run:
``with omium.trace("x")`` against ``with nullcontext()``, and an ``@omium.trace`` function
against the same function undecorated. Spans are stored by the background writer; between
rounds the bench waits for it, untimed.

    .venv/bin/python benches/python/bench_trace.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time

import omium


def per_op(fn, n: int) -> float:
    t = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a tenth of the spans (smoke test)")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args()
    omium.init(path=tempfile.mkdtemp(prefix="omium-bench-trace-"), durability="buffered")
    store = omium._runtime.store()

    def traced_block():
        with omium.trace("work", span_type="tool", tool="search"):
            pass

    def plain_block():
        with contextlib.nullcontext():
            pass

    def work():
        return 1

    traced_fn = omium.trace(span_type="function")(work)
    rows = {"with omium.trace(...)": ([], []), "@omium.trace function": ([], [])}
    n, rounds = (2_000, 3) if a.quick else (20_000, 7)
    for _ in range(rounds):
        rows["with omium.trace(...)"][0].append(per_op(plain_block, n))
        rows["with omium.trace(...)"][1].append(per_op(traced_block, n))
        store.flush_spans()
        rows["@omium.trace function"][0].append(per_op(work, n))
        rows["@omium.trace function"][1].append(per_op(traced_fn, n))
        store.flush_spans()
    print(f"python {sys.version.split()[0]}, {rounds} rounds of {n:,} spans, median of rounds")
    print("| what | baseline ns | traced ns | span cost µs | target ≤ 3 µs |")
    print("|---|---|---|---|---|")
    figures = {}
    for name, (base, traced) in rows.items():
        b, t = statistics.median(base), statistics.median(traced)
        cost = (t - b) / 1000
        figures[name] = {"baseline_ns": b, "traced_ns": t, "span_us": cost}
        print(f"| {name} | {b:.0f} | {t:.0f} | {cost:.2f} | {'met' if cost <= 3 else 'not met'} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"quick": a.quick, "figures": figures}, f, indent=1)
    st = store.span_stats()
    print(f"spans: {st}")
    omium.shutdown()


if __name__ == "__main__":
    main()
