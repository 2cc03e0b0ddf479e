//! Execution analytics: the design's metrics over any window, grouped by workflow, agent,
//! tenant, step, failure type and period, read from the rollup cells that storage keeps as
//! events are written (`omium_storage::rollup`), so a query reads cells, not executions.
//!
//! Definitions (docs/operations.md has the table):
//! - `success_rate` = completed ÷ (completed + failed + cancelled), over run endings in the
//!   window. An execution that failed and completed after a resume counts one of each.
//! - execution latency: creation to completion or failure; step latency: from the moment a
//!   step was found not recorded to its checkpoint.
//! - `failure_rate_by_type` = failures of a type ÷ executions started in the window.
//! - `mttr_ms`: mean time from a failure's detection to its recovery, over recovered failures.
//! - `cost_saved_usd`: the recorded cost of steps a resumed run answered from their checkpoint
//!   instead of running again (after a crash, a rollback, a recovery).
//!
//! The recovery figures of [`crate::recovery::RecoveryMetrics`] keep their own names
//! (`recovery_rate`), so that `success_rate` means one thing.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use omium_storage::error::{Error, Result};
use omium_storage::rollup::{Cell, Dims, Level, DAY_MS, HOUR_MS, MINUTE_MS, MINUTE_RETENTION_MS};
use omium_storage::store::now_ms;
use omium_storage::{Status, Store};

/// A dimension or period to group by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    Workflow,
    Agent,
    Tenant,
    Step,
    FailureType,
    Hour,
    Day,
    Week,
    Month,
}

impl GroupBy {
    pub const ALL: [GroupBy; 9] = [
        GroupBy::Workflow,
        GroupBy::Agent,
        GroupBy::Tenant,
        GroupBy::Step,
        GroupBy::FailureType,
        GroupBy::Hour,
        GroupBy::Day,
        GroupBy::Week,
        GroupBy::Month,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Workflow => "workflow",
            GroupBy::Agent => "agent",
            GroupBy::Tenant => "tenant",
            GroupBy::Step => "step",
            GroupBy::FailureType => "failure_type",
            GroupBy::Hour => "hour",
            GroupBy::Day => "day",
            GroupBy::Week => "week",
            GroupBy::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Result<GroupBy> {
        GroupBy::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| Error::InvalidArgument {
                what: "metrics group",
                detail: format!(
                    "{s:?} is not one; expected {}",
                    GroupBy::ALL.map(GroupBy::name).join(", ")
                ),
            })
    }

    /// The group's value for a cell, or None when the cell is not about this dimension
    /// (an execution's start has no agent).
    fn value(self, bucket_ms: u64, d: &Dims) -> Option<String> {
        let dim = |s: &str| (!s.is_empty()).then(|| s.to_string());
        match self {
            GroupBy::Workflow => Some(d.workflow.clone()),
            GroupBy::Tenant => Some(d.tenant.clone()),
            GroupBy::Agent => dim(&d.agent),
            GroupBy::Step => dim(&d.step),
            GroupBy::FailureType => dim(&d.failure_type),
            GroupBy::Hour => Some(format!(
                "{}Z",
                &omium_storage::rfc3339_ms((bucket_ms - bucket_ms % HOUR_MS) as i64)[..16]
            )),
            GroupBy::Day => Some(omium_storage::rfc3339_ms(bucket_ms as i64)[..10].into()),
            GroupBy::Week => {
                // Weeks start on Monday (UTC); 1970-01-01 was a Thursday.
                let day = (bucket_ms / DAY_MS) as i64;
                let monday = day - (day + 3).rem_euclid(7);
                Some(omium_storage::rfc3339_ms(monday * DAY_MS as i64)[..10].into())
            }
            GroupBy::Month => Some(omium_storage::rfc3339_ms(bucket_ms as i64)[..7].into()),
        }
    }
}

/// What to compute: a window `[since_ms, until_ms)` (minute resolution in the last two days,
/// hour resolution before: cells whose minute or hour overlaps it count), groups, and filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsQuery {
    pub since_ms: u64,
    pub until_ms: u64,
    pub by: Vec<GroupBy>,
    pub workflow: Option<String>,
    pub tenant: Option<String>,
    pub agent: Option<String>,
    pub step: Option<String>,
    /// Only failure cells of this type (failures, recoveries, MTTR of one type).
    pub failure_type: Option<String>,
}

/// The default window when none is given: the last 24 hours.
pub const DEFAULT_WINDOW_MS: u64 = DAY_MS;

