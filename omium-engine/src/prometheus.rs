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

/// What one sample of a family holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Point {
    /// A counter's or a gauge's value.
    Value(f64),
    /// A histogram: `cumulative[i]` values are at most `bounds[i]`; `count` in all.
    Histogram {
        bounds: &'static [f64],
        cumulative: Vec<u64>,
        count: u64,
        sum: f64,
    },
}

/// The kind of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: the same instruments are written in the Prometheus text format
/// ([`Family::write`]) and exported over OTLP (`crate::otlp_metrics`).
#[derive(Clone, Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<(Vec<(String, String)>, Point)>,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// A counter's or a gauge's sample.
    pub fn value(&mut self, l: &[(&str, &str)], v: f64) {
        self.samples.push((owned(l), Point::Value(v)));
    }

    /// A histogram's sample: `h` (microseconds) counted into `bounds` (seconds).
    fn histogram(&mut self, l: &[(&str, &str)], h: &Histogram, bounds: &'static [f64]) {
        let cumulative = bounds.iter().map(|le| h.count_le(le * 1e6)).collect();
        let point = Point::Histogram {
            bounds,
            cumulative,
            count: h.count(),
            sum: h.sum_us as f64 / 1e6,
        };
        self.samples.push((owned(l), point));
    }

    /// The family in the text format, with its HELP and TYPE lines.
    pub fn write(&self, out: &mut String) {
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
        for (l, point) in &self.samples {
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            match point {
                Point::Value(v) => {
                    let _ = writeln!(out, "{}{} {v}", self.name, labels(&l));
                }
                Point::Histogram {
                    bounds,
                    cumulative,
                    count,
                    sum,
                } => {
                    let les: Vec<String> = bounds.iter().map(|le| format!("{le}")).collect();
                    let les = les.iter().map(String::as_str).chain(["+Inf"]);
                    for (le, n) in les.zip(cumulative.iter().chain([count])) {
                        let mut with = l.clone();
                        with.push(("le", le));
                        let _ = writeln!(out, "{}_bucket{} {n}", self.name, labels(&with));
                    }
                    let _ = writeln!(out, "{}_sum{} {sum}", self.name, labels(&l));
                    let _ = writeln!(out, "{}_count{} {count}", self.name, labels(&l));
                }
            }
        }
    }
}

fn owned(l: &[(&str, &str)]) -> Vec<(String, String)> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `families` in the Prometheus text format.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        f.write(&mut out);
    }
    out
}

/// The exposition of `store`'s analytics, all time, in the text format.
pub fn exposition(store: &Store) -> Result<String> {
    Ok(render(&families(store)?))
}

/// `store`'s analytics, all time, as metric families.
pub fn families(store: &Store) -> Result<Vec<Family>> {
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
        Kind::Counter,
        "Executions whose first run began.",
    );
    let mut ended = Family::new(
        "omium_execution_endings_total",
        Kind::Counter,
        "Runs that ended an execution, by the status they left it in.",
    );
    let mut retries = Family::new(
        "omium_execution_retries_total",
        Kind::Counter,
        "Runs begun again on an execution that had run (after a crash, a failure, a rollback, a retry).",
    );
    let mut rollbacks = Family::new("omium_rollbacks_total", Kind::Counter, "Rollbacks made.");
    let mut forks = Family::new("omium_forks_total", Kind::Counter, "Forks made.");
    let mut steps = Family::new(
        "omium_steps_total",
        Kind::Counter,
        "Steps recorded, by the agent that owns them.",
    );
    let mut replayed = Family::new(
        "omium_steps_replayed_total",
        Kind::Counter,
        "Steps a resumed run answered from their checkpoint instead of running them again.",
    );
    let mut failed = Family::new(
        "omium_failures_total",
        Kind::Counter,
        "Failures detected, by type.",
    );
    let mut recovered = Family::new(
        "omium_failures_recovered_total",
        Kind::Counter,
        "Failures recovered, by type.",
    );
    let mut tokens = Family::new(
        "omium_llm_tokens_total",
        Kind::Counter,
        "Tokens recorded on LLM calls and steps.",
    );
    let mut cost = Family::new(
        "omium_llm_cost_usd_total",
        Kind::Counter,
        "USD recorded on LLM calls and steps.",
    );
    let mut saved = Family::new(
        "omium_cost_saved_usd_total",
        Kind::Counter,
        "Recorded USD of steps answered from their checkpoint instead of run again.",
    );
    let mut exec_s = Family::new(
        "omium_execution_duration_seconds",
        Kind::Histogram,
        "From an execution's creation to its completion or failure.",
    );
    let mut step_s = Family::new(
        "omium_step_duration_seconds",
        Kind::Histogram,
        "From a step found not recorded to its checkpoint.",
    );
    for ((tenant, workflow), c) in &per {
        let l = [("tenant", tenant.as_str()), ("workflow", workflow.as_str())];
        started.value(&l, c.started as f64);
        for (status, n) in [
            ("completed", c.completed),
            ("failed", c.failed),
            ("cancelled", c.cancelled),
            ("paused", c.paused),
        ] {
            let mut with = l.to_vec();
            with.push(("status", status));
            ended.value(&with, n as f64);
        }
        retries.value(&l, c.retries as f64);
        rollbacks.value(&l, c.rollbacks as f64);
        forks.value(&l, c.forks as f64);
        replayed.value(&l, c.replayed as f64);
        for (direction, n) in [("in", c.tokens_in), ("out", c.tokens_out)] {
            let mut with = l.to_vec();
            with.push(("direction", direction));
            tokens.value(&with, n as f64);
        }
        cost.value(&l, c.cost_micro_usd as f64 / 1e6);
        saved.value(&l, c.saved_micro_usd as f64 / 1e6);
        exec_s.histogram(&l, &c.execution_us, EXECUTION_BUCKETS);
        step_s.histogram(&l, &c.step_us, STEP_BUCKETS);
    }
    for ((tenant, workflow, agent), n) in &agents {
        steps.value(
            &[("tenant", tenant), ("workflow", workflow), ("agent", agent)],
            *n as f64,
        );
    }
    for ((tenant, workflow, kind), (f, r)) in &failures {
        let l = [
            ("tenant", tenant.as_str()),
            ("workflow", workflow.as_str()),
            ("type", kind.as_str()),
        ];
        failed.value(&l, *f as f64);
        recovered.value(&l, *r as f64);
    }
    let mut events = Family::new(
        "omium_events_total",
        Kind::Counter,
        "Events written to the store's feed (its audit log).",
    );
    events.value(&[], store.audit_seq()? as f64);
    Ok(vec![
        started, ended, retries, rollbacks, forks, steps, replayed, failed, recovered, tokens,
        cost, saved, exec_s, step_s, events,
    ])
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
        let mut f = Family::new("x_seconds", Kind::Histogram, "x");
        f.histogram(&[], &h, &[0.1, 1.0, 5.0]);
        assert_eq!(
            render(&[f]).lines().skip(2).collect::<Vec<_>>(),
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
