"""Where the time of one ``@omium.checkpoint`` step goes (buffered, 1 KiB result by default).

    benches/python/run.sh --profile            # or: .venv/bin/python profile_step.py [--durability sync] [--size 1024]

Part 1 times each piece of the step path of ``omium/_steps.py`` (``_wrap_sync.wrapper``) on its
own, in a loop, with the same store, executions of 1,000 steps and results as the benchmark, then the
native record after other work in the same loop (what the pieces cost together and apart). Part 2
runs the decorated step under cProfile and prints the functions by their own time.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import result_maker  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--durability", default="buffered")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("-n", type=int, default=20000, help="calls per measured piece")
    a = ap.parse_args()

    import omium
    from omium import _runtime, _steps

    d = tempfile.mkdtemp(prefix="omium-prof-")
    try:
        omium.init(os.path.join(d, "store"), durability=a.durability)
        n = a.n
        block = 1000 if a.size <= 16 * 1024 else 200
        body = result_maker(a.size, 1)
        step = omium.checkpoint("step")(result_maker(a.size, 2))
        stp = _steps._Step(body, "step", (), (), 0, None, None, None, None)
        codec = _runtime.config().codec
        print(f"omium {omium.__version__}, durability={a.durability}, result {a.size} B (msgpack {len(codec.encode(body(0)))} B)")
        print(f"{n} calls per piece, in executions of {block} steps as in bench.py; the lowest per-execution mean (least disturbed)")
        print(f"load average: {'{:.2f} {:.2f} {:.2f}'.format(*os.getloadavg())}\n")
        serial = iter(range(10**9))

        def piece(make) -> float:  # type: ignore[no-untyped-def]
            """Times fn(i) for n calls, in fresh executions of `block` calls (fn = make(ctx) is built untimed).

            Returns the lowest per-execution mean: the least disturbed by other work on the machine.
            """
            means = []
            clock = time.perf_counter_ns
            for _ in range(max(1, n // block)):
                with omium.execution(f"prof-{next(serial)}") as ctx:
                    fn = make(ctx)
                    t0 = clock()
                    for i in range(block):
                        fn(i)
                    means.append((clock() - t0) / block / 1000)
            return min(means)

        def recorder(ctx):  # type: ignore[no-untyped-def]
            # Distinct values (the same bytes again would dedup its chunks), encoded untimed.
            run = ctx.run
            seqs = iter([run.reserve() for _ in range(block)])
            data = iter([codec.encode(body(i)) for i in range(block)])
            return lambda i: run.record(next(seqs), "step", next(data), key=None, agent=None, preconditions=[], postconditions=[])

        def encoder(ctx):  # type: ignore[no-untyped-def]
            values = iter([body(i) for i in range(block)])
            return lambda i: codec.encode(next(values))

        def missing(ctx):  # type: ignore[no-untyped-def]
            run = ctx.run
            return lambda i: run.recorded(10**9 + i, "step", None)

        gc.collect()
        piece(lambda ctx: step)  # warm-up
        rows: list[tuple[str, float]] = [
            ("undecorated body(i)", piece(lambda ctx: body)),
            ("decorated step(i)", piece(lambda ctx: step)),
            ("  _Step.begin: current.get + _position + run.reserve()", piece(lambda ctx: lambda i: stp.begin((i,), {}))),
            ("  _Step.replay: run.recorded(seq) miss (native)", piece(missing)),
            (
                "  current_step.set + reset (contextvar)",
                piece(lambda ctx: lambda i: _runtime.current_step.reset(_runtime.current_step.set("1"))),
            ),
            (
                "  _call_sync_with_timeout(body) (no timeout)",
                piece(lambda ctx: lambda i: _steps._call_sync_with_timeout(body, None, "step", (i,), {})),
            ),
            ("  codec.encode(result) (msgpack)", piece(encoder)),
            ("  run.record(...) (native: core Run::record + the returned dict)", piece(recorder)),
        ]

        class StubRun:
            """Stands in for the native Run: the decorated step then runs only its Python layer."""

            def __init__(self) -> None:
                self.n = 0

            def reserve(self) -> int:
                self.n += 1
                return self.n

            def position(self, parent, key):  # type: ignore[no-untyped-def]
                return (self.reserve(), key) if parent is None else (0, f"{parent}/{key}")

            def recorded(self, seq, name, key=None):  # type: ignore[no-untyped-def]
                return None

            def begin_step(self, name, parent, key):  # type: ignore[no-untyped-def]
                seq, key = self.position(parent, key)
                return seq, key, None

            def record(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                return None

        def stubbed(ctx):  # type: ignore[no-untyped-def]
            stub = _runtime.ExecutionContext(run=StubRun(), execution_id="stub", codec=codec)  # type: ignore[arg-type]

            def call(i: int) -> None:
                token = _runtime.current.set(stub)
                step(i)
                _runtime.current.reset(token)

            return call

        contextvar_cost = piece(lambda ctx: lambda i: _runtime.current.reset(_runtime.current.set(None)))
        rows.append(("decorated step(i), native Run replaced by no-op stubs", piece(stubbed) - contextvar_cost))
        whole = rows[1][1] - rows[0][1]
        rec = rows[-2][1]
        python_layer = rows[-1][1] - rows[0][1]
        rows.append(("overhead = decorated - undecorated", whole))
        rows.append(("  run.record alone", rec))
        rows.append(("  the Python layer alone (stubbed step - undecorated)", python_layer))
        rows.append(("  the rest: the two together cost more than apart (caches, allocator, GC)", whole - rec - python_layer))

        # Together and apart: the record after other work in the same loop. After Python work
        # that touches memory (the body and the codec) it costs more than alone; after the same
        # time of bytecode that touches nothing (an empty loop) it does not.
        def interleaved(work):  # type: ignore[no-untyped-def]
            def make(ctx):  # type: ignore[no-untyped-def]
                run = ctx.run
                return lambda i: run.record(run.reserve(), "step", work(i), key=None, agent=None, preconditions=[], postconditions=[])

            return make

        data = codec.encode(body(0))

        def spin(i: int) -> bytes:
            for _ in range(150):
                pass
            return data

        work = piece(lambda ctx: lambda i: codec.encode(body(i)))
        after_work = piece(interleaved(lambda i: codec.encode(body(i))))
        spun = piece(lambda ctx: spin)
        after_spin = piece(interleaved(spin))
        rows += [
            ("body(i) + codec.encode alone", work),
            ("  run.record after body(i) + codec.encode, same loop", after_work),
            ("  costs more than its two parts apart by", after_work - work - rec),
            ("an empty loop of 150 (bytecode that touches no memory) alone", spun),
            ("  run.record after the empty loop, same loop", after_spin),
            ("  costs more than its two parts apart by", after_spin - spun - rec),
        ]
        w = max(len(r[0]) for r in rows)
        for name, us in rows:
            print(f"  {name:<{w}}  {us:8.2f} µs")

        # Part 2: cProfile of the decorated step.
        print("\ncProfile of", n, "decorated steps (own time):")
        prof = cProfile.Profile()
        for b in range(max(1, n // block)):
            with omium.execution(f"prof-cprofile-{b}"):
                prof.enable()
                for i in range(block):
                    step(i)
                prof.disable()
        st = pstats.Stats(prof)
        st.sort_stats("tottime").print_stats(40)
        omium.shutdown()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
