//! Analytics rollups: counters and latency histograms per minute, hour and day, kept as events
//! are written, so that an analytics query reads a few cells instead of every execution.
//!
//! An event that counts (an execution started or ended, a checkpoint recorded, a failure
//! detected or recovered, a rollback, a fork, a step replayed from its checkpoint) carries a
//! [`Delta`] on its audit draft. The committer folds the deltas of each batch into the cells of
//! the minute, the hour and the day of the event and writes the new cell values in the same atomic write
//! as the change itself (read-modify-write in the one committer thread, with a cache of the
//! cells it wrote last): a crash loses both or neither, and no merge operator is needed, so an
//! older build that opens the store leaves the family alone.
//!
//! Minute cells serve windows with minute resolution (alert rules, live counters); they are
//! kept for [`MINUTE_RETENTION_MS`] and then dropped by a range deletion in a later batch.
//!
//! Key: `level (b'i' | b'h' | b'd') ‖ bucket start (ms, u64 BE) ‖ five dimensions`, each a u16 BE
//! length and its bytes: tenant, workflow, agent, step, failure type. Execution-level events
//! leave agent, step and failure type empty; step events leave failure type empty.

use std::collections::HashMap;

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, Result};
use crate::store::{Cf, Store};

pub const MINUTE_MS: u64 = 60_000;
pub const HOUR_MS: u64 = 60 * MINUTE_MS;
pub const DAY_MS: u64 = 24 * HOUR_MS;
/// How long minute cells are kept: windows that start earlier read hour cells at their edges.
pub const MINUTE_RETENTION_MS: u64 = 2 * DAY_MS;

/// The three resolutions cells are kept at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Minute,
    Hour,
    Day,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Minute, Level::Hour, Level::Day];

    fn byte(self) -> u8 {
        match self {
            // Not `m`: that prefix is the step-tally markers' (`marker_key`).
            Level::Minute => b'i',
            Level::Hour => b'h',
            Level::Day => b'd',
        }
    }

    pub fn span_ms(self) -> u64 {
        match self {
            Level::Minute => MINUTE_MS,
            Level::Hour => HOUR_MS,
            Level::Day => DAY_MS,
        }
    }
}

/// What a cell is about. Empty strings stand for "not this kind of event" (an execution's
/// start has no step).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Dims {
    pub tenant: String,
    pub workflow: String,
    pub agent: String,
    pub step: String,
    pub failure_type: String,
}

impl Dims {
    pub fn execution(tenant: &str, workflow: &str) -> Dims {
        Dims {
            tenant: tenant.into(),
            workflow: workflow.into(),
            ..Dims::default()
        }
    }

    pub fn step(tenant: &str, workflow: &str, agent: &str, step: &str) -> Dims {
        Dims {
            agent: agent.into(),
            step: step.into(),
            ..Dims::execution(tenant, workflow)
        }
    }
}

/// Sparse log-scale histogram of durations in microseconds: bucket `i` (≥ 1) holds values in
/// `[2^((i-1)/8), 2^(i/8))` µs, so a percentile read from it is within 9% of the true value;
/// bucket 0 holds values under 1 µs. Pairs are (bucket, count), sorted by bucket; `sum_us` is
/// the exact sum of the values (Prometheus' `_sum`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub buckets: Vec<(u16, u64)>,
    pub sum_us: u64,
}

impl Histogram {
    pub fn bucket_of(us: u64) -> u16 {
        if us == 0 {
            return 0;
        }
        ((us as f64).log2() * 8.0).floor() as u16 + 1
    }

    /// The upper bound of bucket `b`, in microseconds.
    pub fn upper_us(b: u16) -> f64 {
        if b == 0 {
            1.0
        } else {
            2f64.powf(b as f64 / 8.0)
        }
    }

    pub fn record(&mut self, us: u64) {
        self.add_count(Self::bucket_of(us), 1);
        self.sum_us += us;
    }

    fn add_count(&mut self, b: u16, n: u64) {
        match self.buckets.binary_search_by_key(&b, |p| p.0) {
            Ok(i) => self.buckets[i].1 += n,
            Err(i) => self.buckets.insert(i, (b, n)),
        }
    }

