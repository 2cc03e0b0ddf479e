//! Executions and durable steps: the journal, leases, resume.
//!
//! A run of an execution ([`Run`]) holds its lease. Each step gets the next position (`seq`)
//! of the live branch at call time; when the journal already has a step at that position the
//! recorded checkpoint is returned and the step is not run again, and a different name there is
//! a [`Error::NonDeterminism`]. Re-running an execution id therefore resumes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::audit::AuditDraft;
use crate::checkpoint::{Checkpoint, CheckpointKind, Checks};
use crate::codec;
use crate::error::{Error, Result};
use crate::rollup::{marker_key, spend_of, Cell, Delta, Dims, Tally};
use crate::store::{exec_key, now_ms, Cf, Durability, ExecKey, Store};

/// Lifecycle of an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created or rolled back; runs again from its head when resumed.
    Pending,
    Running,
    /// Waits for a human to resume it.
    Paused,
    Completed,
    Failed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// The status `as_str` names.
    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Running,
            Status::Paused,
            Status::Completed,
            Status::Failed,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who runs an execution, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The actor of the store handle that took the lease.
    pub owner: String,
    /// Identifies that store handle (one per open).
    pub token: String,
    pub host: String,
    pub pid: u32,
    pub expires_at_ms: u64,
}

/// An execution: one run of a workflow, possibly resumed many times.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    /// The user's id (`cust-42`) or a generated ULID.
    pub id: String,
    pub workflow: String,
    pub tenant: String,
    pub status: Status,
    /// Head of the live branch.
    pub head: Option<Ulid>,
    pub error: Option<String>,
    /// How many times a run was begun.
    pub attempts: u32,
    pub lease: Option<Lease>,
    pub labels: BTreeMap<String, String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Next position in the execution-wide order of checkpoints, across agents and branches.
    pub next_global_seq: u64,
    pub checkpoint_count: u64,
    pub has_input: bool,
    pub has_output: bool,
}

pub const INPUT_SUFFIX: u8 = 1;
pub const OUTPUT_SUFFIX: u8 = 2;

/// Options for [`Store::begin`].
#[derive(Clone, Debug)]
pub struct BeginOptions {
    pub workflow: String,
    pub tenant: String,
    /// Stored on first begin only; a resumed execution keeps its original input.
    pub input: Option<Vec<u8>>,
    pub labels: BTreeMap<String, String>,
    /// Agent recorded on checkpoints that do not name one.
    pub agent: String,
    pub lease_ttl: Duration,
    /// Overrides the store's durability for this run's writes.
    pub durability: Option<Durability>,
    /// Take over a paused execution, as [`Store::resume`] does; otherwise a paused execution
    /// refuses to begin until a human resumes it.
    pub resume_paused: bool,
}

impl Default for BeginOptions {
    fn default() -> Self {
        BeginOptions {
            workflow: String::new(),
            tenant: "default".into(),
            input: None,
            labels: BTreeMap::new(),
            agent: "main".into(),
            lease_ttl: Duration::from_secs(30),
            durability: None,
            resume_paused: false,
        }
    }
}

/// In-memory state of one execution while it is being mutated. Every mutation locks it, so
/// changes to one execution are applied and queued for writing in order.
pub struct ExecCell {
    state: Mutex<CellState>,
}

pub struct CellState {
    loaded: bool,
    /// The execution as it is now: its record on disk plus the steps recorded since.
    pub exec: Option<Execution>,
    /// A [`Run`] of this store handle holds the execution.
    pub running: bool,
    /// The largest checkpoint id of the execution. A step's id is made larger still, so that
    /// the checkpoints recorded after the execution record was written are the last ones in
    /// key order (see [`Store::catch_up`]).
    max_id: Option<Ulid>,
    /// Checkpoints recorded since the execution record was written: their index entries go
    /// with the next record.
    unindexed: Vec<Ulid>,
}

impl Store {
    fn cell(&self, key: ExecKey) -> Arc<ExecCell> {
        self.inner
            .cells
            .lock()
            .entry(key)
            .or_insert_with(|| {
                Arc::new(ExecCell {
                    state: Mutex::new(CellState {
                        loaded: false,
                        exec: None,
                        running: false,
                        max_id: None,
                        unindexed: Vec::new(),
                    }),
                })
            })
            .clone()
    }

    fn release_cell(&self, key: ExecKey, cell: &Arc<ExecCell>) {
        let mut cells = self.inner.cells.lock();
        // Two references: the map's and ours. Nobody else can take one while we hold the map.
        if Arc::strong_count(cell) == 2 && !cell.state.lock().running {
            cells.remove(&key);
        }
    }

    /// Applies one mutation of an execution as one atomic batch: `f` edits the execution (or
    /// creates or deletes it) and adds to `batch` and `audit`; the execution record is written
    /// with them. When `f` fails nothing is written and the cached execution is unchanged.
    pub fn apply<R>(
        &self,
        execution_id: &str,
        mut batch: WriteBatch,
        durability: Option<Durability>,
        f: impl FnOnce(&mut CellState, &mut WriteBatch, &mut Vec<AuditDraft>) -> Result<R>,
    ) -> Result<R> {
        let key = exec_key(execution_id);
        self.mutate(execution_id, durability, |st| {
            let before = st.exec.clone();
            let mut audit = Vec::new();
            let r = match f(st, &mut batch, &mut audit) {
                Ok(r) => r,
                Err(e) => {
                    st.exec = before;
                    return Err(e);
                }
            };
            self.put_record(st, &key, &mut batch);
            Ok((r, batch, audit))
        })
    }

    /// Locks the execution's cell (loading it first), lets `body` change it and build the
    /// batch, submits the batch and waits for it to be written. `body` must leave the cell as
    /// it was when it fails.
    fn mutate<R>(
        &self,
        execution_id: &str,
        durability: Option<Durability>,
        body: impl FnOnce(&mut CellState) -> Result<(R, WriteBatch, Vec<AuditDraft>)>,
    ) -> Result<R> {
        self.require_writer("changing executions")?;
        let key = exec_key(execution_id);
        let cell = self.cell(key);
        let outcome = (|| {
            let (r, ticket) = {
                let mut st = cell.state.lock();
                if !st.loaded {
                    self.load_cell(&mut st, execution_id)?;
                }
                let (r, batch, audit) = body(&mut st)?;
                let d = durability.unwrap_or(self.inner.durability);
                (r, self.inner.committer.submit(batch, audit, d))
            };
            if let Err(e) = self.inner.committer.wait(self, ticket) {
                // The cache ran ahead of the disk: reload on next use.
                cell.state.lock().loaded = false;
                return Err(e);
            }
            Ok(r)
        })();
        self.release_cell(key, &cell);
        if outcome.is_ok() {
            self.mark_changed(execution_id);
        }
        outcome
    }

