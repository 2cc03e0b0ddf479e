//! The checkpoint tree of an execution: lookup, history of the live branch, rollback, fork,
//! the consistent cut across agents, and verification.
//!
//! Checkpoints form a tree like commits: each has a parent, the execution's head is the tip
//! of the live branch, and a rollback or a fork starts a new branch while the old one stays
//! readable by id.

use std::collections::{BTreeMap, HashMap};

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::audit::{AuditDraft, AuditReport};
use crate::blob::StateRef;
use crate::codec;
use crate::error::{Error, Result};
use crate::execution::{Execution, Status};
use crate::rollup::{Cell, Dims};
use crate::store::{exec_key, now_ms, Cf, ExecKey, Store};

/// What a checkpoint records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointKind {
    /// The result of a durable step.
    #[default]
    Step,
    /// Explicit state recorded by the application.
    Snapshot,
    /// Marks where a forked execution starts; carries the (possibly edited) state.
    Fork,
    /// Marks a rollback; its parent is the rollback target.
    Rollback,
}

impl CheckpointKind {
    /// Steps and snapshots take a position in the journal; markers do not.
    pub fn is_step(self) -> bool {
        matches!(self, CheckpointKind::Step | CheckpointKind::Snapshot)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Step => "step",
            CheckpointKind::Snapshot => "snapshot",
            CheckpointKind::Fork => "fork",
            CheckpointKind::Rollback => "rollback",
        }
    }
}

/// The outcome of one pre- or postcondition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub expression: String,
    pub passed: bool,
}

/// Conditions evaluated around a step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checks {
    pub preconditions: Vec<CheckResult>,
    pub postconditions: Vec<CheckResult>,
}

impl Checks {
    pub fn passed(&self) -> bool {
        self.preconditions
            .iter()
            .chain(&self.postconditions)
            .all(|c| c.passed)
    }
}

/// One node of an execution's checkpoint tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub id: Ulid,
    pub execution_id: String,
    pub agent: String,
    pub name: String,
    pub kind: CheckpointKind,
    pub parent: Option<Ulid>,
    /// Position in its branch (the step's journal position); markers repeat their parent's.
    pub seq: u64,
    /// Position in the execution-wide order across agents; a consistent cut is a global seq.
    pub global_seq: u64,
    /// Explicit step identity, when the step declared one.
    pub key: Option<String>,
    pub state: StateRef,
    /// blake3 of the raw state bytes.
    pub checksum: [u8; 32],
    pub raw_size: u64,
    /// Bytes this checkpoint added to the store when it was written (new chunks, raw: they are
    /// compressed afterwards, [`crate::deferred`]; or the inline state).
    pub stored_size: u64,
    pub checks: Checks,
    pub metadata: BTreeMap<String, String>,
    pub created_at_ms: u64,
}

pub fn ckpt_key(exec: &ExecKey, id: Ulid) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(exec);
    k[16..].copy_from_slice(&id.to_bytes());
    k
}

/// Where to roll back to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackTarget {
    /// A checkpoint id (ULID text).
    Id(String),
    /// The latest checkpoint with this name, on the live branch if it has one.
    Name(String),
    /// The latest checkpoint of the live branch whose checks passed and whose state verifies.
    LastConsistent,
    /// The consistent cut at this global seq: every agent back to its state at that point.
    GlobalSeq(u64),
}

impl RollbackTarget {
    /// Reads what a user typed: a ULID is an id, anything else a name.
    pub fn parse(s: &str) -> RollbackTarget {
        if s.parse::<Ulid>().is_ok() {
            RollbackTarget::Id(s.to_string())
        } else {
            RollbackTarget::Name(s.to_string())
        }
    }
}

/// The consistent cut of an execution at one global seq.
#[derive(Clone, Debug, Serialize)]
pub struct Cut {
    pub global_seq: u64,
    /// For each agent, its latest checkpoint at or before `global_seq`.
    pub agents: BTreeMap<String, Checkpoint>,
}

/// Options for [`Store::fork`].
#[derive(Clone, Debug, Default)]
pub struct ForkOptions {
    /// Id of the new execution; generated when absent.
    pub new_execution_id: Option<String>,
    /// Replaces the state of the checkpoint forked at (e.g. an edited step result), so the
    /// new execution resumes from it and re-runs what follows.
    pub state: Option<Vec<u8>>,
}

/// One problem found by [`Store::verify`].
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Problem {
    pub execution: String,
    pub checkpoint: Option<String>,
    pub error: String,
}

