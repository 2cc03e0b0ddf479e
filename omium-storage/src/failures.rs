//! Failure records: what went wrong in a step or an execution and every action taken about
//! it, kept per execution. Storage owns the records and their settlement when an execution
//! finishes (in the same batch); the recovery engine (`omium-engine`) decides what to do.

use std::collections::BTreeMap;

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::audit::AuditDraft;
use crate::codec;
use crate::error::{Error, Result};
use crate::execution::Status;
use crate::rollup::{failure_delta, Delta};
use crate::store::{exec_key, now_ms, Cf, Store};
use omium_spec::policy::Trigger;

/// Where a failure stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Being handled.
    Open,
    /// Waiting for a human (`resume`).
    Paused,
    /// Resumed by a human; recovered once the execution completes.
    Resumed,
    /// Rolled back; recovered once the execution completes.
    RolledBack,
    /// The step or the execution went on successfully.
    Recovered,
    /// Handed to people, and the step failed.
    Escalated,
    /// Nothing recovered it.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Open => "open",
            Outcome::Paused => "paused",
            Outcome::Resumed => "resumed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Recovered => "recovered",
            Outcome::Escalated => "escalated",
            Outcome::Failed => "failed",
        }
    }

    /// True once nothing more will happen to the failure.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Outcome::Recovered | Outcome::Escalated | Outcome::Failed
        )
    }
}

/// One action taken about a failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub action: String,
    /// What exactly was done (JSON).
    pub detail: String,
    /// `ok`, `failed`, `pending`, or `superseded` (overtaken by an operator's escalation).
    pub outcome: String,
    pub started_at_ms: u64,
    pub ended_at_ms: Option<u64>,
}

impl ActionRecord {
    /// An action a person took at `now`, done at once.
    pub fn taken(action: &str, detail: serde_json::Value, now: u64) -> ActionRecord {
        ActionRecord {
            action: action.into(),
            detail: detail.to_string(),
            outcome: "ok".into(),
            started_at_ms: now,
            ended_at_ms: Some(now),
        }
    }
}

/// A failure and everything done about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub id: String,
    pub execution_id: String,
    pub workflow: String,
    pub tenant: String,
    pub step: Option<String>,
    pub seq: Option<u64>,
    pub key: Option<String>,
    pub agent: String,
    pub kind: Trigger,
    pub error_class: String,
    pub message: String,
    /// The rule that handled it, and the scope it came from.
    pub rule: Option<String>,
    pub scope: Option<String>,
    pub root_cause: Option<String>,
    pub suggested_fix: Option<String>,
    pub actions: Vec<ActionRecord>,
    pub outcome: Outcome,
    pub created_at_ms: u64,
    pub resolved_at_ms: Option<u64>,
}

/// The key of a failure record, from its execution and its id.
fn record_key(f: &FailureRecord) -> Result<[u8; 32]> {
    let id = f.id.parse().map_err(|_| Error::Decode {
        what: "failure",
        key: f.id.clone(),
        detail: "its id is not a ULID".into(),
    })?;
    Ok(failure_key(&f.execution_id, id))
}

pub fn failure_key(execution_id: &str, id: ulid::Ulid) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(&exec_key(execution_id));
    k[16..].copy_from_slice(&id.to_bytes());
    k
}