impl MetricsQuery {
    /// The last `window_ms` up to now.
    pub fn last(window_ms: u64) -> MetricsQuery {
        let now = now_ms();
        MetricsQuery {
            since_ms: now.saturating_sub(window_ms),
            until_ms: now,
            ..MetricsQuery::default()
        }
    }

    /// A query from its JSON form, the one every binding and the HTTP API pass:
    /// `{"since": "7d" | "2026-11-01" | "2026-11-01T12:00:00Z" | ms, "until": ...,
    /// "by": "workflow,day" | ["workflow", "day"], "workflow": ..., "tenant": ...,
    /// "agent": ..., "step": ..., "failure_type": ...}`. Missing `since`: 24 hours before `until` (default now).
    pub fn from_json(v: &Value) -> Result<MetricsQuery> {
        let bad = |what: &'static str, detail: String| Error::InvalidArgument { what, detail };
        let obj = match v {
            Value::Null => serde_json::Map::new(),
            Value::Object(m) => m.clone(),
            other => {
                return Err(bad(
                    "metrics query",
                    format!("expected a JSON object, got {other}"),
                ))
            }
        };
        let known = [
            "since",
            "until",
            "by",
            "workflow",
            "tenant",
            "agent",
            "step",
            "failure_type",
        ];
        if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(bad(
                "metrics query",
                format!("unknown field {k:?}; expected one of {}", known.join(", ")),
            ));
        }
        let now = now_ms();
        let time = |k: &'static str| -> Result<Option<u64>> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                // JavaScript numbers arrive as floats: a whole one is milliseconds too.
                Some(Value::Number(n)) => n
                    .as_u64()
                    .or_else(|| {
                        n.as_f64()
                            .filter(|f| f.fract() == 0.0 && (0.0..9.0e15).contains(f))
                            .map(|f| f as u64)
                    })
                    .map(Some)
                    .ok_or_else(|| bad(k, format!("{n} is not a time in milliseconds since 1970"))),
                Some(Value::String(s)) => parse_time(k, s, now).map(Some),
                Some(other) => Err(bad(
                    k,
                    format!("expected a duration (7d), a date or milliseconds, got {other}"),
                )),
            }
        };
        let until_ms = time("until")?.unwrap_or(now);
        let since_ms = time("since")?.unwrap_or(until_ms.saturating_sub(DEFAULT_WINDOW_MS));
        if since_ms >= until_ms {
            return Err(bad(
                "metrics window",
                format!(
                    "since ({}) is not before until ({})",
                    omium_storage::rfc3339_ms(since_ms as i64),
                    omium_storage::rfc3339_ms(until_ms as i64)
                ),
            ));
        }
        let by = match obj.get("by") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(GroupBy::parse)
                .collect::<Result<_>>()?,
            Some(Value::Array(a)) => a
                .iter()
                .map(|g| {
                    g.as_str()
                        .ok_or_else(|| bad("metrics group", format!("{g} is not a string")))
                        .and_then(GroupBy::parse)
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                return Err(bad(
                    "metrics group",
                    format!("expected \"workflow,day\" or a list of names, got {other}"),
                ))
            }
        };
        // Bounded: each group once (a list of thousands would only multiply the keys).
        for (i, g) in by.iter().enumerate() {
            if by[..i].contains(g) {
                return Err(bad(
                    "metrics group",
                    format!("{:?} is given twice; name each group once", g.name()),
                ));
            }
        }
        let text = |k: &'static str| -> Result<Option<String>> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(bad(k, format!("expected a string, got {other}"))),
            }
        };
        Ok(MetricsQuery {
            since_ms,
            until_ms,
            by,
            workflow: text("workflow")?,
            tenant: text("tenant")?,
            agent: text("agent")?,
            step: text("step")?,
            failure_type: text("failure_type")?,
        })
    }

    fn keeps(&self, d: &Dims) -> bool {
        let ok = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
        ok(&self.workflow, &d.workflow)
            && ok(&self.tenant, &d.tenant)
            && ok(&self.agent, &d.agent)
            && ok(&self.step, &d.step)
            && ok(&self.failure_type, &d.failure_type)
    }
}