/// The outcome of [`Store::verify`].
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct VerifyReport {
    pub executions: u64,
    pub checkpoints: u64,
    pub problems: Vec<Problem>,
    pub audit: AuditReport,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.audit.problems.is_empty()
    }
}

impl Store {
    pub fn put_checkpoint(&self, batch: &mut WriteBatch, exec: &ExecKey, c: &Checkpoint) {
        batch.put_cf(
            self.cf(Cf::Checkpoints),
            ckpt_key(exec, c.id),
            codec::encode(c),
        );
        batch.put_cf(self.cf(Cf::CheckpointIndex), c.id.to_bytes(), exec);
    }

    /// A checkpoint by id, whatever execution it belongs to.
    pub fn checkpoint(&self, id: &str) -> Result<Checkpoint> {
        let ulid = parse_id(id)?;
        let not_found = || Error::CheckpointNotFound { id: id.to_string() };
        let Some(exec) = self.get(Cf::CheckpointIndex, &ulid.to_bytes())? else {
            // A step of a running execution is indexed when the execution's record is next
            // written (format 2).
            return self.unindexed_checkpoint(ulid)?.ok_or_else(not_found);
        };
        let exec: ExecKey = exec.as_slice().try_into().map_err(|_| Error::Decode {
            what: "checkpoint index entry",
            key: id.to_string(),
            detail: "expected 16 bytes".into(),
        })?;
        let bytes = self
            .get(Cf::Checkpoints, &ckpt_key(&exec, ulid))?
            .ok_or_else(not_found)?;
        codec::decode("checkpoint", &|| id.to_string(), &bytes)
    }

    /// A checkpoint of the execution with key `exec`.
    pub(crate) fn checkpoint_of(&self, exec: &ExecKey, id: Ulid) -> Result<Checkpoint> {
        let bytes = self
            .get(Cf::Checkpoints, &ckpt_key(exec, id))?
            .ok_or_else(|| Error::CheckpointNotFound { id: id.to_string() })?;
        codec::decode("checkpoint", &|| id.to_string(), &bytes)
    }

    /// Every checkpoint of an execution, all branches, oldest first.
    pub fn checkpoints(&self, execution_id: &str) -> Result<Vec<Checkpoint>> {
        self.execution(execution_id)?;
        self.checkpoints_unchecked(&exec_key(execution_id))
    }

    fn checkpoints_unchecked(&self, key: &ExecKey) -> Result<Vec<Checkpoint>> {
        self.scan_prefix(Cf::Checkpoints, key)
            .map(|item| {
                let (k, v) = item?;
                codec::decode("checkpoint", &|| crate::hex(&k[16..]), &v)
            })
            .collect()
    }

    pub fn live_branch_of(&self, exec: &Execution) -> Result<Vec<Checkpoint>> {
        let all = self.checkpoints_unchecked(&exec_key(&exec.id))?;
        branch_to(&exec.id, exec.head, all)
    }

    /// The live branch of an execution, from its first checkpoint to its head.
    pub fn history(&self, execution_id: &str) -> Result<Vec<Checkpoint>> {
        self.live_branch_of(&self.execution(execution_id)?)
    }

    /// The branch that ends at a checkpoint, first checkpoint first: the history of an
    /// abandoned branch (after a rollback) as well as of the live one.
    pub fn branch(&self, checkpoint_id: &str) -> Result<Vec<Checkpoint>> {
        let tip = self.checkpoint(checkpoint_id)?;
        let all = self.checkpoints_unchecked(&exec_key(&tip.execution_id))?;
        branch_to(&tip.execution_id, Some(tip.id), all)
    }