    pub fn merge(&mut self, other: &Histogram) {
        for &(b, n) in &other.buckets {
            self.add_count(b, n);
        }
        self.sum_us += other.sum_us;
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|p| p.1).sum()
    }

    /// How many values are at most `le_us` (counting a bucket when its upper bound is), for
    /// cumulative buckets of another layout.
    pub fn count_le(&self, le_us: f64) -> u64 {
        self.buckets
            .iter()
            .filter(|(b, _)| Self::upper_us(*b) <= le_us * (1.0 + 1e-9))
            .map(|p| p.1)
            .sum()
    }

    /// The value at quantile `q` (0..=1) in milliseconds, as the upper bound of the bucket
    /// it falls in; `None` when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for &(b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Some(Self::upper_us(b).round() / 1000.0);
            }
        }
        None
    }
}

/// The counters of one cell. Money is kept in micro-USD so sums are exact.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub paused: u64,
    /// Runs begun again on an execution that had run before (after a crash, a failure, a
    /// rollback, an operator's retry).
    pub retries: u64,
    pub rollbacks: u64,
    pub forks: u64,
    /// From an execution's creation to its completion or failure.
    pub execution_us: Histogram,
    pub steps: u64,
    /// From the moment a step was found not recorded to its checkpoint.
    pub step_us: Histogram,
    /// Steps answered from their checkpoint by a resumed run instead of running again.
    pub replayed: u64,
    pub failures: u64,
    pub recovered: u64,
    /// Sum over recovered failures of the time from detection to recovery.
    pub recovery_ms: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_micro_usd: u64,
    /// Recorded cost and tokens of replayed steps: what re-running them would have cost.
    pub saved_micro_usd: u64,
    pub saved_tokens: u64,
}

impl Cell {
    /// The counts of a run ending an execution with `status`.
    pub fn ended(status: crate::execution::Status) -> Cell {
        use crate::execution::Status;
        let mut c = Cell::default();
        match status {
            Status::Completed => c.completed = 1,
            Status::Failed => c.failed = 1,
            Status::Cancelled => c.cancelled = 1,
            Status::Paused => c.paused = 1,
            Status::Pending | Status::Running => {}
        }
        c
    }

    pub fn add(&mut self, o: &Cell) {
        self.started += o.started;
        self.completed += o.completed;
        self.failed += o.failed;
        self.cancelled += o.cancelled;
        self.paused += o.paused;
        self.retries += o.retries;
        self.rollbacks += o.rollbacks;
        self.forks += o.forks;
        self.execution_us.merge(&o.execution_us);
        self.steps += o.steps;
        self.step_us.merge(&o.step_us);
        self.replayed += o.replayed;
        self.failures += o.failures;
        self.recovered += o.recovered;
        self.recovery_ms += o.recovery_ms;
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.cost_micro_usd += o.cost_micro_usd;
        self.saved_micro_usd += o.saved_micro_usd;
        self.saved_tokens += o.saved_tokens;
    }
}

/// A change to the cells of one set of dimensions, carried by an audit draft.
#[derive(Clone, Debug, PartialEq)]
pub struct Delta {
    pub dims: Dims,
    pub cell: Cell,
}

/// What writing failure record `new` over `old` (None: a new failure) adds: a detected
/// failure of its type, or a recovery with its time to recover.
pub fn failure_delta(
    old: Option<&crate::failures::FailureRecord>,
    new: &crate::failures::FailureRecord,
) -> Option<Delta> {
    use crate::failures::Outcome;
    let mut cell = Cell::default();
    match old {
        None => cell.failures = 1,
        Some(o) if o.outcome != Outcome::Recovered && new.outcome == Outcome::Recovered => {
            cell.recovered = 1;
            cell.recovery_ms = new
                .resolved_at_ms
                .unwrap_or_else(crate::store::now_ms)
                .saturating_sub(new.created_at_ms);
        }
        Some(_) => return None,
    }
    Some(Delta {
        dims: Dims {
            failure_type: new.kind.as_str().into(),
            ..Dims::step(
                &new.tenant,
                &new.workflow,
                &new.agent,
                new.step.as_deref().unwrap_or(""),
            )
        },
        cell,
    })
}

/// Checkpoint metadata keys the bindings set on LLM calls (and users may set on any step):
/// the tokens and the USD cost the step spent.
pub const TOKENS_IN_KEY: &str = "omium.tokens_in";
pub const TOKENS_OUT_KEY: &str = "omium.tokens_out";
pub const COST_KEY: &str = "omium.cost_usd";