/// A point in time from text: a duration before `now` (`90s`, `30m`, `24h`, `7d`, `2w`), a
/// date (`2026-11-01`, midnight UTC), an RFC 3339 time in UTC (`2026-11-01T12:00:00Z`), or
/// milliseconds since 1970.
pub fn parse_time(what: &'static str, s: &str, now: u64) -> Result<u64> {
    let bad = || Error::InvalidArgument {
        what,
        detail: format!(
            "{s:?} is not a time; expected a duration before now (30m, 24h, 7d, 2w), a date \
             (2026-11-01), a UTC time (2026-11-01T12:00:00Z) or milliseconds since 1970"
        ),
    };
    let s = s.trim();
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    if let Some(unit) = s.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        if let Ok(n) = s[..s.len() - 1].parse::<u64>() {
            let ms = match unit {
                's' => 1000,
                'm' => 60_000,
                'h' => HOUR_MS,
                'd' => DAY_MS,
                'w' => 7 * DAY_MS,
                _ => return Err(bad()),
            };
            return Ok(now.saturating_sub(n.saturating_mul(ms)));
        }
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<i64>().ok());
    let (y, m, d) = match (num(0..4), num(5..7), num(8..10)) {
        (Some(y), Some(m), Some(d))
            if s.as_bytes()[4] == b'-'
                && s.as_bytes()[7] == b'-'
                && (1..=12).contains(&m)
                && (1..=31).contains(&d) =>
        {
            (y, m, d)
        }
        _ => return Err(bad()),
    };
    let mut ms = days_from_civil(y, m, d) * DAY_MS as i64;
    if s.len() > 10 {
        let rest = &s[10..];
        let ok = (rest.starts_with('T') || rest.starts_with(' ')) && rest.ends_with('Z');
        let (h, mi, se) = (num(11..13), num(14..16), num(17..19));
        match (ok, h, mi) {
            (true, Some(h), Some(mi)) if h < 24 && mi < 60 => {
                ms += (h * 3600 + mi * 60 + se.unwrap_or(0)) * 1000;
            }
            _ => return Err(bad()),
        }
    }
    u64::try_from(ms).map_err(|_| bad())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The figures of one group (or of the whole window). Rates and percentiles are null when
/// there is nothing to compute them over.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub paused: u64,
    pub success_rate: Option<f64>,
    pub execution_p50_ms: Option<f64>,
    pub execution_p95_ms: Option<f64>,
    pub execution_p99_ms: Option<f64>,
    pub steps: u64,
    pub step_p50_ms: Option<f64>,
    pub step_p95_ms: Option<f64>,
    pub step_p99_ms: Option<f64>,
    pub replayed_steps: u64,
    pub failures: u64,
    pub failures_by_type: BTreeMap<String, u64>,
    pub failure_rate_by_type: BTreeMap<String, f64>,
    pub recovered: u64,
    pub mttr_ms: Option<f64>,
    pub retries: u64,
    pub rollbacks: u64,
    pub forks: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub llm_cost_usd: f64,
    pub cost_per_execution_usd: Option<f64>,
    pub cost_saved_usd: f64,
    pub tokens_saved: u64,
}

/// Cells summed, with the failures split by type.
#[derive(Default)]
struct Sum {
    cell: Cell,
    by_type: BTreeMap<String, u64>,
}

impl Sum {
    fn add(&mut self, d: &Dims, c: &Cell) {
        self.cell.add(c);
        if c.failures > 0 {
            *self.by_type.entry(d.failure_type.clone()).or_default() += c.failures;
        }
    }

    fn figures(&self) -> Figures {
        let c = &self.cell;
        let ended = c.completed + c.failed + c.cancelled;
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        let usd = |micro: u64| micro as f64 / 1e6;
        Figures {
            started: c.started,
            completed: c.completed,
            failed: c.failed,
            cancelled: c.cancelled,
            paused: c.paused,
            success_rate: ratio(c.completed, ended),
            execution_p50_ms: c.execution_us.quantile_ms(0.50),
            execution_p95_ms: c.execution_us.quantile_ms(0.95),
            execution_p99_ms: c.execution_us.quantile_ms(0.99),
            steps: c.steps,
            step_p50_ms: c.step_us.quantile_ms(0.50),
            step_p95_ms: c.step_us.quantile_ms(0.95),
            step_p99_ms: c.step_us.quantile_ms(0.99),
            replayed_steps: c.replayed,
            failures: c.failures,
            failures_by_type: self.by_type.clone(),
            failure_rate_by_type: self
                .by_type
                .iter()
                .filter_map(|(t, n)| ratio(*n, c.started).map(|r| (t.clone(), r)))
                .collect(),
            recovered: c.recovered,
            mttr_ms: ratio(c.recovery_ms, c.recovered),
            retries: c.retries,
            rollbacks: c.rollbacks,
            forks: c.forks,
            tokens_in: c.tokens_in,
            tokens_out: c.tokens_out,
            llm_cost_usd: usd(c.cost_micro_usd),
            cost_per_execution_usd: ratio(c.cost_micro_usd, c.started).map(|r| r / 1e6),
            cost_saved_usd: usd(c.saved_micro_usd),
            tokens_saved: c.saved_tokens,
        }
    }
}