    fn resolve(&self, exec: &Execution, target: &RollbackTarget) -> Result<Checkpoint> {
        match target {
            RollbackTarget::Id(id) => {
                let c = self.checkpoint(id)?;
                if c.execution_id != exec.id {
                    return Err(Error::WrongExecution {
                        checkpoint: id.clone(),
                        belongs_to: c.execution_id,
                        requested: exec.id.clone(),
                    });
                }
                Ok(c)
            }
            RollbackTarget::Name(name) => {
                let live = self.live_branch_of(exec)?;
                if let Some(c) = live
                    .iter()
                    .rev()
                    .find(|c| c.kind.is_step() && &c.name == name)
                {
                    return Ok(c.clone());
                }
                let all = self.checkpoints_unchecked(&exec_key(&exec.id))?;
                all.into_iter()
                    .rev()
                    .find(|c| c.kind.is_step() && &c.name == name)
                    .ok_or_else(|| Error::CheckpointNameNotFound {
                        execution: exec.id.clone(),
                        name: name.clone(),
                    })
            }
            RollbackTarget::LastConsistent => {
                let live = self.live_branch_of(exec)?;
                live.into_iter()
                    .rev()
                    .find(|c| c.kind.is_step() && c.checks.passed() && self.read_state(c).is_ok())
                    .ok_or_else(|| Error::NoConsistentCheckpoint {
                        execution: exec.id.clone(),
                    })
            }
            RollbackTarget::GlobalSeq(g) => {
                let live = self.live_branch_of(exec)?;
                live.into_iter()
                    .rev()
                    .find(|c| c.kind.is_step() && c.global_seq <= *g)
                    .ok_or_else(|| Error::InvalidArgument {
                        what: "rollback target",
                        detail: format!(
                            "execution {:?} has no checkpoint at or before global seq {g}",
                            exec.id
                        ),
                    })
            }
        }
    }

    /// Rolls an execution back: its head moves to the target (through a rollback marker), the
    /// steps after it will run again, and the abandoned branch stays readable. The execution
    /// becomes `pending` and is listed by [`Store::resumable`].
    ///
    /// ```
    /// use omium_storage::{Store, BeginOptions, RollbackTarget};
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// let run = store.begin("e1", BeginOptions::default()).unwrap();
    /// run.step("a", || Ok::<_, omium_storage::Error>(b"1".to_vec())).unwrap();
    /// run.step("b", || Ok::<_, omium_storage::Error>(b"2".to_vec())).unwrap();
    /// run.complete(None).unwrap();
    /// drop(run);
    /// store.rollback("e1", &RollbackTarget::Name("a".into()), None).unwrap();
    /// let names: Vec<_> = store.history("e1").unwrap().into_iter().map(|c| c.name).collect();
    /// assert_eq!(names, ["a", "rollback to a"]);
    /// ```
    pub fn rollback(
        &self,
        execution_id: &str,
        target: &RollbackTarget,
        reason: Option<&str>,
    ) -> Result<Checkpoint> {
        self.require_writer("rollback")?;
        let exec = self.execution(execution_id)?;
        let t = self.resolve(&exec, target)?;
        let key = exec_key(execution_id);
        self.apply(execution_id, WriteBatch::default(), None, |st, batch, audit| {
            if st.running {
                return Err(Error::InvalidState {
                    execution: execution_id.into(),
                    status: "running".into(),
                    detail: "a run in this process holds it; roll back after the run ends".into(),
                });
            }
            let exec = st.exec.as_mut().ok_or_else(|| Error::ExecutionNotFound { id: execution_id.into() })?;
            let now = now_ms();
            let mut metadata = BTreeMap::from([("target".to_string(), t.id.to_string())]);
            if let Some(r) = reason {
                metadata.insert("reason".into(), r.into());
            }
            let marker = Checkpoint {
                id: crate::store::new_id(),
                execution_id: execution_id.into(),
                agent: t.agent.clone(),
                name: format!("rollback to {}", t.name),
                kind: CheckpointKind::Rollback,
                parent: Some(t.id),
                seq: t.seq,
                global_seq: exec.next_global_seq,
                key: None,
                state: t.state.clone(),
                checksum: t.checksum,
                raw_size: t.raw_size,
                stored_size: 0,
                checks: t.checks.clone(),
                metadata,
                created_at_ms: now,
            };
            let from = exec.head;
            exec.next_global_seq += 1;
            exec.head = Some(marker.id);
            exec.checkpoint_count += 1;
            exec.status = Status::Pending;
            exec.error = None;
            exec.lease = None;
            exec.updated_at_ms = now;
            self.put_checkpoint(batch, &key, &marker);
            audit.push(
                AuditDraft::new(
                    "rollback",
                    format!("execution/{execution_id}"),
                    serde_json::json!({
                        "from": from.map(|f| f.to_string()), "to": t.id.to_string(), "name": t.name, "reason": reason
                    })
                    .to_string(),
                )
                .counting(
                    Dims::execution(&exec.tenant, &exec.workflow),
                    Cell { rollbacks: 1, ..Cell::default() },
                ),
            );
            Ok(marker)
        })
    }