/// Tokens in, tokens out and micro-USD recorded on a checkpoint's metadata.
pub fn spend_of(metadata: &std::collections::BTreeMap<String, String>) -> (u64, u64, u64) {
    let int = |k: &str| {
        metadata
            .get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let cost = metadata
        .get(COST_KEY)
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|c| c.is_finite() && *c > 0.0)
        .map(|c| (c * 1e6).round() as u64)
        .unwrap_or(0);
    (int(TOKENS_IN_KEY), int(TOKENS_OUT_KEY), cost)
}

pub fn key(level: Level, bucket_ms: u64, d: &Dims) -> Vec<u8> {
    let mut k = Vec::with_capacity(
        9 + 10 + d.tenant.len() + d.workflow.len() + d.agent.len() + d.step.len(),
    );
    k.push(level.byte());
    k.extend_from_slice(&bucket_ms.to_be_bytes());
    for s in [&d.tenant, &d.workflow, &d.agent, &d.step, &d.failure_type] {
        let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
        k.extend_from_slice(&(b.len() as u16).to_be_bytes());
        k.extend_from_slice(b);
    }
    k
}

fn parse_key(k: &[u8]) -> Option<(u64, Dims)> {
    let bucket = u64::from_be_bytes(k.get(1..9)?.try_into().ok()?);
    let mut rest = &k[9..];
    let mut next = || {
        let n = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let s = String::from_utf8_lossy(rest.get(2..2 + n)?).into_owned();
        rest = &rest[2 + n..];
        Some(s)
    };
    Some((
        bucket,
        Dims {
            tenant: next()?,
            workflow: next()?,
            agent: next()?,
            step: next()?,
            failure_type: next()?,
        },
    ))
}

/// A run's step counts not written yet. Steps are counted in memory and written together
/// (at most every [`TALLY_STEPS`] steps or [`TALLY_MS`], and when the run ends), with a marker
/// `b'm' ‖ exec_key → global seq` saying up to which checkpoint the execution's steps are
/// counted: a run that dies before writing its tally leaves the marker behind, and the next run
/// of the execution counts the live branch's checkpoints past it. So a step costs no write of
/// its own for the analytics, and each step is counted once.
#[derive(Default)]
pub struct Tally {
    steps: Vec<(String, String, Cell)>,
    pending: u32,
    since: Option<std::time::Instant>,
    replayed: Vec<Delta>,
}

/// Steps counted in memory at most before the tally is written with a step.
pub const TALLY_STEPS: u32 = 256;
/// How long at most before the tally is written with a step.
pub const TALLY_MS: u128 = 1000;

impl Tally {
    pub fn step(&mut self, agent: &str, name: &str, cell: &Cell) {
        match self
            .steps
            .iter_mut()
            .find(|(a, n, _)| a == agent && n == name)
        {
            Some((_, _, c)) => c.add(cell),
            None => self.steps.push((agent.into(), name.into(), cell.clone())),
        }
        self.pending += 1;
        self.since.get_or_insert_with(std::time::Instant::now);
    }

    pub fn replayed(&mut self, delta: Delta) {
        self.replayed.push(delta);
        self.since.get_or_insert_with(std::time::Instant::now);
    }

    /// Whether the tally is due to be written with the current step.
    pub fn due(&self) -> bool {
        self.pending >= TALLY_STEPS
            || self
                .since
                .is_some_and(|t| t.elapsed().as_millis() >= TALLY_MS)
    }

    /// The deltas to write, emptying the tally.
    pub fn take(&mut self, tenant: &str, workflow: &str) -> Vec<Delta> {
        let mut out = std::mem::take(&mut self.replayed);
        out.extend(self.steps.drain(..).map(|(agent, name, cell)| Delta {
            dims: Dims::step(tenant, workflow, &agent, &name),
            cell,
        }));
        self.pending = 0;
        self.since = None;
        out
    }
}

/// The key of an execution's counted-through marker (see [`Tally`]).
pub fn marker_key(exec: &crate::store::ExecKey) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = b'm';
    k[1..].copy_from_slice(exec);
    k
}

/// The committer's cache of cells it wrote last, so a busy cell is read from disk once.
#[derive(Default)]
pub(crate) struct CellCache {
    cells: HashMap<Vec<u8>, Cell>,
    /// The hour whose expired minute cells were last dropped.
    pruned_hour: u64,
}

/// Cells kept in memory at most; past it the cache starts over (cells are re-read).
const CACHE_CELLS: usize = 50_000;