    /// Puts the cell's execution record in `batch` (or its deletion), with the index entries of
    /// the checkpoints recorded since the last one.
    fn put_record(&self, st: &mut CellState, key: &ExecKey, batch: &mut WriteBatch) {
        match &st.exec {
            Some(exec) => {
                batch.put_cf(self.cf(Cf::Executions), key, codec::encode(exec));
                for id in st.unindexed.drain(..) {
                    batch.put_cf(self.cf(Cf::CheckpointIndex), id.to_bytes(), key);
                }
            }
            None => {
                batch.delete_cf(self.cf(Cf::Executions), key);
                st.unindexed.clear();
            }
        }
    }

    fn load_cell(&self, st: &mut CellState, execution_id: &str) -> Result<()> {
        st.exec = self.load_record(execution_id)?;
        st.max_id = None;
        st.unindexed.clear();
        if let Some(exec) = &mut st.exec {
            let (tail, max_id) = self.catch_up(exec)?;
            st.unindexed = tail.iter().map(|c| c.id).collect();
            st.max_id = max_id;
        }
        st.loaded = true;
        Ok(())
    }

    /// The execution record as it is on disk.
    fn load_record(&self, execution_id: &str) -> Result<Option<Execution>> {
        let key = exec_key(execution_id);
        let Some(bytes) = self.get(Cf::Executions, &key)? else {
            return Ok(None);
        };
        let exec: Execution = codec::decode("execution", &|| format!("{execution_id:?}"), &bytes)?;
        if exec.id != execution_id {
            return Err(Error::Decode {
                what: "execution",
                key: format!("{execution_id:?}"),
                detail: format!(
                    "its key collides with execution {:?}; choose another execution id",
                    exec.id
                ),
            });
        }
        Ok(Some(exec))
    }

    /// Folds into `exec` (as its record was written) the steps recorded since: a step writes
    /// its checkpoint and audit entry only, so the head, `next_global_seq`, `checkpoint_count`
    /// and `updated_at_ms` of a running execution are behind on disk. Those checkpoints have
    /// a `global_seq` the record has not reached and, their ids being larger than any before,
    /// are the last ones in key order: a reverse scan finds them and stops at the first
    /// checkpoint the record counts. Returns them (oldest first) and the execution's largest
    /// checkpoint id.
    pub(crate) fn catch_up(&self, exec: &mut Execution) -> Result<(Vec<Checkpoint>, Option<Ulid>)> {
        let key = exec_key(&exec.id);
        let mut tail: Vec<Checkpoint> = Vec::new();
        let mut max_id = None;
        for item in self.scan_prefix_rev(Cf::Checkpoints, &key) {
            let (k, v) = item?;
            let c: Checkpoint = codec::decode("checkpoint", &|| crate::hex(&k[16..]), &v)?;
            max_id.get_or_insert(c.id);
            if c.global_seq < exec.next_global_seq {
                break;
            }
            tail.push(c);
        }
        tail.sort_by_key(|c| c.global_seq);
        for c in &tail {
            exec.checkpoint_count += 1;
            exec.next_global_seq = c.global_seq + 1;
            exec.head = Some(c.id);
            exec.updated_at_ms = exec.updated_at_ms.max(c.created_at_ms);
        }
        Ok((tail, max_id))
    }

    /// An execution read from disk, brought up to date: only a running execution can have
    /// steps its record does not count.
    pub(crate) fn current(&self, mut exec: Execution) -> Result<Execution> {
        if exec.status == Status::Running {
            self.catch_up(&mut exec)?;
        }
        Ok(exec)
    }

    fn load_execution(&self, execution_id: &str) -> Result<Option<Execution>> {
        self.load_record(execution_id)?
            .map(|e| self.current(e))
            .transpose()
    }