    /// Forks an execution at a checkpoint into a new execution: the new one starts with the
    /// source's branch up to that checkpoint (sharing its chunks), optionally with that
    /// checkpoint's state replaced, and runs everything after it again. The source is unchanged.
    pub fn fork(
        &self,
        execution_id: &str,
        at: &RollbackTarget,
        options: ForkOptions,
    ) -> Result<Execution> {
        self.require_writer("fork")?;
        let src = self.execution(execution_id)?;
        let at = self.resolve(&src, at)?;
        let all = self.checkpoints_unchecked(&exec_key(execution_id))?;
        let branch = branch_to(execution_id, Some(at.id), all)?;
        let new_id = options
            .new_execution_id
            .clone()
            .unwrap_or_else(|| format!("{execution_id}-fork-{}", crate::store::new_id()));
        let new_key = exec_key(&new_id);
        let _shared = self.inner.gc_lock.read();
        let mut batch = WriteBatch::default();
        let edited = match &options.state {
            Some(s) => {
                let (state, stored, sum) = self.put_state(&mut batch, s)?;
                Some(((state, stored), sum, s.len() as u64))
            }
            None => None,
        };
        if let Some(input) = self.get(Cf::Executions, &{
            let mut k = exec_key(execution_id).to_vec();
            k.push(1);
            k
        })? {
            let mut k = new_key.to_vec();
            k.push(1);
            batch.put_cf(self.cf(Cf::Executions), k, input);
        }
        self.apply(&new_id, batch, None, |st, batch, audit| {
            if st.exec.is_some() {
                return Err(Error::InvalidArgument {
                    what: "fork target",
                    detail: format!("execution {new_id:?} already exists; choose another id for the fork"),
                });
            }
            let now = now_ms();
            let mut ids: HashMap<Ulid, Ulid> = HashMap::new();
            let mut last = None;
            let mut copy_of_at = None;
            for c in &branch {
                let mut n = c.clone();
                n.id = crate::store::new_id();
                n.execution_id = new_id.clone();
                n.parent = c.parent.and_then(|p| ids.get(&p).copied());
                n.stored_size = 0;
                n.metadata.insert("copied_from".into(), c.id.to_string());
                if c.id == at.id {
                    if let Some(((state, stored), checksum, raw)) = &edited {
                        n.state = state.clone();
                        n.stored_size = *stored;
                        n.checksum = *checksum;
                        n.raw_size = *raw;
                        n.metadata.insert("edited".into(), "true".into());
                        // An edited state is in the execution's codec (the bindings encode it so);
                        // without one recorded (a C program names codecs per checkpoint only),
                        // in the codec of the state it replaces.
                        if let Some(codec) = crate::value::execution_codec(&src) {
                            n.metadata.insert(crate::value::CODEC_KEY.into(), codec.into());
                        }
                    }
                    copy_of_at = Some(n.clone());
                }
                ids.insert(c.id, n.id);
                last = Some(n.id);
                self.put_checkpoint(batch, &new_key, &n);
            }
            let base = copy_of_at.expect("branch ends at the fork point");
            let marker = Checkpoint {
                id: crate::store::new_id(),
                execution_id: new_id.clone(),
                name: format!("fork of {execution_id} at {}", at.name),
                kind: CheckpointKind::Fork,
                parent: last,
                key: None,
                stored_size: 0,
                metadata: BTreeMap::from([
                    ("source_execution".to_string(), execution_id.to_string()),
                    ("source_checkpoint".to_string(), at.id.to_string()),
                ]),
                created_at_ms: now,
                global_seq: branch.last().map(|c| c.global_seq + 1).unwrap_or(1),
                ..base
            };
            self.put_checkpoint(batch, &new_key, &marker);
            // The copied steps are the source's, counted there; the fork's own start here.
            batch.put_cf(
                self.cf(Cf::Rollups),
                crate::rollup::marker_key(&new_key),
                marker.global_seq.to_be_bytes(),
            );
            let mut labels = src.labels.clone();
            labels.insert("forked_from".into(), format!("{execution_id}@{}", at.id));
            st.exec = Some(Execution {
                id: new_id.clone(),
                workflow: src.workflow.clone(),
                tenant: src.tenant.clone(),
                status: Status::Pending,
                head: Some(marker.id),
                error: None,
                attempts: 0,
                lease: None,
                labels,
                created_at_ms: now,
                updated_at_ms: now,
                next_global_seq: marker.global_seq + 1,
                checkpoint_count: branch.len() as u64 + 1,
                has_input: src.has_input,
                has_output: false,
            });
            audit.push(
                AuditDraft::new(
                    "fork",
                    format!("execution/{new_id}"),
                    serde_json::json!({"source": execution_id, "at": at.id.to_string(), "edited": options.state.is_some()}).to_string(),
                )
                .counting(
                    Dims::execution(&src.tenant, &src.workflow),
                    Cell { forks: 1, ..Cell::default() },
                ),
            );
            Ok(st.exec.clone().expect("set above"))
        })
    }