impl CellCache {
    /// Folds `deltas` of an event at `at_ms` into the cells and puts the new values in `batch`.
    pub(crate) fn apply(
        &mut self,
        store: &Store,
        batch: &mut WriteBatch,
        at_ms: u64,
        deltas: &[Delta],
    ) {
        if self.cells.len() > CACHE_CELLS {
            self.cells.clear();
        }
        if !deltas.is_empty() && at_ms / HOUR_MS != self.pruned_hour {
            // Once an hour, the minute cells past their retention go (one range tombstone).
            self.pruned_hour = at_ms / HOUR_MS;
            let through = at_ms.saturating_sub(MINUTE_RETENTION_MS);
            let mut end = vec![Level::Minute.byte()];
            end.extend_from_slice(&(through - through % MINUTE_MS).to_be_bytes());
            batch.delete_range_cf(store.cf(Cf::Rollups), vec![Level::Minute.byte()], end);
        }
        for d in deltas {
            for level in Level::ALL {
                let k = key(level, at_ms - at_ms % level.span_ms(), &d.dims);
                let cell = match self.cells.get_mut(&k) {
                    Some(c) => c,
                    None => {
                        // A cell that cannot be read starts over rather than failing the
                        // user's write it rides on.
                        let c = store
                            .get(Cf::Rollups, &k)
                            .ok()
                            .flatten()
                            .and_then(|v| codec::decode("rollup cell", &|| crate::hex(&k), &v).ok())
                            .unwrap_or_default();
                        self.cells.entry(k.clone()).or_insert(c)
                    }
                };
                cell.add(&d.cell);
                batch.put_cf(store.cf(Cf::Rollups), &k, codec::encode(cell));
            }
        }
    }

    /// After a failed write the cache may be ahead of the disk.
    pub(crate) fn forget(&mut self) {
        self.cells.clear();
    }
}

impl Store {
    /// The cells of `level` whose bucket starts in `[from_ms, to_ms)`, in bucket order.
    pub fn rollups(
        &self,
        level: Level,
        from_ms: u64,
        to_ms: u64,
    ) -> impl Iterator<Item = Result<(u64, Dims, Cell)>> + '_ {
        let mut start = vec![level.byte()];
        start.extend_from_slice(&from_ms.to_be_bytes());
        let mut end = vec![level.byte()];
        end.extend_from_slice(&to_ms.to_be_bytes());
        self.scan_range(Cf::Rollups, &start, &end).map(|r| {
            let (k, v) = r?;
            let (bucket, dims) = parse_key(&k).ok_or_else(|| Error::Decode {
                what: "rollup key",
                key: crate::hex(&k),
                detail: "it is not level ‖ bucket ‖ five dimensions".into(),
            })?;
            let cell = codec::decode("rollup cell", &|| crate::hex(&k), &v)?;
            Ok((bucket, dims, cell))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_levels_and_tally_markers_have_their_own_prefixes() {
        // A minute scan or the minute cells' range deletion must never reach a marker.
        let marker = marker_key(&[0; 16])[0];
        for l in Level::ALL {
            assert_ne!(l.byte(), marker, "{l:?}");
        }
    }

    #[test]
    fn keys_round_trip_and_sort_by_bucket() {
        let d = Dims::step("t", "wf", "agent", "step");
        let k = key(Level::Hour, 7 * HOUR_MS, &d);
        assert_eq!(parse_key(&k), Some((7 * HOUR_MS, d.clone())));
        assert!(key(Level::Hour, HOUR_MS, &d) < key(Level::Hour, 2 * HOUR_MS, &Dims::default()));
    }

    #[test]
    fn histogram_quantiles_are_within_a_bucket() {
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(ms * 1000);
        }
        let p50 = h.quantile_ms(0.5).unwrap();
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((50.0..=50.0 * 1.1).contains(&p50), "{p50}");
        assert!((99.0..=99.0 * 1.1).contains(&p99), "{p99}");
        assert_eq!(Histogram::default().quantile_ms(0.5), None);
    }

    #[test]
    fn spend_reads_tokens_and_cost() {
        let m = [
            (TOKENS_IN_KEY.to_string(), "12".to_string()),
            (TOKENS_OUT_KEY.to_string(), "3".to_string()),
            (COST_KEY.to_string(), "0.0125".to_string()),
        ]
        .into_iter()
        .collect();
        assert_eq!(spend_of(&m), (12, 3, 12_500));
        assert_eq!(spend_of(&Default::default()), (0, 0, 0));
    }
}