    /// A checkpoint recorded since its execution's record was written, which has no index
    /// entry yet: looked for among the running executions' recent steps.
    pub(crate) fn unindexed_checkpoint(&self, id: Ulid) -> Result<Option<Checkpoint>> {
        for item in self.scan_prefix(Cf::Executions, &[]) {
            let (k, v) = item?;
            if k.len() != 16 {
                continue; // input and output records
            }
            let mut exec: Execution = codec::decode("execution", &|| crate::hex(&k), &v)?;
            if exec.status != Status::Running {
                continue;
            }
            let (tail, _) = self.catch_up(&mut exec)?;
            if let Some(c) = tail.into_iter().find(|c| c.id == id) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// The execution with this id.
    pub fn execution(&self, execution_id: &str) -> Result<Execution> {
        self.load_execution(execution_id)?
            .ok_or_else(|| Error::ExecutionNotFound {
                id: execution_id.into(),
            })
    }

    /// Every execution, newest first.
    pub fn executions(&self) -> Result<Vec<Execution>> {
        let mut out = Vec::new();
        for item in self.scan_prefix(Cf::Executions, &[]) {
            let (k, v) = item?;
            if k.len() != 16 {
                continue; // input and output records
            }
            out.push(self.current(codec::decode::<Execution>(
                "execution",
                &|| crate::hex(&k),
                &v,
            )?)?);
        }
        out.sort_by(|a, b| {
            b.created_at_ms
                .cmp(&a.created_at_ms)
                .then_with(|| b.id.cmp(&a.id))
        });
        Ok(out)
    }

    /// One page of executions that `keep` accepts, in storage order (by the hash of the id,
    /// stable while executions are added), starting after the execution `after` names; with the
    /// cursor of the next page when there is more. Looks at no more than `budget` records, so a
    /// filter that matches little answers quickly with a partial page and a cursor.
    pub fn executions_page(
        &self,
        after: Option<&str>,
        limit: usize,
        budget: usize,
        keep: impl Fn(&Execution) -> bool,
    ) -> Result<(Vec<Execution>, Option<String>)> {
        let start = match after {
            Some(id) => {
                let mut k = exec_key(id).to_vec();
                k.push(0xff); // past the execution and its input/output records
                k
            }
            None => Vec::new(),
        };
        let (mut out, mut seen, mut last) = (Vec::new(), 0usize, None);
        for item in self.scan_from(Cf::Executions, &start) {
            let (k, v) = item?;
            if k.len() != 16 {
                continue; // input and output records
            }
            let e = self.current(codec::decode::<Execution>(
                "execution",
                &|| crate::hex(&k),
                &v,
            )?)?;
            seen += 1;
            last = Some(e.id.clone());
            if keep(&e) {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
            if seen >= budget {
                break;
            }
        }
        let more = match &last {
            Some(id) => {
                let mut k = exec_key(id).to_vec();
                k.push(0xff);
                self.scan_from(Cf::Executions, &k)
                    .next()
                    .transpose()?
                    .is_some()
            }
            None => false,
        };
        Ok((out, if more { last } else { None }))
    }

    /// The input the execution was first begun with.
    pub fn execution_input(&self, execution_id: &str) -> Result<Option<Vec<u8>>> {
        self.execution(execution_id)?;
        self.get(Cf::Executions, &io_key(execution_id, INPUT_SUFFIX))
    }

    /// The output recorded by [`Run::complete`].
    pub fn execution_output(&self, execution_id: &str) -> Result<Option<Vec<u8>>> {
        self.execution(execution_id)?;
        self.get(Cf::Executions, &io_key(execution_id, OUTPUT_SUFFIX))
    }

    fn lease_holder_alive(&self, exec: &Execution) -> bool {
        let Some(l) = &exec.lease else { return false };
        if l.token == self.inner.token {
            return self
                .inner
                .cells
                .lock()
                .get(&exec_key(&exec.id))
                .map(|c| c.state.lock().running)
                .unwrap_or(false);
        }
        if !self.inner.read_only {
            // We hold the store's only writer lock, so the handle that took this lease is gone.
            return false;
        }
        if l.host == hostname() && !pid_alive(l.pid) {
            return false;
        }
        l.expires_at_ms > now_ms()
    }

    /// Executions left running or pending by a process that is gone (or whose lease expired),
    /// and executions rolled back since they last ran: re-running them resumes them.
    pub fn resumable(&self) -> Result<Vec<Execution>> {
        Ok(self
            .executions()?
            .into_iter()
            .filter(|e| {
                matches!(e.status, Status::Running | Status::Pending) && !self.lease_holder_alive(e)
            })
            .collect())
    }

    /// Begins (or resumes) a run of an execution and takes its lease. The first begin creates
    /// the execution; a later one replays the recorded steps of its live branch.
    ///
    /// ```
    /// use omium_storage::{Store, BeginOptions};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// let mut calls = 0;
    /// for _attempt in 0..2 {
    ///     let run = store.begin("cust-42", BeginOptions::default()).unwrap();
    ///     let kyc = run.step("kyc", || { calls += 1; Ok::<_, omium_storage::Error>(b"verified".to_vec()) }).unwrap();
    ///     assert_eq!(kyc, b"verified");
    ///     // Dropped without complete(): as if the process died here.
    /// }
    /// assert_eq!(calls, 1, "the second run replayed the recorded step");
    /// ```
    pub fn begin(&self, execution_id: &str, options: BeginOptions) -> Result<Run> {
        if execution_id.is_empty() {
            return Err(Error::InvalidArgument {
                what: "execution id",
                detail: "it is empty; pass a non-empty string".into(),
            });
        }
        let now = now_ms();
        let lease = Lease {
            owner: self.inner.actor.clone(),
            token: self.inner.token.clone(),
            host: hostname(),
            pid: std::process::id(),
            expires_at_ms: now + options.lease_ttl.as_millis() as u64,
        };
        let mut batch = WriteBatch::default();
        if let Some(input) = &options.input {
            if self.load_record(execution_id)?.is_none() {
                batch.put_cf(
                    self.cf(Cf::Executions),
                    io_key(execution_id, INPUT_SUFFIX),
                    input,
                );
            }
        }
        let actor = self.inner.actor.clone();
        let exec = self.apply(
            execution_id,
            batch,
            options.durability,
            |st, batch, audit| {
                if st.running {
                    let remaining = st
                        .exec
                        .as_ref()
                        .and_then(|e| e.lease.as_ref())
                        .map(|l| l.expires_at_ms.saturating_sub(now))
                        .unwrap_or(0);
                    return Err(Error::ExecutionLeased {
                        id: execution_id.into(),
                        owner: actor.clone(),
                        remaining_ms: remaining,
                    });
                }
                let action = match &mut st.exec {
                    None => {
                        // Nothing counted yet: a run that dies before its first tally is
                        // written leaves its steps to the next run to count.
                        batch.put_cf(
                            self.cf(Cf::Rollups),
                            marker_key(&exec_key(execution_id)),
                            0u64.to_be_bytes(),
                        );
                        st.exec = Some(Execution {
                            id: execution_id.into(),
                            workflow: options.workflow.clone(),
                            tenant: options.tenant.clone(),
                            status: Status::Running,
                            head: None,
                            error: None,
                            attempts: 1,
                            lease: Some(lease.clone()),
                            labels: options.labels.clone(),
                            created_at_ms: now,
                            updated_at_ms: now,
                            next_global_seq: 1,
                            checkpoint_count: 0,
                            has_input: options.input.is_some(),
                            has_output: false,
                        });
                        "execution.create"
                    }
                    Some(e) if e.status == Status::Paused && !options.resume_paused => {
                        return Err(Error::InvalidState {
                            execution: execution_id.into(),
                            status: "paused".into(),
                            detail: format!(
                                "it waits for a human: {}; resume it with `omium resume {execution_id}` or omium.resume()",
                                e.error.as_deref().unwrap_or("paused")
                            ),
                        });
                    }
                    Some(e) => {
                        if e.status == Status::Running {
                            // Left running by a run that is gone (no live run of this writer
                            // holds it): this run takes its lease over.
                            if let Some(old) = &e.lease {
                                audit.push(AuditDraft::new(
                                    "lease.takeover",
                                    format!("execution/{execution_id}"),
                                    serde_json::json!({
                                        "previous": {"owner": old.owner, "host": old.host, "pid": old.pid},
                                        "expired": old.expires_at_ms <= now,
                                        "expires_at_ms": old.expires_at_ms,
                                    })
                                    .to_string(),
                                ));
                            }
                        }
                        e.status = Status::Running;
                        e.attempts += 1;
                        e.lease = Some(lease.clone());
                        e.updated_at_ms = now;
                        e.error = None;
                        "execution.resume"
                    }
                };
                st.running = true;
                let e = st.exec.as_ref().expect("set above");
                // A fork's first run starts it; any later run is a retry.
                let counts = if e.attempts == 1 {
                    Cell {
                        started: 1,
                        ..Cell::default()
                    }
                } else {
                    Cell {
                        retries: 1,
                        ..Cell::default()
                    }
                };
                audit.push(
                    AuditDraft::new(
                        action,
                        format!("execution/{execution_id}"),
                        serde_json::json!({"workflow": e.workflow, "attempt": e.attempts})
                            .to_string(),
                    )
                    .counting(Dims::execution(&e.tenant, &e.workflow), counts),
                );
                Ok(e.clone())
            },
        )?;
        let key = exec_key(execution_id);
        let cell = self.cell(key);
        let (journal, tally) = match self.live_branch_of(&exec).and_then(|b| {
            let tally = self.uncounted(&key, &b)?;
            Ok((Journal::from_branch(b), tally))
        }) {
            Ok(j) => j,
            Err(e) => {
                cell.state.lock().running = false;
                self.release_cell(key, &cell);
                return Err(e);
            }
        };
        let read_ahead = ReadAhead::start(self, &journal);
        Ok(Run {
            read_ahead,
            store: self.clone(),
            id: execution_id.into(),
            tenant: exec.tenant.clone(),
            workflow: exec.workflow.clone(),
            open_steps: Mutex::new(HashMap::new()),
            tally: Mutex::new((tally, Default::default())),
            key,
            cell,
            journal: Mutex::new(journal),
            nested: Nested::default(),
            agent: options.agent,
            lease_ttl_ms: options.lease_ttl.as_millis() as u64,
            lease_renewed_at: AtomicU64::new(now),
            durability: options.durability,
            finished: AtomicBool::new(false),
            ended_as: Mutex::new(None),
        })
    }

    /// The steps of `branch` a run that died recorded but did not count (past the execution's
    /// marker), as a tally for the new run to write. An execution without a marker was written
    /// before analytics existed: its past is not counted.
    fn uncounted(&self, key: &ExecKey, branch: &[Checkpoint]) -> Result<Tally> {
        let mut tally = Tally::default();
        let Some(v) = self.get(Cf::Rollups, &marker_key(key))? else {
            return Ok(tally);
        };
        let counted = v
            .as_slice()
            .try_into()
            .map(u64::from_be_bytes)
            .unwrap_or(u64::MAX);
        for c in branch
            .iter()
            .filter(|c| c.kind.is_step() && c.global_seq > counted)
        {
            let (tokens_in, tokens_out, cost) = spend_of(&c.metadata);
            let cell = Cell {
                steps: 1,
                tokens_in,
                tokens_out,
                cost_micro_usd: cost,
                ..Cell::default()
            };
            tally.step(&c.agent, &c.name, &cell);
        }
        Ok(tally)
    }

    /// Deletes an execution: its record, checkpoints, input and output, failure records and
    /// spans (with their index entries). Chunks it alone used are freed by the next
    /// [`Store::gc`]; its audit entries and the analytics' counts stay
    /// (`docs/decisions/erase-scope.md`).
    pub fn delete_execution(&self, execution_id: &str) -> Result<u64> {
        Ok(self.delete_execution_by(execution_id, "{}")?.checkpoints)
    }

    /// [`Store::delete_execution`] with the audit entry's detail given (who asked, why); the
    /// entry and the answer say what was erased.
    pub fn delete_execution_by(&self, execution_id: &str, detail: &str) -> Result<Erased> {
        self.inner
            .extensions
            .each(|e| e.before_erase(execution_id))?;
        let checkpoints: Vec<Checkpoint> = self.checkpoints(execution_id)?;
        let mut batch = WriteBatch::default();
        let failures = self.erase_failures(&mut batch, execution_id)?;
        let spans = self.erase_spans(&mut batch, execution_id)?;
        for c in &checkpoints {
            batch.delete_cf(
                self.cf(Cf::Checkpoints),
                crate::checkpoint::ckpt_key(&exec_key(execution_id), c.id),
            );
            batch.delete_cf(self.cf(Cf::CheckpointIndex), c.id.to_bytes());
        }
        batch.delete_cf(self.cf(Cf::Executions), io_key(execution_id, INPUT_SUFFIX));
        batch.delete_cf(self.cf(Cf::Executions), io_key(execution_id, OUTPUT_SUFFIX));
        batch.delete_cf(self.cf(Cf::Rollups), marker_key(&exec_key(execution_id)));
        let erased = Erased {
            checkpoints: checkpoints.len() as u64,
            failures,
            spans: spans.count,
        };
        self.apply(execution_id, batch, None, |st, _, audit| {
            if st.running {
                return Err(Error::InvalidState {
                    execution: execution_id.into(),
                    status: "running".into(),
                    detail: "it is being run by this process; finish the run first".into(),
                });
            }
            st.exec = None;
            let mut d: serde_json::Value =
                serde_json::from_str(detail).unwrap_or_else(|_| serde_json::json!({}));
            if let (Some(d), serde_json::Value::Object(counts)) =
                (d.as_object_mut(), serde_json::json!(erased))
            {
                d.extend(counts);
            }
            audit.push(AuditDraft::new(
                "execution.delete",
                format!("execution/{execution_id}"),
                d.to_string(),
            ));
            Ok(())
        })?;
        spans.finish()?;
        Ok(erased)
    }

    /// Retention: deletes executions not updated for `age` (except those running now), then
    /// collects the chunks they alone used.
    pub fn delete_older_than(&self, age: Duration) -> Result<RetentionReport> {
        let cutoff = now_ms().saturating_sub(age.as_millis() as u64);
        let mut report = RetentionReport::default();
        for e in self.executions()? {
            if e.updated_at_ms < cutoff && !self.lease_holder_alive(&e) {
                report.checkpoints_deleted += self.delete_execution(&e.id)?;
                report.executions_deleted += 1;
            }
        }
        report.gc = self.gc()?;
        Ok(report)
    }
}

/// What erasing an execution removed ([`Store::delete_execution_by`]; its audit entry's detail
/// carries these counts); chunks are counted by the collection that follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    pub checkpoints: u64,
    pub failures: u64,
    pub spans: u64,
}

/// What [`Store::delete_older_than`] removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RetentionReport {
    pub executions_deleted: u64,
    pub checkpoints_deleted: u64,
    pub gc: crate::blob::GcReport,
}

/// A JSON string literal (quoted and escaped).
fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a str always serialises")
}