    /// The consistent cut of a multi-agent execution at `global_seq` (default: its head): each
    /// agent's latest checkpoint at or before that point on the live branch. Rolling back with
    /// [`RollbackTarget::GlobalSeq`] moves every agent back to it at once.
    pub fn consistent_cut(&self, execution_id: &str, global_seq: Option<u64>) -> Result<Cut> {
        let live = self.history(execution_id)?;
        let g = global_seq.unwrap_or_else(|| live.iter().map(|c| c.global_seq).max().unwrap_or(0));
        let mut agents = BTreeMap::new();
        for c in live
            .into_iter()
            .filter(|c| c.kind.is_step() && c.global_seq <= g)
        {
            agents.insert(c.agent.clone(), c);
        }
        Ok(Cut {
            global_seq: g,
            agents,
        })
    }

    /// Recomputes every checksum (of one execution, or of all) and checks the audit chain.
    /// Reports every problem found, each naming the execution and checkpoint.
    pub fn verify(&self, execution_id: Option<&str>) -> Result<VerifyReport> {
        self.verify_expecting(execution_id, None)
    }

    /// [`Store::verify`], and that the audit chain still holds `expect_head`, a head recorded
    /// earlier (see [`crate::AuditHead`]).
    pub fn verify_expecting(
        &self,
        execution_id: Option<&str>,
        expect_head: Option<&crate::AuditHead>,
    ) -> Result<VerifyReport> {
        let execs = match execution_id {
            Some(id) => vec![self.execution(id)?],
            None => self.executions()?,
        };
        let mut report = VerifyReport::default();
        for e in execs {
            report.executions += 1;
            let all = match self.checkpoints_unchecked(&exec_key(&e.id)) {
                Ok(all) => all,
                Err(err) => {
                    report.problems.push(Problem {
                        execution: e.id.clone(),
                        checkpoint: None,
                        error: err.to_string(),
                    });
                    continue;
                }
            };
            let ids: std::collections::HashSet<Ulid> = all.iter().map(|c| c.id).collect();
            if let Some(h) = e.head {
                if !ids.contains(&h) {
                    report.problems.push(Problem {
                        execution: e.id.clone(),
                        checkpoint: Some(h.to_string()),
                        error: "head checkpoint is missing".into(),
                    });
                }
            }
            for c in &all {
                report.checkpoints += 1;
                if let Some(p) = c.parent {
                    if !ids.contains(&p) {
                        report.problems.push(Problem {
                            execution: e.id.clone(),
                            checkpoint: Some(c.id.to_string()),
                            error: format!("parent checkpoint {p} is missing"),
                        });
                    }
                }
                if let Err(err) = self.read_state(c) {
                    report.problems.push(Problem {
                        execution: e.id.clone(),
                        checkpoint: Some(c.id.to_string()),
                        error: err.to_string(),
                    });
                }
            }
        }
        if execution_id.is_none() {
            // Framework checkpoints (LangGraph threads, CrewAI flows) hold chunks too.
            crate::threads::verify_into(self, &mut report)?;
        }
        report.audit = self.verify_audit_expecting(expect_head)?;
        Ok(report)
    }
}

fn parse_id(id: &str) -> Result<Ulid> {
    id.parse::<Ulid>().map_err(|_| Error::InvalidArgument {
        what: "checkpoint id",
        detail: format!("{id:?} is not a checkpoint id (expected a 26-character ULID such as 01J9Z3W4K5M6N7P8Q9R0S1T2V3)"),
    })
}

/// The branch ending at `head`, root first.
fn branch_to(
    execution_id: &str,
    head: Option<Ulid>,
    all: Vec<Checkpoint>,
) -> Result<Vec<Checkpoint>> {
    let mut by_id: HashMap<Ulid, Checkpoint> = all.into_iter().map(|c| (c.id, c)).collect();
    let mut out = Vec::new();
    let mut cur = head;
    while let Some(id) = cur {
        let c = by_id.remove(&id).ok_or_else(|| Error::Integrity {
            checkpoint: id.to_string(),
            execution: execution_id.into(),
            detail: "checkpoint is missing from its branch (or its parent links form a cycle)"
                .into(),
        })?;
        cur = c.parent;
        out.push(c);
    }
    out.reverse();
    Ok(out)
}
