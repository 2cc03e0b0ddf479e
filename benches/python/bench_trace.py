"""Cost of a span from Python (design target: ≤ 5 µs) against a no-op baseline in the same run:
``with omium.trace("x")`` against ``with nullcontext()``, and an ``@omium.trace`` function
against the same function undecorated. Spans are stored by the background writer; between
rounds the bench waits for it, untimed.

    .venv/bin/python benches/python/bench_trace.py
"""

from __future__ import annotations

import contextlib
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
    n, rounds = 20_000, 7
    for _ in range(rounds):
        rows["with omium.trace(...)"][0].append(per_op(plain_block, n))
        rows["with omium.trace(...)"][1].append(per_op(traced_block, n))
        store.flush_spans()
        rows["@omium.trace function"][0].append(per_op(work, n))
        rows["@omium.trace function"][1].append(per_op(traced_fn, n))
        store.flush_spans()
    print(f"python {sys.version.split()[0]}, {rounds} rounds of {n:,} spans, median of rounds")
    print("| what | baseline ns | traced ns | span cost µs | target ≤ 5 µs |")
    print("|---|---|---|---|---|")
    for name, (base, traced) in rows.items():
        b, t = statistics.median(base), statistics.median(traced)
        cost = (t - b) / 1000
        print(f"| {name} | {b:.0f} | {t:.0f} | {cost:.2f} | {'met' if cost <= 5 else 'not met'} |")
    st = store.span_stats()
    print(f"spans: {st}")
    omium.shutdown()


if __name__ == "__main__":
    main()