pub fn io_key(execution_id: &str, suffix: u8) -> Vec<u8> {
    let mut k = exec_key(execution_id).to_vec();
    k.push(suffix);
    k
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

pub fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        // A killed process stays in /proc as a zombie until its parent reaps it: it runs
        // nothing more, so it counts as dead (state `Z` or `X`, the field after the
        // parenthesised command name, which may itself contain spaces and parentheses).
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !matches!(
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().as_bytes().first()),
                Some(Some(b'Z' | b'X'))
            ),
            Err(_) => false,
        }
    } else {
        true // unknown: rely on lease expiry
    }
}

/// The journal positions of steps called inside a step's body: `PARENT/N`, N counting the
/// parent's children in call order, or `PARENT/KEY` for a child with a key of its own (which is
/// counted too). Every binding positions nested steps (and recorded calls) with it, so the same
/// code gets the same positions in every language.
#[derive(Debug, Default)]
pub struct Nested(Mutex<HashMap<String, u64>>);

impl Nested {
    /// The position of the next child of the step at position `parent`.
    pub fn child(&self, parent: &str, key: Option<&str>) -> String {
        let mut counts = self.0.lock();
        let n = counts.entry(parent.to_string()).or_insert(0);
        let this = *n;
        *n += 1;
        match key {
            Some(k) => format!("{parent}/{k}"),
            None => format!("{parent}/{this}"),
        }
    }

