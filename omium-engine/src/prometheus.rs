//! The store's analytics in the Prometheus text exposition format (version 0.0.4), for the
//! `/metrics` route of `omium serve`: all-time counters and latency histograms per tenant and
//! workflow, read from the day cells of the rollups (so a scrape reads cells, not executions).
//!
//! Counters only grow: cells are only ever added to, and every event lands in exactly one day
//! cell. Histogram buckets are the standard latency buckets; a value is counted in a bucket when
//! the upper bound of its rollup bucket (at most 9% above the value) is within it.

use std::collections::BTreeMap;
use std::fmt::Write;

use omium_storage::error::Result;
use omium_storage::rollup::{Cell, Histogram, Level};
use omium_storage::Store;

/// Upper bounds in seconds of the latency histograms.
const EXECUTION_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
];
const STEP_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// One metric family of an exposition: its samples, written with its HELP and TYPE lines.
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    lines: Vec<String>,
}

impl Family {
    /// `kind`: counter, gauge or histogram.
    pub fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            lines: Vec::new(),
        }
    }

    /// A sample of the family (`suffix`: `""`, or `_bucket`, `_sum`, `_count` of a histogram).
    pub fn sample(&mut self, suffix: &str, l: &[(&str, &str)], v: impl std::fmt::Display) {
        self.lines
            .push(format!("{}{suffix}{} {v}", self.name, labels(l)));
    }

    fn histogram(&mut self, l: &[(&str, &str)], h: &Histogram, bounds: &[f64]) {
        for le in bounds {
            let le_text = format!("{le}");
            let mut with = l.to_vec();
            with.push(("le", &le_text));
            let n = h.count_le(le * 1e6);
            self.sample("_bucket", &with, n);
        }
        let mut with = l.to_vec();
        with.push(("le", "+Inf"));
        self.sample("_bucket", &with, h.count());
        self.sample("_sum", l, h.sum_us as f64 / 1e6);
        self.sample("_count", l, h.count());
    }

    pub fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for l in &self.lines {
            let _ = writeln!(out, "{l}");
        }
    }
}

