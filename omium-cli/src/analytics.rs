//! `omium metrics`: execution analytics over a window, optionally grouped.

use std::io::Write;

use omium_core::analytics::{Figures, MetricsReport};

use crate::recovery::duration;
use crate::view::{json, table};

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 1.0 => format!("{v:.3}ms"),
        Some(v) => duration(v.round() as u64),
        None => "-".into(),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn usd(v: f64) -> String {
    if v == 0.0 {
        "$0".into()
    } else if v < 0.01 {
        format!("${v:.6}")
    } else {
        format!("${v:.4}")
    }
}

fn summary(out: &mut impl Write, f: &Figures) {
    let _ = writeln!(
        out,
        "executions    {} started, {} completed, {} failed, {} cancelled, {} paused; success rate {}",
        f.started,
        f.completed,
        f.failed,
        f.cancelled,
        f.paused,
        pct(f.success_rate)
    );
    let _ = writeln!(
        out,
        "latency       execution p50 {} p95 {} p99 {}; step p50 {} p95 {} p99 {} ({} steps)",
        ms(f.execution_p50_ms),
        ms(f.execution_p95_ms),
        ms(f.execution_p99_ms),
        ms(f.step_p50_ms),
        ms(f.step_p95_ms),
        ms(f.step_p99_ms),
        f.steps
    );
    let by_type: Vec<String> = f
        .failures_by_type
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "failures      {}{}; {} recovered, MTTR {}",
        f.failures,
        if by_type.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_type.join(", "))
        },
        f.recovered,
        ms(f.mttr_ms)
    );
    let _ = writeln!(
        out,
        "retries       {}; rollbacks {}; forks {}",
        f.retries, f.rollbacks, f.forks
    );
    let _ = writeln!(
        out,
        "LLM           {} tokens in, {} out; cost {} ({} per execution)",
        f.tokens_in,
        f.tokens_out,
        usd(f.llm_cost_usd),
        f.cost_per_execution_usd
            .map(usd)
            .unwrap_or_else(|| "-".into())
    );
    let _ = writeln!(
        out,
        "cost saved    {} ({} tokens, {} steps replayed from checkpoints)",
        usd(f.cost_saved_usd),
        f.tokens_saved,
        f.replayed_steps
    );
}

pub fn report(out: &mut impl Write, as_json: bool, r: &MetricsReport) {
    if as_json {
        json(out, r);
        return;
    }
    let _ = writeln!(out, "window        {} .. {}", r.since, r.until);
    summary(out, &r.totals);
    if r.by.is_empty() {
        return;
    }
    let _ = writeln!(out);
    let mut header: Vec<&str> = r.by.iter().map(String::as_str).collect();
    header.extend([
        "started",
        "completed",
        "failed",
        "success",
        "exec p95",
        "steps",
        "step p95",
        "failures",
        "MTTR",
        "cost",
        "saved",
    ]);
    let rows = r
        .groups
        .iter()
        .map(|g| {
            let f = &g.figures;
            let mut row: Vec<String> =
                r.by.iter()
                    .map(|k| g.key.get(k).cloned().unwrap_or_default())
                    .collect();
            row.extend([
                f.started.to_string(),
                f.completed.to_string(),
                f.failed.to_string(),
                pct(f.success_rate),
                ms(f.execution_p95_ms),
                f.steps.to_string(),
                ms(f.step_p95_ms),
                f.failures.to_string(),
                ms(f.mttr_ms),
                usd(f.llm_cost_usd),
                usd(f.cost_saved_usd),
            ]);
            row
        })
        .collect();
    table(out, &header, rows);
}