    /// The position of a step called now: a top-level one (`parent` None) takes the seq
    /// `reserve` gives and keeps its own `key`; a nested one is `(0, PARENT/N)`.
    pub fn position<E>(
        &self,
        parent: Option<&str>,
        key: Option<&str>,
        reserve: impl FnOnce() -> std::result::Result<u64, E>,
    ) -> std::result::Result<(u64, Option<String>), E> {
        Ok(match parent {
            None => (reserve()?, key.map(str::to_string)),
            Some(p) => (0, Some(self.child(p, key))),
        })
    }
}

/// The recorded steps of the live branch, by position and by explicit key. The steps found
/// at begin are kept as they were read (their records were decoded to build the branch); a
/// step this run records keeps only its id and name, and is read back if it is looked up.
struct Journal {
    by_seq: HashMap<u64, Entry>,
    by_key: HashMap<String, Entry>,
    next_seq: u64,
}

enum Entry {
    Read(Arc<Checkpoint>),
    Recorded { id: Ulid, seq: u64, name: String },
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Read(c) => &c.name,
            Entry::Recorded { name, .. } => name,
        }
    }
}

impl Journal {
    fn from_branch(branch: Vec<Checkpoint>) -> Journal {
        // A resumed run starts at position 1 again: its code re-runs from the top and the
        // recorded steps replay until the first one the journal lacks.
        let mut j = Journal {
            by_seq: HashMap::new(),
            by_key: HashMap::new(),
            next_seq: 1,
        };
        for c in branch.into_iter().filter(|c| c.kind.is_step()) {
            j.insert(c.seq, c.key.clone(), Entry::Read(Arc::new(c)));
        }
        j
    }

    fn insert(&mut self, seq: u64, key: Option<String>, e: Entry) {
        // A keyed step is found by its key only: its position may be shared (steps nested in
        // another step take their parent's) or scheduled differently on replay.
        match key {
            Some(k) => {
                self.by_key.insert(k, e);
            }
            None => {
                self.by_seq.insert(seq, e);
            }
        }
    }
}

/// What to record: see [`Run::record`].
#[derive(Clone, Debug, Default)]
pub struct NewCheckpoint<'a> {
    pub name: &'a str,
    /// Defaults to the run's agent.
    pub agent: Option<&'a str>,
    /// `Step` (a durable step's result) or `Snapshot` (explicit state).
    pub kind: CheckpointKind,
    /// An explicit identity derived from the step's arguments, so that concurrent steps are
    /// matched by key rather than by the order they were scheduled in.
    pub key: Option<&'a str>,
    pub state: &'a [u8],
    pub checks: Checks,
    pub metadata: BTreeMap<String, String>,
}

/// A step's position in the journal: its key when it has one, else its seq.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum StepPos {
    Seq(u64),
    Key(String),
}

impl StepPos {
    fn of(seq: u64, key: Option<&str>) -> StepPos {
        match key {
            Some(k) => StepPos::Key(k.to_string()),
            None => StepPos::Seq(seq),
        }
    }
}

/// A run of an execution: holds the lease, replays recorded steps, records new ones.
/// Dropping it without [`Run::complete`] or [`Run::fail`] leaves the execution resumable.
pub struct Run {
    store: Store,
    id: String,
    tenant: String,
    workflow: String,
    /// When each step found not recorded was looked up (its body runs next), by position:
    /// the step's latency ends when it is recorded.
    open_steps: Mutex<HashMap<StepPos, std::time::Instant>>,
    /// Analytics counts of this run not written yet (`rollup::Tally`), and the positions
    /// counted as replayed (a binding may look a step up twice: once to ask, once to read it).
    tally: Mutex<(Tally, std::collections::HashSet<StepPos>)>,
    key: ExecKey,
    cell: Arc<ExecCell>,
    journal: Mutex<Journal>,
    nested: Nested,
    agent: String,
    lease_ttl_ms: u64,
    lease_renewed_at: AtomicU64,
    durability: Option<Durability>,
    finished: AtomicBool,
    /// The status the run ended the execution with (an operator's pause or cancel ends it
    /// before the binding learns of it: ending it the same way again is a no-op).
    ended_as: Mutex<Option<Status>>,
    /// The recorded chunked states a resumed run will replay, read ahead by a helper thread.
    read_ahead: Option<Arc<ReadAhead>>,
}