/// One group's key (dimension name → value) and figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    pub key: BTreeMap<String, String>,
    pub figures: Figures,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricsReport {
    pub since: String,
    pub until: String,
    pub since_ms: u64,
    pub until_ms: u64,
    pub by: Vec<String>,
    pub totals: Figures,
    /// Empty without `by`; otherwise in key order.
    pub groups: Vec<Group>,
}

/// The window as the cells resolve it: to the minute while minute cells are kept
/// ([`MINUTE_RETENTION_MS`]), to the hour before that.
fn edges(q: &MetricsQuery, now: u64) -> (u64, u64) {
    let unit = |t: u64| {
        if t + MINUTE_RETENTION_MS >= now {
            MINUTE_MS
        } else {
            HOUR_MS
        }
    };
    let (a, b) = (unit(q.since_ms), unit(q.until_ms));
    (q.since_ms - q.since_ms % a, q.until_ms.div_ceil(b) * b)
}

/// The cells a window reads: minutes at either end, whole days from the day cells, the hours
/// between (or hours throughout when grouping by hour).
fn plan(q: &MetricsQuery, now: u64) -> Vec<(Level, u64, u64)> {
    let (from, to) = edges(q, now);
    let h0 = from.div_ceil(HOUR_MS) * HOUR_MS;
    let h1 = to - to % HOUR_MS;
    if h0 >= h1 {
        return vec![(Level::Minute, from, to)];
    }
    let mut out = vec![(Level::Minute, from, h0)];
    let d0 = h0.div_ceil(DAY_MS) * DAY_MS;
    let d1 = h1 - h1 % DAY_MS;
    if q.by.contains(&GroupBy::Hour) || d0 >= d1 {
        out.push((Level::Hour, h0, h1));
    } else {
        out.extend([
            (Level::Hour, h0, d0),
            (Level::Day, d0, d1),
            (Level::Hour, d1, h1),
        ]);
    }
    out.push((Level::Minute, h1, to));
    out.retain(|(_, a, b)| a < b);
    out
}

/// Analytics over a store's rollups: `store.metrics(&query)`.
pub trait AnalyticsStore: AsRef<Store> {
    fn metrics(&self, q: &MetricsQuery) -> Result<MetricsReport> {
        let store: &Store = self.as_ref();
        let mut totals = Sum::default();
        let mut groups: BTreeMap<Vec<String>, Sum> = BTreeMap::new();
        for (level, from, to) in plan(q, now_ms()) {
            for r in store.rollups(level, from, to) {
                let (bucket, dims, cell) = r?;
                if !q.keeps(&dims) {
                    continue;
                }
                totals.add(&dims, &cell);
                if q.by.is_empty() {
                    continue;
                }
                let key: Option<Vec<String>> =
                    q.by.iter().map(|g| g.value(bucket, &dims)).collect();
                if let Some(key) = key {
                    groups.entry(key).or_default().add(&dims, &cell);
                }
            }
        }
        let names: Vec<String> = q.by.iter().map(|g| g.name().to_string()).collect();
        Ok(MetricsReport {
            since: omium_storage::rfc3339_ms(q.since_ms as i64),
            until: omium_storage::rfc3339_ms(q.until_ms as i64),
            since_ms: q.since_ms,
            until_ms: q.until_ms,
            totals: totals.figures(),
            groups: groups
                .into_iter()
                .map(|(k, s)| Group {
                    key: names.iter().cloned().zip(k).collect(),
                    figures: s.figures(),
                })
                .collect(),
            by: names,
        })
    }
}

impl AnalyticsStore for Store {}

