//! Cost to the caller of recording a span (design target: ≤ 1 µs), against a no-op baseline in
//! the same run: the same span handed to a no-op sink instead. Storage happens on the
//! background writer; between rounds the bench waits for it (untimed), so the queue never
//! fills and nothing is dropped (the drop count is printed to prove it).
//!
//! Then what a traced step's spans cost its checkpoint write: the same 1 KiB `buffered` steps
//! recorded by `RunHandle::record_traced` with and without their two spans (the checkpoint's
//! and the step's, as the bindings record them), in alternating rounds of one run.
//!
//! cargo bench -p omium-core --bench trace_bench

use std::hint::black_box;
use std::time::{Duration, Instant};

use omium_core::prelude::*;
use omium_core::serve::{RunHandle, TracedStep};
use omium_core::trace::{Span, SpanKind};
use omium_core::{BeginOptions, NewCheckpoint, OpenOptions, Store};

fn make(i: u64) -> Span {
    let mut s = Span::new("exec-bench", "chat gpt-4o", "llm");
    s.kind = SpanKind::Client;
    s.agent = "agent-1".into();
    s.set("gen_ai.operation.name", "chat");
    s.set("gen_ai.request.model", "gpt-4o");
    s.set("gen_ai.usage.input_tokens", 812i64);
    s.set("gen_ai.usage.output_tokens", 97i64);
    s.start_ns += i;
    s.end_ns = s.start_ns + 1_000;
    s
}

/// Per-span latencies (ns) of `rounds` rounds of `n` spans.
fn run(rounds: usize, n: usize, mut each: impl FnMut(Span), mut between: impl FnMut()) -> Vec<f64> {
    let mut lat = Vec::with_capacity(rounds * n);
    for r in 0..rounds {
        let spans: Vec<Span> = (0..n).map(|i| make((r * n + i) as u64)).collect();
        for s in spans {
            let t = Instant::now();
            each(s);
            lat.push(t.elapsed().as_nanos() as f64);
        }
        between();
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    lat
}

fn open_buffered(dir: &std::path::Path) -> Store {
    Store::open_with(
        dir,
        OpenOptions {
            durability: omium_core::Durability::Buffered,
            ..Default::default()
        },
    )
    .unwrap()
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p) as usize]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_buffered(dir.path());
    store.record_span(make(0));
    store.flush_spans().unwrap();
    let (rounds, n) = (20, 5_000);
    let mut table = Vec::new();
    for pair in 0..3 {
        // The no-op sink keeps the span (freeing it would be work record_span does not do
        // on the caller's thread either): what is left is the timer's own cost.
        let mut kept = Vec::with_capacity(rounds * n);
        let base = run(rounds, n, |s| kept.push(black_box(s)), || {});
        drop(kept);
        let rec = run(
            rounds,
            n,
            |s| store.record_span(black_box(s)),
            || store.flush_spans().unwrap(),
        );
        table.push((
            pair,
            pct(&base, 0.5),
            pct(&rec, 0.5),
            pct(&base, 0.99),
            pct(&rec, 0.99),
        ));
    }
    let st = store.span_stats();
    println!("| round pair | no-op p50 ns | record_span p50 ns | no-op p99 ns | record_span p99 ns | record − no-op p50 ns |");
    println!("|---|---|---|---|---|---|");
    for (p, b50, r50, b99, r99) in &table {
        println!(
            "| {p} | {b50:.0} | {r50:.0} | {b99:.0} | {r99:.0} | {:.0} |",
            r50 - b50
        );
    }
    println!(
        "spans recorded {}, stored {}, dropped {} (target: record ≤ 1 µs)",
        st.recorded, st.stored, st.dropped
    );
    drop(store);
    traced_steps();
}

/// Per-record latencies (ns) of one round of `n` 1 KiB steps, each with its two spans when
/// `traced`; the round's spans are stored (untimed) before it returns. Between records the
/// thread spins for `body` (untimed), as a binding's step spends its time in the interpreter,
/// so that spans arrive at the rate a binding makes them.
fn traced_round(store: &Store, round: usize, n: usize, traced: bool, body: Duration) -> Vec<f64> {
    let run = RunHandle::Local(
        store
            .begin(&format!("traced-{round}"), BeginOptions::default())
            .unwrap(),
    );
    let mut state = vec![b'x'; 1024];
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        state[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let span = traced.then(|| TracedStep {
            trace_id: [7; 16],
            span_id: omium_core::trace::new_span_id(),
            parent: None,
            start_ns: omium_core::trace::now_ns(),
            end_step: true,
            step_attributes: Vec::new(),
            now_ns: None,
        });
        let t = Instant::now();
        let seq = run.reserve().unwrap();
        let new = NewCheckpoint {
            name: "step",
            state: &state,
            ..NewCheckpoint::default()
        };
        black_box(run.record_traced(seq, new, span).unwrap());
        let done = Instant::now();
        lat.push((done - t).as_nanos() as f64);
        while done.elapsed() < body {
            std::hint::spin_loop();
        }
    }
    store.flush_spans().unwrap();
    lat
}

fn traced_steps() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_buffered(dir.path());
    let n = 20_000;
    // About what a Python or Node step spends outside its native record.
    let body = Duration::from_micros(8);
    traced_round(&store, 0, n / 4, true, body);
    println!();
    println!("| round | spans | mean ns | p50 ns | p90 ns | p99 ns | p99.9 ns |");
    println!("|---|---|---|---|---|---|---|");
    for round in 1..=6 {
        let traced = round % 2 == 0;
        let mut lat = traced_round(&store, round, n, traced, body);
        let mean = lat.iter().sum::<f64>() / lat.len() as f64;
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "| {round} | {} | {mean:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            if traced { "2" } else { "0" },
            pct(&lat, 0.5),
            pct(&lat, 0.9),
            pct(&lat, 0.99),
            pct(&lat, 0.999)
        );
    }
}