impl Run {
    pub fn execution_id(&self) -> &str {
        &self.id
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The execution as this run last wrote it.
    pub fn execution(&self) -> Execution {
        self.cell
            .state
            .lock()
            .exec
            .clone()
            .expect("a run's execution exists")
    }

    /// Takes the next position of the live branch. Call it when the step is called (not when
    /// it finishes), so concurrent steps keep their call order.
    pub fn reserve(&self) -> u64 {
        let mut j = self.journal.lock();
        let s = j.next_seq;
        j.next_seq += 1;
        s
    }

    /// The journal position of a step called now: `(seq, key)`. A top-level step (`parent`
    /// None) takes the next seq and keeps its own `key`; a step called inside the body of the
    /// step at position `parent` (its key, else its seq) is `(0, Some("PARENT/N"))` (see
    /// [`Nested`]).
    pub fn position(&self, parent: Option<&str>, key: Option<&str>) -> (u64, Option<String>) {
        let reserve = || Ok::<_, std::convert::Infallible>(self.reserve());
        let Ok(p) = self.nested.position(parent, key, reserve);
        p
    }

    /// The recorded checkpoint of the step at `seq` (or with `key`), if the journal has one.
    /// A different step name there is a [`Error::NonDeterminism`].
    ///
    /// `None` means that the caller runs the step's body next, once every extension's
    /// [`before_step`](crate::ext::Extension::before_step) agreed: a store that syncs to a
    /// cluster first makes sure that it still holds the execution there, and a run whose
    /// execution another store took over gets [`Error::LeaseLost`] here, before the body runs.
    pub fn recorded(&self, seq: u64, name: &str, key: Option<&str>) -> Result<Option<Checkpoint>> {
        let found = {
            let j = self.journal.lock();
            let found = match key {
                Some(k) => j.by_key.get(k),
                None => j.by_seq.get(&seq),
            };
            match found {
                None => None,
                Some(e) if e.name() != name => {
                    let (recorded_seq, recorded) = match e {
                        Entry::Read(c) => (c.seq, c.name.clone()),
                        Entry::Recorded { seq, name, .. } => (*seq, name.clone()),
                    };
                    return Err(Error::NonDeterminism {
                        execution: self.id.clone(),
                        seq: if key.is_some() { recorded_seq } else { seq },
                        recorded,
                        requested: name.into(),
                    });
                }
                Some(Entry::Read(c)) => Some(Ok((**c).clone())),
                Some(Entry::Recorded { id, .. }) => Some(Err(*id)),
            }
        };
        if let Some(found) = found {
            let c = match found {
                Ok(c) => c,
                // Recorded by this run: read back (the journal keeps no states).
                Err(id) => self.store.checkpoint_of(&self.key, id)?,
            };
            let mut tally = self.tally.lock();
            if tally.1.insert(StepPos::of(seq, key)) {
                let (tin, tout, cost) = spend_of(&c.metadata);
                tally.0.replayed(Delta {
                    dims: Dims::step(&self.tenant, &self.workflow, &c.agent, &c.name),
                    cell: Cell {
                        replayed: 1,
                        saved_tokens: tin + tout,
                        saved_micro_usd: cost,
                        ..Cell::default()
                    },
                });
            }
            return Ok(Some(c));
        }
        self.store.take_control(self, name)?;
        self.store.inner.extensions.each(|e| e.before_step(self))?;
        self.open_steps
            .lock()
            .insert(StepPos::of(seq, key), std::time::Instant::now());
        Ok(None)
    }

    /// How long the run's lease lasts when renewed.
    pub fn lease_ttl_ms(&self) -> u64 {
        self.lease_ttl_ms
    }

    /// Records a checkpoint at position `seq` on the live branch, atomically with its chunks,
    /// its index entry, the execution's new head and an audit entry.
    pub fn record(&self, seq: u64, new: NewCheckpoint<'_>) -> Result<Checkpoint> {
        if self.finished.load(Ordering::Relaxed) {
            return Err(Error::InvalidState {
                execution: self.id.clone(),
                status: self.execution().status.to_string(),
                detail: "this run already finished; begin a new run to record more".into(),
            });
        }
        let store = &self.store;
        let gc_shared = store.inner.gc_lock.read();
        let mut batch = WriteBatch::default();
        let (state, stored_size, checksum) = store.put_state(&mut batch, new.state)?;
        let now = now_ms();
        let renew = now.saturating_sub(self.lease_renewed_at.load(Ordering::Relaxed))
            > self.lease_ttl_ms / 2;
        let mut c = Checkpoint {
            id: crate::store::new_id(),
            execution_id: self.id.clone(),
            agent: new.agent.unwrap_or(&self.agent).to_string(),
            name: new.name.to_string(),
            kind: new.kind,
            parent: None,
            seq,
            global_seq: 0,
            key: new.key.map(str::to_string),
            state,
            checksum,
            raw_size: new.state.len() as u64,
            stored_size,
            checks: new.checks,
            metadata: new.metadata,
            created_at_ms: now,
        };
        let (tokens_in, tokens_out, cost) = spend_of(&c.metadata);
        let mut step_counts = Cell {
            steps: 1,
            tokens_in,
            tokens_out,
            cost_micro_usd: cost,
            ..Cell::default()
        };
        if let Some(t) = self
            .open_steps
            .lock()
            .remove(&StepPos::of(seq, c.key.as_deref()))
        {
            step_counts.step_us.record(t.elapsed().as_micros() as u64);
        }
        // One small batch: the checkpoint record and its audit entry (and the state's new
        // chunks). The execution's head and counters change in memory only; its record and the
        // index entries go with the next lease renewal or the run's end (`Store::catch_up`).
        let c = store.mutate(&self.id, self.durability, move |st| {
            let exec = st.exec.as_mut().ok_or_else(|| Error::ExecutionNotFound {
                id: self.id.clone(),
            })?;
            if st.max_id.is_some_and(|m| c.id <= m) {
                c.id = st.max_id.and_then(|m| m.increment()).unwrap_or(c.id);
            }
            st.max_id = Some(c.id);
            c.parent = exec.head;
            c.global_seq = exec.next_global_seq;
            exec.next_global_seq += 1;
            exec.head = Some(c.id);
            exec.checkpoint_count += 1;
            exec.updated_at_ms = now;
            batch.put_cf(
                store.cf(Cf::Checkpoints),
                crate::checkpoint::ckpt_key(&self.key, c.id),
                codec::encode(&c),
            );
            st.unindexed.push(c.id);
            if renew {
                if let Some(l) = &mut exec.lease {
                    l.expires_at_ms = now + self.lease_ttl_ms;
                }
            }
            // The record goes with the step now and then, so that a reader never has more than
            // RECORD_EVERY steps to fold in (`Store::catch_up`), however fast the run records.
            if renew || st.unindexed.len() >= RECORD_EVERY {
                store.put_record(st, &self.key, &mut batch);
            }
            // Counted in the run's tally; written with this step when due (see `Tally`).
            let counted = {
                let mut t = self.tally.lock();
                t.0.step(&c.agent, &c.name, &step_counts);
                t.0.due().then(|| t.0.take(&self.tenant, &self.workflow))
            };
            if counted.is_some() {
                batch.put_cf(
                    store.cf(Cf::Rollups),
                    marker_key(&self.key),
                    c.global_seq.to_be_bytes(),
                );
            }
            let mut draft = AuditDraft::new(
                "checkpoint.create",
                format!("checkpoint/{}", c.id),
                // Written by hand: this runs once per step and a json! map costs more than the
                // rest of the entry.
                format!(
                    "{{\"execution\":{},\"name\":{},\"seq\":{},\"agent\":{}}}",
                    json_str(&self.id),
                    json_str(&c.name),
                    c.seq,
                    json_str(&c.agent)
                ),
            );
            draft.rollup = counted.unwrap_or_default();
            Ok((c, batch, vec![draft]))
        })?;
        if renew {
            self.lease_renewed_at.store(now, Ordering::Relaxed);
        }
        self.journal.lock().insert(
            c.seq,
            c.key.clone(),
            Entry::Recorded {
                id: c.id,
                seq: c.seq,
                name: c.name.clone(),
            },
        );
        drop(gc_shared);
        store.barrier(&self.id)?;
        Ok(c)
    }

    /// The verified state of a checkpoint this run replays: taken from the read-ahead when the
    /// helper has read it already (or is about to), else read now ([`Store::read_state`]).
    pub fn read_state(&self, c: &Checkpoint) -> Result<Vec<u8>> {
        match &self.read_ahead {
            Some(ra) => match ra.take(&self.store, c.id) {
                Some(r) => r,
                None => self.store.read_state(c),
            },
            None => self.store.read_state(c),
        }
    }

    /// Runs `f` as a durable step named `name`: returns the recorded result when the journal
    /// has this step, otherwise runs `f` and records what it returns.
    pub fn step<E: From<Error>>(
        &self,
        name: &str,
        f: impl FnOnce() -> std::result::Result<Vec<u8>, E>,
    ) -> std::result::Result<Vec<u8>, E> {
        let seq = self.reserve();
        if let Some(c) = self.recorded(seq, name, None)? {
            return Ok(self.read_state(&c)?);
        }
        let out = f()?;
        self.record(
            seq,
            NewCheckpoint {
                name,
                state: &out,
                ..NewCheckpoint::default()
            },
        )?;
        Ok(out)
    }

    /// Carries out a pause or cancel an operator asked for while step `step` is still running
    /// (a host polls it while a step awaits, so that a long await is interrupted), failing with
    /// `paused` / `cancelled` as the next step boundary would. Nothing pending: one atomic load.
    pub fn check_control(&self, step: &str) -> Result<()> {
        self.store.take_control(self, step)
    }

    /// Extends the lease, for steps that run longer than half the lease time.
    pub fn heartbeat(&self) -> Result<()> {
        let now = now_ms();
        let ttl = self.lease_ttl_ms;
        self.store.apply(
            &self.id,
            WriteBatch::default(),
            self.durability,
            |st, _, _| {
                if let Some(l) = st.exec.as_mut().and_then(|e| e.lease.as_mut()) {
                    l.expires_at_ms = now + ttl;
                }
                Ok(())
            },
        )?;
        self.lease_renewed_at.store(now, Ordering::Relaxed);
        Ok(())
    }

    fn finish(
        &self,
        status: Status,
        output: Option<&[u8]>,
        error: Option<&str>,
        action: &'static str,
    ) -> Result<()> {
        if let Some(ended) = *self.ended_as.lock() {
            return if ended == status {
                Ok(())
            } else {
                Err(Error::InvalidState {
                    execution: self.id.clone(),
                    status: ended.as_str().into(),
                    detail: format!("this run ended it already; it cannot end it as {status} too"),
                })
            };
        }
        let mut batch = WriteBatch::default();
        if let Some(o) = output {
            batch.put_cf(
                self.store.cf(Cf::Executions),
                io_key(&self.id, OUTPUT_SUFFIX),
                o,
            );
        }
        let settled = self.store.settle_failures(&mut batch, &self.id, status)?;
        self.store
            .apply(&self.id, batch, self.durability, |st, batch, audit| {
                let exec = st.exec.as_mut().ok_or_else(|| Error::ExecutionNotFound {
                    id: self.id.clone(),
                })?;
                let now = now_ms();
                batch.put_cf(
                    self.store.cf(Cf::Rollups),
                    marker_key(&self.key),
                    (exec.next_global_seq - 1).to_be_bytes(),
                );
                let mut counts = Cell::ended(status);
                if matches!(status, Status::Completed | Status::Failed) {
                    counts
                        .execution_us
                        .record(now.saturating_sub(exec.created_at_ms) * 1000);
                }
                exec.status = status;
                exec.lease = None;
                exec.updated_at_ms = now;
                exec.error = error.map(str::to_string);
                exec.has_output |= output.is_some();
                st.running = false;
                let detail = match error {
                    Some(e) => serde_json::json!({ "error": e }).to_string(),
                    None => "{}".into(),
                };
                let mut draft = AuditDraft::new(action, format!("execution/{}", self.id), detail)
                    .counting(Dims::execution(&self.tenant, &self.workflow), counts);
                draft.rollup.extend(settled);
                draft
                    .rollup
                    .extend(self.tally.lock().0.take(&self.tenant, &self.workflow));
                audit.push(draft);
                Ok(())
            })?;
        self.finished.store(true, Ordering::Relaxed);
        *self.ended_as.lock() = Some(status);
        self.store.barrier(&self.id)
    }

    /// Marks the execution completed with its output; releases the lease.
    pub fn complete(&self, output: Option<&[u8]>) -> Result<()> {
        self.finish(Status::Completed, output, None, "execution.complete")
    }

    /// Marks the execution failed; releases the lease. Re-running it resumes it.
    pub fn fail(&self, error: &str) -> Result<()> {
        self.finish(Status::Failed, None, Some(error), "execution.fail")
    }

    /// Marks the execution paused (waiting for a human); releases the lease.
    pub fn pause(&self, reason: &str) -> Result<()> {
        self.finish(Status::Paused, None, Some(reason), "execution.pause")
    }

    /// Marks the execution cancelled (an operator's cancel); releases the lease. Its open
    /// failures are settled as failed.
    pub fn cancel(&self, reason: &str) -> Result<()> {
        self.finish(Status::Cancelled, None, Some(reason), "execution.cancel")
    }

    /// Releases the execution without finishing it: it becomes pending (resumable at once,
    /// by any process) instead of waiting for its lease to expire.
    pub fn suspend(&self) -> Result<()> {
        self.finish(Status::Pending, None, None, "execution.suspend")
    }
}

/// The chunked states of a resumed run's journal, read and verified by a helper thread in
/// replay order while the run replays (reading a chunked state is most of a replayed step's
/// cost: gets, decompression, a hash). Whoever is free reads the next state of the plan: the
/// helper, and the run itself while it waits for the state the helper is reading, so the two
/// read side by side on two cores and neither idles while the other works. A state nobody has
/// started on when the run asks for it is read by the run (the helper then skips it); one being
/// read is waited for. At most [`READ_AHEAD_BYTES`] wait to be taken.
struct ReadAhead {
    /// Every chunked state of the journal, in the order they were recorded.
    plan: Vec<Arc<Checkpoint>>,
    state: Mutex<ReadAheadState>,
    cv: parking_lot::Condvar,
}

#[derive(Default)]
struct ReadAheadState {
    /// Not read yet, nor taken: the helper skips a state the run read itself.
    planned: std::collections::HashSet<Ulid>,
    /// The plan's entries before this one are no longer planned.
    next: usize,
    ready: HashMap<Ulid, Result<Vec<u8>>>,
    /// The states being read now (by the helper, or by the run while it waits).
    reading: std::collections::HashSet<Ulid>,
    buffered: usize,
    stopped: bool,
}

/// A run writes its execution record with a step at least every this many steps (and at every
/// lease renewal): what a reader derives from the checkpoints stays small.
const RECORD_EVERY: usize = 256;

/// A resumed run reads ahead when it replays at least this many chunked states.
const READ_AHEAD_MIN: usize = 8;
const READ_AHEAD_BYTES: usize = 32 << 20;

impl ReadAhead {
    fn start(store: &Store, j: &Journal) -> Option<Arc<ReadAhead>> {
        let mut plan: Vec<Arc<Checkpoint>> = j
            .by_seq
            .values()
            .chain(j.by_key.values())
            .filter_map(|e| match e {
                Entry::Read(c) if matches!(c.state, crate::blob::StateRef::Chunked(_)) => {
                    Some(c.clone())
                }
                _ => None,
            })
            .collect();
        if plan.len() < READ_AHEAD_MIN {
            return None;
        }
        plan.sort_by_key(|c| c.global_seq);
        let ra = Arc::new(ReadAhead {
            state: Mutex::new(ReadAheadState {
                planned: plan.iter().map(|c| c.id).collect(),
                ..Default::default()
            }),
            plan,
            cv: parking_lot::Condvar::new(),
        });
        let (helper, store) = (ra.clone(), store.clone());
        let spawned = std::thread::Builder::new()
            .name("omium-read-ahead".into())
            .spawn(move || helper.run(&store));
        // No thread, no read-ahead: every state is read when it is asked for.
        spawned.ok().map(|_| ra)
    }