/// The execution-level figures counted from the executions and failure records themselves,
/// scanning them all: the baseline the rollups are checked against (tests) and measured
/// against (`benches/analytics_bench.rs`). Steps, spend and replays are not in it (they are
/// kept only as events are written).
pub fn scan_figures(store: &Store, q: &MetricsQuery) -> Result<Figures> {
    let (from, to) = edges(q, now_ms());
    let within = |t: u64| (from..to).contains(&t);
    let mut s = Sum::default();
    let mut started = 0;
    for e in store.executions()? {
        let d = Dims::execution(&e.tenant, &e.workflow);
        if !q.keeps(&d) {
            continue;
        }
        if within(e.created_at_ms) && e.attempts > 0 {
            started += 1;
        }
        if within(e.updated_at_ms) {
            let mut c = Cell::ended(e.status);
            if matches!(e.status, Status::Completed | Status::Failed) {
                c.execution_us
                    .record(e.updated_at_ms.saturating_sub(e.created_at_ms) * 1000);
            }
            s.add(&d, &c);
        }
    }
    s.cell.started = started;
    for f in store.failures(None)? {
        let d = Dims {
            failure_type: f.kind.as_str().into(),
            ..Dims::step(
                &f.tenant,
                &f.workflow,
                &f.agent,
                f.step.as_deref().unwrap_or(""),
            )
        };
        if !q.keeps(&d) {
            continue;
        }
        let mut c = Cell::default();
        if within(f.created_at_ms) {
            c.failures = 1;
        }
        if let (omium_storage::Outcome::Recovered, Some(r)) = (f.outcome, f.resolved_at_ms) {
            if within(r) {
                c.recovered = 1;
                c.recovery_ms = r.saturating_sub(f.created_at_ms);
            }
        }
        s.add(&d, &c);
    }
    Ok(s.figures())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_durations_dates_and_utc_times() {
        let now = 10 * DAY_MS;
        assert_eq!(parse_time("since", "7d", now).unwrap(), 3 * DAY_MS);
        assert_eq!(parse_time("since", "90s", now).unwrap(), now - 90_000);
        assert_eq!(parse_time("since", "1970-01-02", now).unwrap(), DAY_MS);
        assert_eq!(
            parse_time("since", "2026-11-01T12:30:00Z", now).unwrap(),
            1_793_536_200_000
        );
        let e = parse_time("since", "last tuesday", now).unwrap_err();
        assert!(e.to_string().contains("7d"), "{e}");
        assert!(parse_time("since", "2026-13-01", now).is_err());
    }

    #[test]
    fn a_window_reads_whole_days_from_day_cells_and_minutes_at_recent_edges() {
        let q = MetricsQuery {
            since_ms: DAY_MS + 5 * HOUR_MS + 10,
            until_ms: 4 * DAY_MS + 2 * HOUR_MS + 1,
            ..MetricsQuery::default()
        };
        // Long ago: hour resolution.
        let later = 100 * DAY_MS;
        assert_eq!(
            plan(&q, later),
            vec![
                (Level::Hour, DAY_MS + 5 * HOUR_MS, 2 * DAY_MS),
                (Level::Day, 2 * DAY_MS, 4 * DAY_MS),
                (Level::Hour, 4 * DAY_MS, 4 * DAY_MS + 3 * HOUR_MS),
            ]
        );
        let by_hour = MetricsQuery {
            by: vec![GroupBy::Hour],
            ..q.clone()
        };
        assert_eq!(plan(&by_hour, later).len(), 1);
        // Recent: minutes at the ends.
        let now = 4 * DAY_MS + 3 * HOUR_MS;
        let m = |t: u64| t - t % MINUTE_MS;
        let recent = MetricsQuery {
            since_ms: now - DAY_MS - 7 * MINUTE_MS - 10,
            until_ms: now - 20 * MINUTE_MS + 1,
            ..MetricsQuery::default()
        };
        assert_eq!(
            plan(&recent, now),
            vec![
                (Level::Minute, m(recent.since_ms), 3 * DAY_MS + 3 * HOUR_MS),
                (
                    Level::Hour,
                    3 * DAY_MS + 3 * HOUR_MS,
                    4 * DAY_MS + 2 * HOUR_MS
                ),
                (
                    Level::Minute,
                    4 * DAY_MS + 2 * HOUR_MS,
                    now - 19 * MINUTE_MS
                ),
            ]
        );
        // Inside one hour: minutes only.
        let five = MetricsQuery {
            since_ms: now - 5 * MINUTE_MS,
            until_ms: now,
            ..MetricsQuery::default()
        };
        assert_eq!(
            plan(&five, now),
            vec![(Level::Minute, now - 5 * MINUTE_MS, now)]
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-12-03 is a Thursday; its week starts on Monday 2026-11-30.
        let t = parse_time("t", "2026-12-03", 0).unwrap();
        assert_eq!(
            GroupBy::Week.value(t, &Dims::default()).unwrap(),
            "2026-11-30"
        );
        assert_eq!(
            GroupBy::Month.value(t, &Dims::default()).unwrap(),
            "2026-12"
        );
    }
}