impl Store {
    /// Failures recorded for one execution (oldest first), or for every execution.
    pub fn failures(&self, execution_id: Option<&str>) -> Result<Vec<FailureRecord>> {
        let prefix = execution_id
            .map(|e| exec_key(e).to_vec())
            .unwrap_or_default();
        let mut out: Vec<FailureRecord> = self
            .scan_prefix(Cf::Failures, &prefix)
            .map(|r| {
                let (k, v) = r?;
                codec::decode("failure", &|| crate::hex(&k), &v)
            })
            .collect::<Result<_>>()?;
        if let Some(e) = execution_id {
            out.retain(|f| f.execution_id == e);
        } else {
            out.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.id.cmp(&b.id)));
        }
        Ok(out)
    }

    /// Adds to `batch` the deletion of `execution_id`'s failure records (a record that does not
    /// decode goes too: its key says whose it is); returns how many.
    pub(crate) fn erase_failures(&self, batch: &mut WriteBatch, execution_id: &str) -> Result<u64> {
        let mut n = 0;
        for r in self.scan_prefix(Cf::Failures, &exec_key(execution_id)) {
            let (k, v) = r?;
            let f: Result<FailureRecord> = codec::decode("failure", &|| crate::hex(&k), &v);
            if f.is_ok_and(|f| f.execution_id != execution_id) {
                continue; // another execution whose key shares the hash prefix
            }
            batch.delete_cf(self.cf(Cf::Failures), &k);
            n += 1;
        }
        Ok(n)
    }

    /// Settles the failures of an execution that are still waiting on its outcome: when it
    /// completes they are recovered, when it fails they failed. Part of the caller's batch.
    /// Returns what settling adds to the analytics (recoveries), for the caller's audit entry.
    pub fn settle_failures(
        &self,
        batch: &mut WriteBatch,
        execution_id: &str,
        status: Status,
    ) -> Result<Vec<Delta>> {
        let outcome = match status {
            Status::Completed => Outcome::Recovered,
            Status::Failed | Status::Cancelled => Outcome::Failed,
            _ => return Ok(Vec::new()),
        };
        let now = now_ms();
        let mut deltas = Vec::new();
        for old in self.failures(Some(execution_id))? {
            if matches!(
                old.outcome,
                Outcome::Open | Outcome::Resumed | Outcome::RolledBack | Outcome::Paused
            ) {
                let mut f = old.clone();
                f.outcome = outcome;
                f.resolved_at_ms = Some(now);
                self.put_failure_in(batch, &f)?;
                deltas.extend(failure_delta(Some(&old), &f));
            }
        }
        Ok(deltas)
    }

    /// The failure that paused `execution_id`, as resuming it makes it (the pause action done,
    /// a `resume` action by `by`, outcome `resumed`); not written. `None` when no failure
    /// paused it (an operator's pause).
    pub fn resumed_failure(
        &self,
        execution_id: &str,
        by: &str,
        state_edited: bool,
    ) -> Result<Option<FailureRecord>> {
        let Some(mut f) = self
            .failures(Some(execution_id))?
            .into_iter()
            .rev()
            .find(|f| f.outcome == Outcome::Paused)
        else {
            return Ok(None);
        };
        let now = now_ms();
        if let Some(a) = f.actions.iter_mut().rev().find(|a| a.action == "pause") {
            a.outcome = "ok".into();
            a.ended_at_ms = Some(now);
        }
        f.actions.push(ActionRecord::taken(
            "resume",
            serde_json::json!({"by": by, "state_edited": state_edited}),
            now,
        ));
        f.outcome = Outcome::Resumed;
        Ok(Some(f))
    }

    /// An operator hands the newest unsettled failure of `execution_id` to people: its open
    /// actions are closed, an `escalate` action names `by` and `reason`, and it is settled as
    /// escalated (it counts so in the recovery figures). The execution keeps its status (a
    /// paused one stays paused for whoever takes it over). Written with the audit entry
    /// `failure.escalate`; notifying the policy's channels is the engine's
    /// (`omium_engine::recovery::notify_escalation`).
    pub fn escalate_failure(
        &self,
        execution_id: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<FailureRecord> {
        self.require_writer("escalating a failure")?;
        let exec = self.execution(execution_id)?;
        let Some(mut f) = self
            .failures(Some(execution_id))?
            .into_iter()
            .rev()
            .find(|f| !f.outcome.is_final())
        else {
            return Err(Error::InvalidState {
                execution: execution_id.into(),
                status: exec.status.to_string(),
                detail: "it has no open failure to escalate (every failure of it is settled; \
                         `omium recoveries --execution ID` lists what happened to each)"
                    .into(),
            });
        };
        let now = now_ms();
        // A pause did its part (it waited for a person, who came); anything else pending is
        // overtaken by the escalation.
        for a in f.actions.iter_mut().filter(|a| a.outcome == "pending") {
            a.outcome = if a.action == "pause" {
                "ok"
            } else {
                "superseded"
            }
            .into();
            a.ended_at_ms = Some(now);
        }
        f.actions.push(ActionRecord::taken(
            "escalate",
            serde_json::json!({"by": by, "reason": reason}),
            now,
        ));
        f.outcome = Outcome::Escalated;
        f.resolved_at_ms = Some(now);
        self.put_failure(&f, "failure.escalate")?;
        Ok(f)
    }

    /// Resumes a paused execution: with `state`, the step that paused it is recorded with that
    /// state (a human's corrected output), so it is not run again; without, it runs again.
    /// Returns the failure that had paused it, if one did.
    pub fn resume_paused(
        &self,
        execution_id: &str,
        state: Option<&[u8]>,
        by: Option<&str>,
    ) -> Result<Option<FailureRecord>> {
        let store = self;
        store.require_writer("resume")?;
        let exec = store.execution(execution_id)?;
        if exec.status != Status::Paused {
            return Err(Error::InvalidState {
                execution: execution_id.into(),
                status: exec.status.to_string(),
                detail: "only a paused execution can be resumed; re-run it to continue it".into(),
            });
        }
        let paused = store
            .failures(Some(execution_id))?
            .into_iter()
            .rev()
            .find(|f| f.outcome == Outcome::Paused);
        let by = by
            .map(str::to_string)
            .unwrap_or_else(|| store.actor().to_string());
        let run = store.begin_paused(execution_id)?;
        if let Some(s) = state {
            let Some(f) = paused.as_ref().filter(|f| f.step.is_some()) else {
                return Err(Error::InvalidArgument {
                    what: "resume state",
                    detail: format!("execution {execution_id:?} was not paused by a step, so there is no step to give the state to"),
                });
            };
            let seq = f.seq.unwrap_or(0);
            let mut metadata = BTreeMap::from([
                ("resumed_by".to_string(), by.clone()),
                ("failure".to_string(), f.id.clone()),
            ]);
            // The corrected state is in the execution's codec (the bindings encode it so).
            if let Some(codec) = crate::value::execution_codec(&exec) {
                metadata.insert(crate::value::CODEC_KEY.into(), codec.into());
            }
            run.record(
                seq,
                crate::NewCheckpoint {
                    name: f.step.as_deref().unwrap_or_default(),
                    agent: Some(&f.agent),
                    kind: crate::CheckpointKind::Step,
                    key: f.key.as_deref(),
                    state: s,
                    checks: Default::default(),
                    metadata,
                },
            )?;
        }
        run.suspend()?;
        let Some(f) = store.resumed_failure(execution_id, &by, state.is_some())? else {
            return Ok(None);
        };
        store.put_failure(&f, "failure.resume")?;
        Ok(Some(f))
    }

    /// A run of a paused execution, to record what a human gave it.
    pub fn begin_paused(&self, execution_id: &str) -> Result<crate::Run> {
        let store = self;
        let exec = store.execution(execution_id)?;
        store.begin(
            execution_id,
            crate::BeginOptions {
                workflow: exec.workflow,
                tenant: exec.tenant,
                resume_paused: true,
                ..Default::default()
            },
        )
    }

    /// Adds a failure record to `batch` (the caller's audit entry covers it).
    pub fn put_failure_in(&self, batch: &mut WriteBatch, f: &FailureRecord) -> Result<()> {
        batch.put_cf(self.cf(Cf::Failures), record_key(f)?, codec::encode(f));
        Ok(())
    }

    /// Writes a failure record (new or updated) with an audit entry naming `action`.
    pub fn put_failure(&self, f: &FailureRecord, action: &'static str) -> Result<()> {
        let old = match self.get(Cf::Failures, &record_key(f)?)? {
            Some(v) => Some(codec::decode::<FailureRecord>(
                "failure",
                &|| f.id.clone(),
                &v,
            )?),
            None => None,
        };
        let mut batch = WriteBatch::default();
        self.put_failure_in(&mut batch, f)?;
        let detail = serde_json::json!({
            "execution": f.execution_id, "step": f.step, "type": f.kind.as_str(), "outcome": f.outcome.as_str(),
            "actions": f.actions.len(),
        });
        self.commit(
            batch,
            vec![{
                let mut draft =
                    AuditDraft::new(action, format!("failure/{}", f.id), detail.to_string());
                draft.rollup.extend(failure_delta(old.as_ref(), f));
                draft
            }],
            None,
        )
    }
}
