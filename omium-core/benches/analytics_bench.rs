//! An analytics query over 30 days of a store of 100,000 executions (design target: ≤ 50 ms),
//! against the scan-based answer in the same run: the same execution-level figures counted
//! from every execution and failure record (`analytics::scan_figures`).
//!
//! The store's clock is shifted while the executions are written, so that they spread over
//! 30 days (10 workflows, 3 tenants, 3 steps each, one in ten failing) as a month of real
//! traffic would; the query reads day cells for whole days and hour cells at the ends.
//!
//! cargo bench -p omium-core --bench analytics_bench  (OMIUM_BENCH_EXECUTIONS=N to change N)

use std::time::Instant;

use omium_core::analytics::{scan_figures, AnalyticsStore, GroupBy, MetricsQuery};
use omium_core::rollup::DAY_MS;
use omium_core::store::{now_ms, shift_clock_ms};
use omium_core::{BeginOptions, Durability, Error, OpenOptions, Store};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let n: u64 = std::env::var("OMIUM_BENCH_EXECUTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        OpenOptions {
            durability: Durability::Buffered,
            ..Default::default()
        },
    )
    .unwrap();
    let now = now_ms();
    let t = Instant::now();
    for i in 0..n {
        // Spread evenly over the 30 days before now.
        let at = now - 30 * DAY_MS + i * 30 * DAY_MS / n;
        shift_clock_ms(at as i64 - now_ms_real() as i64);
        let run = store
            .begin(
                &format!("exec-{i}"),
                BeginOptions {
                    workflow: format!("workflow-{}", i % 10),
                    tenant: format!("tenant-{}", i % 3),
                    agent: format!("agent-{}", i % 4),
                    ..BeginOptions::default()
                },
            )
            .unwrap();
        for s in ["plan", "act", "reflect"] {
            run.step(s, || Ok::<_, Error>(vec![b'x'; 256])).unwrap();
        }
        if i % 10 == 0 {
            run.fail("tool error").unwrap();
        } else {
            run.complete(None).unwrap();
        }
    }
    shift_clock_ms(0);
    store.flush().unwrap();
    println!(
        "wrote {n} executions over 30 days in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let q = MetricsQuery {
        by: vec![GroupBy::Workflow],
        ..MetricsQuery::last(30 * DAY_MS + 3_600_000)
    };
    let report = store.metrics(&q).unwrap();
    let scanned = scan_figures(&store, &q).unwrap();
    assert_eq!(report.totals.started, n);
    assert_eq!(
        (report.totals.completed, report.totals.failed),
        (scanned.completed, scanned.failed)
    );
    assert_eq!(report.groups.len(), 10);

    let rollup_ms = median(
        (0..21)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(store.metrics(&q).unwrap());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    let scan_ms = median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(scan_figures(&store, &q).unwrap());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    println!(
        "30-day query by workflow over {n} executions: rollups {rollup_ms:.2} ms (median of 21), \
         scan {scan_ms:.1} ms (median of 5), scan / rollups = {:.0}x; target <= 50 ms: {}",
        scan_ms / rollup_ms,
        if rollup_ms <= 50.0 { "met" } else { "NOT met" }
    );
}

/// The real clock, with the shift undone.
fn now_ms_real() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