/// The exposition of `store`'s analytics, all time.
pub fn exposition(store: &Store) -> Result<String> {
    // (tenant, workflow) → summed cell; failures also by type, steps also by agent.
    let mut per: BTreeMap<(String, String), Cell> = BTreeMap::new();
    let mut failures: BTreeMap<(String, String, String), (u64, u64)> = BTreeMap::new();
    let mut agents: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for r in store.rollups(Level::Day, 0, u64::MAX) {
        let (_, d, c) = r?;
        let key = (d.tenant.clone(), d.workflow.clone());
        if c.failures > 0 || c.recovered > 0 {
            let f = failures
                .entry((d.tenant.clone(), d.workflow.clone(), d.failure_type.clone()))
                .or_default();
            f.0 += c.failures;
            f.1 += c.recovered;
        }
        if c.steps > 0 {
            *agents
                .entry((d.tenant.clone(), d.workflow.clone(), d.agent.clone()))
                .or_default() += c.steps;
        }
        per.entry(key).or_default().add(&c);
    }

    let mut started = Family::new(
        "omium_executions_started_total",
        "counter",
        "Executions whose first run began.",
    );
    let mut ended = Family::new(
        "omium_execution_endings_total",
        "counter",
        "Runs that ended an execution, by the status they left it in.",
    );
    let mut retries = Family::new(
        "omium_execution_retries_total",
        "counter",
        "Runs begun again on an execution that had run (after a crash, a failure, a rollback, a retry).",
    );
    let mut rollbacks = Family::new("omium_rollbacks_total", "counter", "Rollbacks made.");
    let mut forks = Family::new("omium_forks_total", "counter", "Forks made.");
    let mut steps = Family::new(
        "omium_steps_total",
        "counter",
        "Steps recorded, by the agent that owns them.",
    );
    let mut replayed = Family::new(
        "omium_steps_replayed_total",
        "counter",
        "Steps a resumed run answered from their checkpoint instead of running them again.",
    );
    let mut failed = Family::new(
        "omium_failures_total",
        "counter",
        "Failures detected, by type.",
    );
    let mut recovered = Family::new(
        "omium_failures_recovered_total",
        "counter",
        "Failures recovered, by type.",
    );
    let mut tokens = Family::new(
        "omium_llm_tokens_total",
        "counter",
        "Tokens recorded on LLM calls and steps.",
    );
    let mut cost = Family::new(
        "omium_llm_cost_usd_total",
        "counter",
        "USD recorded on LLM calls and steps.",
    );
    let mut saved = Family::new(
        "omium_cost_saved_usd_total",
        "counter",
        "Recorded USD of steps answered from their checkpoint instead of run again.",
    );
    let mut exec_s = Family::new(
        "omium_execution_duration_seconds",
        "histogram",
        "From an execution's creation to its completion or failure.",
    );
    let mut step_s = Family::new(
        "omium_step_duration_seconds",
        "histogram",
        "From a step found not recorded to its checkpoint.",
    );
    for ((tenant, workflow), c) in &per {
        let l = [("tenant", tenant.as_str()), ("workflow", workflow.as_str())];
        started.sample("", &l, c.started);
        for (status, n) in [
            ("completed", c.completed),
            ("failed", c.failed),
            ("cancelled", c.cancelled),
            ("paused", c.paused),
        ] {
            let mut with = l.to_vec();
            with.push(("status", status));
            ended.sample("", &with, n);
        }
        retries.sample("", &l, c.retries);
        rollbacks.sample("", &l, c.rollbacks);
        forks.sample("", &l, c.forks);
        replayed.sample("", &l, c.replayed);
        for (direction, n) in [("in", c.tokens_in), ("out", c.tokens_out)] {
            let mut with = l.to_vec();
            with.push(("direction", direction));
            tokens.sample("", &with, n);
        }
        cost.sample("", &l, c.cost_micro_usd as f64 / 1e6);
        saved.sample("", &l, c.saved_micro_usd as f64 / 1e6);
        exec_s.histogram(&l, &c.execution_us, EXECUTION_BUCKETS);
        step_s.histogram(&l, &c.step_us, STEP_BUCKETS);
    }
    for ((tenant, workflow, agent), n) in &agents {
        steps.sample(
            "",
            &[("tenant", tenant), ("workflow", workflow), ("agent", agent)],
            n,
        );
    }
    for ((tenant, workflow, kind), (f, r)) in &failures {
        let l = [
            ("tenant", tenant.as_str()),
            ("workflow", workflow.as_str()),
            ("type", kind.as_str()),
        ];
        failed.sample("", &l, f);
        recovered.sample("", &l, r);
    }
    let mut events = Family::new(
        "omium_events_total",
        "counter",
        "Events written to the store's feed (its audit log).",
    );
    events.sample("", &[], store.audit_seq()?);
    let mut out = String::new();
    for f in [
        &started, &ended, &retries, &rollbacks, &forks, &steps, &replayed, &failed, &recovered,
        &tokens, &cost, &saved, &exec_s, &step_s, &events,
    ] {
        f.write(&mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("workflow", "a\"b\\c\nd")]),
            "{workflow=\"a\\\"b\\\\c\\nd\"}"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        for us in [50_000, 400_000, 2_000_000, 7_000_000] {
            h.record(us);
        }
        let mut f = Family::new("x_seconds", "histogram", "x");
        f.histogram(&[], &h, &[0.1, 1.0, 5.0]);
        assert_eq!(
            f.lines,
            [
                "x_seconds_bucket{le=\"0.1\"} 1",
                "x_seconds_bucket{le=\"1\"} 2",
                "x_seconds_bucket{le=\"5\"} 3",
                "x_seconds_bucket{le=\"+Inf\"} 4",
                "x_seconds_sum 9.45",
                "x_seconds_count 4",
            ]
        );
    }
}
