"""What tracing adds to an ``@omium.checkpoint`` step (buffered, 1 KiB result), in one run: the
same step with ``tracing=True`` and ``tracing=False``, alternated, each against the undecorated
body; then the parts of the traced path alone (the step's Python ``Span``, and the native record
with and without the spans it records).

    benches/python/.venv/bin/python benches/python/bench_step_tracing.py [--rounds 3]

Each figure is the lowest mean of 20 executions of 1,000 steps (the least disturbed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import omium  # noqa: E402
from bench import result_maker  # noqa: E402
from omium import _runtime, _trace  # noqa: E402

BLOCK = 1000


def lowest_mean(make, executions: int = 20) -> float:
    """µs per call of make(ctx)(i), the lowest mean over `executions` executions of BLOCK calls."""
    best = float("inf")
    for _ in range(executions):
        with omium.execution(f"t{time.perf_counter_ns()}") as ctx:
            fn = make(ctx)
            t = time.perf_counter_ns()
            for i in range(BLOCK):
                fn(i)
            best = min(best, (time.perf_counter_ns() - t) / BLOCK / 1000)
    return best


def parts(body) -> dict[str, float]:  # type: ignore[no-untyped-def]
    codec = _runtime.config().codec

    def spans(ctx):  # type: ignore[no-untyped-def]
        def one(i: int) -> None:
            _trace.end_step_span(_trace.step_span("step", i, None, (i,), {}, ctx.execution_id), None, None)

        return one

    def record(with_span: bool):  # type: ignore[no-untyped-def]
        def make(ctx):  # type: ignore[no-untyped-def]
            run = ctx.run
            seqs = iter([run.reserve() for _ in range(BLOCK)])
            data = iter([codec.encode(body(i)) for i in range(BLOCK)])
            trace_id = _trace._trace_id_of(ctx.execution_id)

            def one(i: int) -> None:
                span = (trace_id, _trace._new_span_id(), None, time.time_ns(), True) if with_span else None
                run.record(next(seqs), "step", next(data), None, None, "step", [], [], {"omium.codec": codec.name}, span)

            return one

        return make

    return {
        "the step's Python Span (step_span + end_step_span)": lowest_mean(spans),
        "native record, no span": lowest_mean(record(False)),
        "native record with the checkpoint's and the step's spans": lowest_mean(record(True)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    body = result_maker(1024, 2)
    print("| round | tracing | step µs | undecorated body µs | overhead µs |")
    print("|---|---|---:|---:|---:|")
    for r in range(a.rounds):
        for tracing in (True, False):
            d = tempfile.mkdtemp(prefix="omium-bench-tracing-")
            try:
                omium.init(os.path.join(d, "store"), durability="buffered", tracing=tracing)
                step = omium.checkpoint("step")(body)
                traced = lowest_mean(lambda ctx, s=step: s)
                plain = lowest_mean(lambda ctx: body)
                print(f"| {r + 1} | {'on' if tracing else 'off'} | {traced:.2f} | {plain:.2f} | {traced - plain:.2f} |")
                if tracing and r == a.rounds - 1:
                    found = parts(body)
            finally:
                omium.shutdown()
                shutil.rmtree(d, ignore_errors=True)
    print()
    for name, us in found.items():
        print(f"{name}: {us:.2f} µs")


if __name__ == "__main__":
    main()