    fn run(&self, store: &Store) {
        let mut st = self.state.lock();
        loop {
            while st.buffered >= READ_AHEAD_BYTES && !st.stopped {
                self.cv.wait(&mut st);
            }
            if st.stopped || !self.read_next(store, &mut st) {
                break;
            }
        }
    }

    /// Claims the next planned state, reads it with the lock released and leaves it ready;
    /// false when nothing is left to read.
    fn read_next(
        &self,
        store: &Store,
        st: &mut parking_lot::MutexGuard<'_, ReadAheadState>,
    ) -> bool {
        while st.next < self.plan.len() && !st.planned.contains(&self.plan[st.next].id) {
            st.next += 1;
        }
        let Some(c) = self.plan.get(st.next) else {
            return false;
        };
        st.next += 1;
        st.planned.remove(&c.id);
        st.reading.insert(c.id);
        let r = parking_lot::MutexGuard::unlocked(st, || store.read_state(c));
        st.reading.remove(&c.id);
        if !st.stopped {
            st.buffered += r.as_ref().map_or(0, Vec::len);
            st.ready.insert(c.id, r);
        }
        self.cv.notify_all();
        true
    }

    /// The state of `id` if it was read or is being read; None when the caller reads it
    /// itself (the helper will not). While another thread reads `id`, the caller reads the
    /// next planned state instead of idling.
    fn take(&self, store: &Store, id: Ulid) -> Option<Result<Vec<u8>>> {
        let mut st = self.state.lock();
        loop {
            if let Some(r) = st.ready.remove(&id) {
                st.buffered -= r.as_ref().map_or(0, Vec::len);
                self.cv.notify_all();
                return Some(r);
            }
            if !st.reading.contains(&id) || st.stopped {
                st.planned.remove(&id);
                return None;
            }
            if st.buffered >= READ_AHEAD_BYTES || !self.read_next(store, &mut st) {
                self.cv.wait(&mut st);
            }
        }
    }

    fn stop(&self) {
        let mut st = self.state.lock();
        st.stopped = true;
        st.ready.clear();
        self.cv.notify_all();
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(ra) = &self.read_ahead {
            ra.stop();
        }
        // A finished run released the execution already; a later run may hold it by now.
        if !self.finished.load(Ordering::Relaxed) {
            self.cell.state.lock().running = false;
        }
        self.store.release_cell(self.key, &self.cell);
    }
}
