//! One API over a store in this process or one served by `omium serve`: the calls the bindings
//! make, with the same results either way. A binding holds a [`StoreHandle`] and never looks at
//! which kind it is (except for the few calls only an embedded store has: [`StoreHandle::local`]).

use std::collections::BTreeMap;

use omium_storage::store::now_ms;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::{b64, Client, RemoteRecovery, RemoteRun};
use crate::error::{Error, Result};
use crate::policy::Scope;
use crate::prelude::*;
use crate::recovery::driver::{Driver, Handling};
use crate::recovery::{Directive, Outcome};
use crate::trace::Span;
use crate::{
    AuditHead, BeginOptions, Checkpoint, Execution, FailureInput, ForkOptions, NewCheckpoint,
    Recovery, RollbackTarget, Run, Store, VerifyReport,
};

fn value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("records serialize")
}

/// A store handle: embedded, or a client of a daemon.
#[derive(Clone)]
pub enum StoreHandle {
    Local(Store),
    Remote(Client),
}

impl StoreHandle {
    /// The embedded store, for the calls a daemon does not serve; `what` names the call in the
    /// error a remote handle answers.
    pub fn local(&self, what: &str) -> Result<&Store> {
        match self {
            StoreHandle::Local(s) => Ok(s),
            StoreHandle::Remote(c) => Err(Error::InvalidState {
                execution: String::new(),
                status: "served".into(),
                detail: format!(
                    "{what} needs the store opened in this process; it is not available through \
                     omium serve ({}) yet: open the store itself (init with a path) for it",
                    c.url()
                ),
            }),
        }
    }

    fn get<T: DeserializeOwned>(c: &Client, method: &str, args: Value) -> Result<T> {
        c.call_as(method, args)
    }

    pub fn begin(&self, execution_id: &str, o: BeginOptions) -> Result<RunHandle> {
        match self {
            StoreHandle::Local(s) => s.begin(execution_id, o).map(RunHandle::Local),
            StoreHandle::Remote(c) => {
                let args = json!({
                    "workflow": o.workflow, "tenant": o.tenant, "input": o.input.as_deref().map(b64),
                    "labels": o.labels, "agent": o.agent, "lease_ttl": o.lease_ttl.as_secs_f64(),
                    "durability": o.durability.map(|d| d.as_str()),
                });
                c.begin(execution_id, args)
                    .map(|(r, _)| RunHandle::Remote(r))
            }
        }
    }

    pub fn execution(&self, execution_id: &str) -> Result<Execution> {
        match self {
            StoreHandle::Local(s) => s.execution(execution_id),
            StoreHandle::Remote(c) => {
                Self::get(c, "execution", json!({"execution_id": execution_id}))
            }
        }
    }

    pub fn executions(&self) -> Result<Vec<Execution>> {
        match self {
            StoreHandle::Local(s) => s.executions(),
            StoreHandle::Remote(c) => Self::get(c, "executions", json!({})),
        }
    }

    pub fn resumable(&self) -> Result<Vec<Execution>> {
        match self {
            StoreHandle::Local(s) => s.resumable(),
            StoreHandle::Remote(c) => Self::get(c, "resumable", json!({})),
        }
    }

    pub fn execution_input(&self, execution_id: &str) -> Result<Option<Vec<u8>>> {
        match self {
            StoreHandle::Local(s) => s.execution_input(execution_id),
            StoreHandle::Remote(c) => {
                c.bytes("execution_input", json!({"execution_id": execution_id}))
            }
        }
    }

    pub fn execution_output(&self, execution_id: &str) -> Result<Option<Vec<u8>>> {
        match self {
            StoreHandle::Local(s) => s.execution_output(execution_id),
            StoreHandle::Remote(c) => {
                c.bytes("execution_output", json!({"execution_id": execution_id}))
            }
        }
    }

    pub fn history(&self, execution_id: &str) -> Result<Vec<Checkpoint>> {
        match self {
            StoreHandle::Local(s) => s.history(execution_id),
            StoreHandle::Remote(c) => {
                Self::get(c, "history", json!({"execution_id": execution_id}))
            }
        }
    }

    pub fn checkpoints(&self, execution_id: &str) -> Result<Vec<Checkpoint>> {
        match self {
            StoreHandle::Local(s) => s.checkpoints(execution_id),
            StoreHandle::Remote(c) => {
                Self::get(c, "checkpoints", json!({"execution_id": execution_id}))
            }
        }
    }

    pub fn branch(&self, checkpoint_id: &str) -> Result<Vec<Checkpoint>> {
        match self {
            StoreHandle::Local(s) => s.branch(checkpoint_id),
            StoreHandle::Remote(c) => {
                Self::get(c, "branch", json!({"checkpoint_id": checkpoint_id}))
            }
        }
    }

    pub fn checkpoint(&self, checkpoint_id: &str) -> Result<Checkpoint> {
        match self {
            StoreHandle::Local(s) => s.checkpoint(checkpoint_id),
            StoreHandle::Remote(c) => {
                Self::get(c, "checkpoint", json!({"checkpoint_id": checkpoint_id}))
            }
        }
    }

    /// A checkpoint's verified state bytes.
    pub fn read_state(&self, checkpoint_id: &str) -> Result<Vec<u8>> {
        match self {
            StoreHandle::Local(s) => s.checkpoint(checkpoint_id).and_then(|c| s.read_state(&c)),
            StoreHandle::Remote(c) => c
                .bytes("read_state", json!({"checkpoint_id": checkpoint_id}))
                .map(Option::unwrap_or_default),
        }
    }

    pub fn rollback(
        &self,
        execution_id: &str,
        target: &RollbackTarget,
        reason: Option<&str>,
    ) -> Result<Checkpoint> {
        match self {
            StoreHandle::Local(s) => s.rollback(execution_id, target, reason),
            StoreHandle::Remote(c) => {
                let (to, global_seq) = match target {
                    RollbackTarget::Id(t) | RollbackTarget::Name(t) => (Some(t.as_str()), None),
                    RollbackTarget::GlobalSeq(g) => (None, Some(*g)),
                    RollbackTarget::LastConsistent => (None, None),
                };
                let args = json!({"execution_id": execution_id, "to": to, "global_seq": global_seq, "reason": reason});
                Self::get(c, "rollback", args)
            }
        }
    }

    /// `at` is a checkpoint id or name.
    pub fn fork(&self, execution_id: &str, at: &str, o: ForkOptions) -> Result<Execution> {
        match self {
            StoreHandle::Local(s) => s.fork(execution_id, &RollbackTarget::parse(at), o),
            StoreHandle::Remote(c) => {
                let args = json!({"execution_id": execution_id, "at": at, "new_execution_id": o.new_execution_id, "state": o.state.as_deref().map(b64)});
                Self::get(c, "fork", args)
            }
        }
    }

    /// Forks `execution_id` before its top-level position `at_step` (1 is the first step) into
    /// `new_execution_id`, so that running its workflow there re-runs from that position on:
    /// a fork at the step before it, or a new execution with the same workflow, input and
    /// labels when `at_step` is 1. The original is kept.
    pub fn fork_at_step(
        &self,
        execution_id: &str,
        at_step: u64,
        new_execution_id: &str,
    ) -> Result<Execution> {
        let history = self.history(execution_id)?;
        match crate::trace::calls::fork_point(execution_id, &history, at_step)? {
            Some(before) => self.fork(
                execution_id,
                &before.id.to_string(),
                ForkOptions {
                    new_execution_id: Some(new_execution_id.to_string()),
                    ..ForkOptions::default()
                },
            ),
            None => {
                let source = self.execution(execution_id)?;
                let mut labels = source.labels;
                labels.insert("omium.forked_from".into(), execution_id.to_string());
                let options = BeginOptions {
                    workflow: source.workflow,
                    tenant: source.tenant,
                    input: self.execution_input(execution_id)?,
                    labels,
                    ..BeginOptions::default()
                };
                self.begin(new_execution_id, options)?.close();
                self.execution(new_execution_id)
            }
        }
    }

    /// A replay of `execution_id`'s recorded LLM and tool calls (their states read now).
    pub fn open_replay(&self, execution_id: &str) -> Result<crate::trace::calls::Replay> {
        let history = self.history(execution_id)?;
        // An embedded store reads each state from the checkpoint in hand (no second lookup).
        let calls = crate::trace::calls::recordings(history, |c| match self {
            StoreHandle::Local(s) => s.read_state(c),
            StoreHandle::Remote(_) => self.read_state(&c.id.to_string()),
        })?;
        Ok(crate::trace::calls::Replay::new(execution_id, calls))
    }

    /// `expect_head`: a head recorded earlier that the audit chain must still hold.
    pub fn verify(
        &self,
        execution_id: Option<&str>,
        expect_head: Option<&AuditHead>,
    ) -> Result<VerifyReport> {
        match self {
            StoreHandle::Local(s) => s.verify_expecting(execution_id, expect_head),
            StoreHandle::Remote(c) => Self::get(
                c,
                "verify",
                json!({"execution_id": execution_id, "expect_head": expect_head.map(|h| h.to_string())}),
            ),
        }
    }

    /// The audit chain's last entry (none when nothing was audited yet).
    pub fn audit_head(&self) -> Result<Option<AuditHead>> {
        match self {
            StoreHandle::Local(s) => s.audit_head(),
            StoreHandle::Remote(c) => Self::get(c, "audit_head", json!({})),
        }
    }

    /// The store's sizes (`StoreStats` as JSON).
    pub fn stats(&self) -> Result<Value> {
        match self {
            StoreHandle::Local(s) => s.stats().map(|v| value(&v)),
            StoreHandle::Remote(c) => c.call("stats", json!({})),
        }
    }

    pub fn delete_execution(&self, execution_id: &str) -> Result<u64> {
        match self {
            StoreHandle::Local(s) => s.delete_execution(execution_id),
            StoreHandle::Remote(c) => {
                let v: Value =
                    Self::get(c, "delete_execution", json!({"execution_id": execution_id}))?;
                Ok(v["deleted"].as_u64().unwrap_or(0))
            }
        }
    }

    /// Failure records as JSON.
    pub fn failures(&self, execution_id: Option<&str>) -> Result<Value> {
        match self {
            StoreHandle::Local(s) => s.failures(execution_id).map(|f| value(&f)),
            StoreHandle::Remote(c) => c.call("failures", json!({"execution_id": execution_id})),
        }
    }

    /// Execution analytics (`crate::analytics`) for a query in its JSON form.
    pub fn metrics(&self, query: &Value) -> Result<Value> {
        use crate::analytics::{AnalyticsStore, MetricsQuery};
        match self {
            StoreHandle::Local(s) => s
                .metrics(&MetricsQuery::from_json(query)?)
                .map(|m| value(&m)),
            StoreHandle::Remote(c) => c.call("metrics", query.clone()),
        }
    }

    /// Starts evaluating alert rules (`text`, YAML or JSON; `file` names it in messages) in a
    /// thread of this process. A daemon evaluates its own (`omium serve --alerts FILE`).
    pub fn start_alerts(&self, text: &str, file: Option<&str>) -> Result<crate::alerts::Evaluator> {
        let store =
            self.local("evaluating alert rules (omium serve --alerts FILE does it for a daemon)")?;
        crate::alerts::Evaluator::start(store, alert_rules(text, file)?)
    }

    /// Evaluates alert rules once now: sends the notices of what changed and returns the
    /// transitions (for a cron job, or a process that evaluates on its own schedule).
    pub fn evaluate_alerts(&self, text: &str, file: Option<&str>) -> Result<Value> {
        let store =
            self.local("evaluating alert rules (omium serve --alerts FILE does it for a daemon)")?;
        let t = crate::alerts::evaluate(store, &alert_rules(text, file)?, now_ms())?;
        Ok(value(&t))
    }

    /// The alerts that are pending or firing, and when the rules were last evaluated.
    pub fn alerts(&self) -> Result<Value> {
        match self {
            StoreHandle::Local(s) => Ok(json!({
                "state": crate::alerts::state(s)?,
                "rules": crate::alerts::running_rules(s).map(|r| crate::alerts::summary(&r)),
            })),
            StoreHandle::Remote(c) => c.call("alerts", json!({})),
        }
    }

    /// Acknowledges the firing alerts of `rule` (those of `group`, when given) in the
    /// evaluator of this process or of the daemon.
    pub fn acknowledge_alert(
        &self,
        rule: &str,
        group: &BTreeMap<String, String>,
        by: Option<&str>,
    ) -> Result<Value> {
        let by = by.unwrap_or("operator");
        match self {
            StoreHandle::Local(s) => {
                let rules =
                    crate::alerts::running_rules(s).ok_or_else(|| Error::InvalidArgument {
                        what: "alert",
                        detail: "no alert rules are evaluated in this process; start them first"
                            .into(),
                    })?;
                crate::alerts::acknowledge(s, &rules, rule, group, by).map(|t| value(&t))
            }
            StoreHandle::Remote(c) => c.call(
                "alerts.ack",
                json!({"rule": rule, "group": group, "by": by}),
            ),
        }
    }

    pub fn recovery_metrics(&self, workflow: Option<&str>) -> Result<Value> {
        match self {
            StoreHandle::Local(s) => s.recovery_metrics(workflow).map(|m| value(&m)),
            StoreHandle::Remote(c) => c.call("recovery_metrics", json!({"workflow": workflow})),
        }
    }

    /// Resumes a paused execution; the failure that paused it (JSON), if any.
    pub fn resume(
        &self,
        execution_id: &str,
        state: Option<&[u8]>,
        by: Option<&str>,
    ) -> Result<Option<Value>> {
        match self {
            StoreHandle::Local(s) => s
                .resume(execution_id, state, by)
                .map(|f| f.map(|f| value(&f))),
            StoreHandle::Remote(c) => {
                let args = json!({"execution_id": execution_id, "state": state.map(b64), "by": by});
                c.call("resume", args).map(|v| (!v.is_null()).then_some(v))
            }
        }
    }

    pub fn record_crash(&self, execution_id: &str) -> Result<Value> {
        match self {
            StoreHandle::Local(s) => s.record_crash(execution_id).map(|f| value(&f)),
            StoreHandle::Remote(c) => c.call("record_crash", json!({"execution_id": execution_id})),
        }
    }

    pub fn apply_policy(
        &self,
        tenant: &str,
        scope: &str,
        text: &str,
        file: Option<&str>,
        author: Option<&str>,
    ) -> Result<Value> {
        match self {
            StoreHandle::Local(s) => s
                .apply_policy(tenant, &Scope::parse(scope)?, text, file, author)
                .map(|v| value(&v)),
            StoreHandle::Remote(c) => {
                let args = json!({"tenant": tenant, "scope": scope, "text": text, "file": file, "author": author});
                c.call("apply_policy", args)
            }
        }
    }

    /// Of one scope, of a tenant, or of every tenant.
    pub fn policy_versions(&self, tenant: Option<&str>, scope: Option<&str>) -> Result<Value> {
        match self {
            StoreHandle::Local(s) => {
                let scope = scope.map(Scope::parse).transpose()?;
                match tenant {
                    Some(t) => s.policy_versions(t, scope.as_ref()).map(|v| value(&v)),
                    None => s.all_policy_versions().map(|v| value(&v)),
                }
            }
            StoreHandle::Remote(c) => {
                c.call("policy_versions", json!({"tenant": tenant, "scope": scope}))
            }
        }
    }

    pub fn policy_version(&self, tenant: &str, scope: &str, version: Option<u32>) -> Result<Value> {
        match self {
            StoreHandle::Local(s) => s
                .policy_version(tenant, &Scope::parse(scope)?, version)
                .map(|v| value(&v)),
            StoreHandle::Remote(c) => c.call(
                "policy_version",
                json!({"tenant": tenant, "scope": scope, "version": version}),
            ),
        }
    }

    /// The defaults in force for a step, with their layers.
    pub fn policy_defaults(
        &self,
        tenant: &str,
        workflow: Option<&str>,
        step: Option<&str>,
    ) -> Result<Value> {
        match self {
            StoreHandle::Local(s) => s
                .effective_policy(tenant, workflow, step)
                .map(|e| crate::json::policy_defaults(&e)),
            StoreHandle::Remote(c) => c.call(
                "policy_defaults",
                json!({"tenant": tenant, "workflow": workflow, "step": step}),
            ),
        }
    }

    /// Records a failure and opens its handling, from the policies in force for its step.
    pub fn start_recovery(&self, input: FailureInput, retries: u32) -> Result<RecoveryHandle> {
        match self {
            StoreHandle::Local(s) => {
                let workflow = Some(input.workflow.as_str()).filter(|w| !w.is_empty());
                let e = s.effective_policy(&input.tenant, workflow, input.step.as_deref())?;
                s.start_recovery(input, e)
                    .map(|r| RecoveryHandle::Local(Box::new(r)))
            }
            StoreHandle::Remote(c) => {
                let args = json!({
                    "execution_id": input.execution_id, "workflow": input.workflow,
                    "tenant": input.tenant, "step": input.step, "seq": input.seq, "key": input.key,
                    "agent": input.agent, "kind": input.kind.map(|k| k.as_str()),
                    "error_classes": input.error_classes, "message": input.message,
                    "retries": retries, "rollbacks_so_far": input.rollbacks_so_far,
                });
                c.start_recovery(args).map(RecoveryHandle::Remote)
            }
        }
    }

    /// Records a failure and returns the driver of its handling (see
    /// [`crate::recovery::driver`]).
    pub fn drive_recovery(&self, input: FailureInput, retries: u32) -> Result<Driver> {
        let execution_id = input.execution_id.clone();
        let message = input.message.clone();
        let step = match &input.step {
            Some(s) => format!("step {s:?}"),
            None => "a tool call".to_string(),
        };
        let h = self.start_recovery(input, retries)?;
        Ok(Driver::new(Box::new(h), execution_id, step, message))
    }

    /// Checks a call of `tool` against the `tool_whitelist` in force for the step (or the
    /// execution, outside a step): `tool_denied` when it is not allowed. A denial outside a step
    /// is recorded as a settled failure here; inside one, the step's recovery records it.
    #[allow(clippy::too_many_arguments)]
    pub fn check_tool(
        &self,
        execution_id: &str,
        tenant: &str,
        workflow: Option<&str>,
        step: Option<&str>,
        agent: &str,
        tool: &str,
    ) -> Result<()> {
        // Every tool call asks: an embedded store reads its cached policy, no JSON in between.
        let allowed: Option<Vec<String>> = match self {
            StoreHandle::Local(s) => {
                s.effective_policy(tenant, workflow, step)?
                    .defaults()
                    .tool_allowlist
            }
            StoreHandle::Remote(_) => serde_json::from_value(
                self.policy_defaults(tenant, workflow, step)?["defaults"]["tool_allowlist"].take(),
            )
            .unwrap_or_default(),
        };
        let Some(names) = allowed else {
            return Ok(());
        };
        if names.iter().any(|n| n == tool) {
            return Ok(());
        }
        let err = Error::ToolDenied {
            tool: tool.into(),
            place: match step {
                Some(s) => format!("step {s:?}"),
                None => format!("execution {execution_id:?}"),
            },
            allowed: if names.is_empty() {
                "no tools".into()
            } else {
                names.join(", ")
            },
        };
        if step.is_none() {
            let input = FailureInput {
                execution_id: execution_id.into(),
                workflow: workflow.unwrap_or_default().into(),
                tenant: tenant.into(),
                agent: agent.into(),
                kind: Some(crate::policy::Trigger::ToolDenied),
                error_classes: vec!["ToolDeniedError".into()],
                message: err.to_string(),
                ..FailureInput::default()
            };
            self.drive_recovery(input, 0)?.give_up()?;
        }
        Err(err)
    }

    /// Carries out a rollback a recovery policy decided ([`crate::recovery::roll_back_as_decided`]):
    /// the rollback marker, or None when the execution runs again from its start.
    pub fn rollback_as_decided(
        &self,
        execution_id: &str,
        to: &str,
        failure: &Value,
    ) -> Result<Option<Checkpoint>> {
        crate::recovery::roll_back_as_decided(
            to,
            failure,
            |t, reason| self.rollback(execution_id, t, Some(reason)),
            || Ok(!self.history(execution_id)?.is_empty()),
        )
    }

    pub fn record_span(&self, span: Span) {
        match self {
            StoreHandle::Local(s) => s.record_span(span),
            StoreHandle::Remote(c) => c.record_span(span),
        }
    }

    /// The spans of an execution (JSON, `json::span`), once every span sent is stored.
    pub fn spans(&self, execution_id: &str) -> Result<Value> {
        match self {
            StoreHandle::Local(s) => crate::json::spans(s, execution_id),
            StoreHandle::Remote(c) => {
                c.flush_spans()?;
                c.call("spans", json!({"execution_id": execution_id}))
            }
        }
    }

    /// Applies an operator control (`omium_core::control`): at once, or at the next step
    /// boundary of the run that holds the execution.
    pub fn control(&self, request: &crate::control::Request) -> Result<crate::control::Reply> {
        match self {
            StoreHandle::Local(s) => crate::recovery::control(s, request),
            StoreHandle::Remote(c) => Self::get(
                c,
                "control",
                json!({
                    "action": request.action.as_str(), "execution_id": request.execution,
                    "reason": request.reason, "by": request.by,
                }),
            ),
        }
    }

    /// The events after `since` (`{"events": [CloudEvent], "cursor"}`, `events::page_json`),
    /// waiting up to `wait` for the first one that passes `filter` when none is there yet.
    pub fn events(
        &self,
        since: u64,
        limit: usize,
        filter: &crate::events::EventFilter,
        wait: std::time::Duration,
    ) -> Result<Value> {
        match self {
            StoreHandle::Local(s) => {
                let page = s.follow_events(since, limit, filter, wait)?;
                Ok(crate::events::page_json(s, &page))
            }
            StoreHandle::Remote(c) => c.call(
                "events",
                json!({
                    "since": since, "limit": limit, "types": filter.types,
                    "execution_id": filter.execution, "wait_ms": wait.as_millis() as u64,
                }),
            ),
        }
    }

    /// Waits until every span recorded through this handle is stored.
    pub fn flush_spans(&self) -> Result<()> {
        match self {
            StoreHandle::Local(s) => s.flush_spans(),
            StoreHandle::Remote(c) => {
                c.flush_spans()?;
                c.call("flush_spans", json!({})).map(drop)
            }
        }
    }
}

/// The span of a step being recorded ([`RunHandle::record_traced`]).
#[derive(Clone, Debug)]
pub struct TracedStep {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The step span's parent, when it is to be ended and recorded now.
    pub parent: Option<[u8; 8]>,
    pub start_ns: u64,
    /// End and record the step's span with the checkpoint's.
    pub end_step: bool,
    /// More attributes of the step's span (a binding's own, e.g. `omium.key`), after
    /// `omium.seq` and `omium.checkpoint_id`.
    pub step_attributes: Vec<(String, crate::trace::Value)>,
    /// The binding's clock at the call (Unix ns), when its spans are timed by a clock of its
    /// own (Node's: a wall-clock anchor plus a monotonic clock, which may be a millisecond
    /// off this process's wall clock): the checkpoint's span then starts at it and both spans
    /// end the write's duration later, inside the binding's enclosing spans. None: this
    /// process's wall clock ([`now_ns`](crate::trace::now_ns)).
    pub now_ns: Option<u64>,
}

/// A run of an execution: in this process, or held by a daemon for it.
// One per run, never in a collection: its size does not matter, and boxing the local run would
// add an indirection to every step.
#[allow(clippy::large_enum_variant)]
pub enum RunHandle {
    Local(Run),
    Remote(RemoteRun),
}

impl RunHandle {
    pub fn execution_id(&self) -> &str {
        match self {
            RunHandle::Local(r) => r.execution_id(),
            RunHandle::Remote(r) => r.execution_id(),
        }
    }

    pub fn reserve(&self) -> Result<u64> {
        match self {
            RunHandle::Local(r) => Ok(r.reserve()),
            RunHandle::Remote(r) => r.reserve(),
        }
    }

    /// The journal position of a step called now (see [`Run::position`]).
    pub fn position(
        &self,
        parent: Option<&str>,
        key: Option<&str>,
    ) -> Result<(u64, Option<String>)> {
        match self {
            RunHandle::Local(r) => Ok(r.position(parent, key)),
            RunHandle::Remote(r) => r.position(parent, key),
        }
    }

    /// The recorded step at `seq` (or `key`) and its verified state.
    pub fn recorded(
        &self,
        seq: u64,
        name: &str,
        key: Option<&str>,
    ) -> Result<Option<(Checkpoint, Vec<u8>)>> {
        match self {
            RunHandle::Local(r) => match r.recorded(seq, name, key)? {
                Some(c) => {
                    let state = r.read_state(&c)?;
                    Ok(Some((c, state)))
                }
                None => Ok(None),
            },
            RunHandle::Remote(r) => r.recorded(seq, name, key),
        }
    }

    /// Records a step; returns the checkpoint id.
    pub fn record(&self, seq: u64, new: NewCheckpoint<'_>) -> Result<String> {
        match self {
            RunHandle::Local(r) => r.record(seq, new).map(|c| c.id.to_string()),
            RunHandle::Remote(r) => {
                let pair = |l: &[crate::CheckResult]| {
                    l.iter()
                        .map(|c| json!([c.expression, c.passed]))
                        .collect::<Vec<_>>()
                };
                let args = json!({
                    "name": new.name, "state": b64(new.state), "key": new.key, "agent": new.agent,
                    "kind": new.kind.as_str(), "preconditions": pair(&new.checks.preconditions),
                    "postconditions": pair(&new.checks.postconditions), "metadata": new.metadata,
                });
                r.record(seq, args)
            }
        }
    }

    /// [`RunHandle::record`], and when `span` names the running step's span, the checkpoint's
    /// own span as its child: `checkpoint NAME`, from before the write to after it, with the
    /// checkpoint id, position and state size; with `end_step`, the step's span too, ended now
    /// (`NAME`, type `step`, its position and checkpoint id). Built here, so that a binding
    /// records a traced step in one call.
    pub fn record_traced(
        &self,
        seq: u64,
        new: NewCheckpoint<'_>,
        span: Option<TracedStep>,
    ) -> Result<String> {
        let Some(step) = span else {
            return self.record(seq, new);
        };
        let began = std::time::Instant::now();
        let start_ns = step.now_ns.unwrap_or_else(crate::trace::now_ns);
        let (name, agent, bytes) = (
            new.name.to_string(),
            new.agent.unwrap_or_default().to_string(),
            new.state.len(),
        );
        let id = self.record(seq, new)?;
        let end_ns = start_ns.saturating_add(began.elapsed().as_nanos() as u64);
        let span = |span_id, parent, name, span_type: &str, start_ns, attributes| Span {
            trace_id: step.trace_id,
            span_id,
            parent,
            name,
            kind: crate::trace::SpanKind::Internal,
            span_type: span_type.into(),
            execution_id: self.execution_id().to_string(),
            agent: agent.clone(),
            start_ns,
            end_ns,
            status: crate::trace::StatusCode::Ok,
            status_message: String::new(),
            attributes,
            events: Vec::new(),
        };
        use crate::trace::Value::{Int, Str};
        let mut spans = vec![span(
            crate::trace::new_span_id(),
            Some(step.span_id),
            format!("checkpoint {name}"),
            "checkpoint",
            start_ns,
            vec![
                ("omium.checkpoint_id".into(), Str(id.clone())),
                ("omium.seq".into(), Int(seq as i64)),
                ("omium.state_bytes".into(), Int(bytes as i64)),
            ],
        )];
        if step.end_step {
            let mut attributes = vec![
                ("omium.seq".into(), Int(seq as i64)),
                ("omium.checkpoint_id".into(), Str(id.clone())),
            ];
            attributes.extend(step.step_attributes);
            spans.push(span(
                step.span_id,
                step.parent,
                name.clone(),
                "step",
                step.start_ns,
                attributes,
            ));
        }
        for s in spans {
            match self {
                RunHandle::Local(r) => r.store().record_span(s),
                RunHandle::Remote(r) => r.record_span(s),
            }
        }
        Ok(id)
    }

    pub fn complete(&self, output: Option<&[u8]>) -> Result<()> {
        match self {
            RunHandle::Local(r) => r.complete(output),
            RunHandle::Remote(r) => r.complete(output),
        }
    }

    pub fn fail(&self, error: &str) -> Result<()> {
        match self {
            RunHandle::Local(r) => r.fail(error),
            RunHandle::Remote(r) => r.fail(error),
        }
    }

    pub fn pause(&self, reason: &str) -> Result<()> {
        match self {
            RunHandle::Local(r) => r.pause(reason),
            RunHandle::Remote(r) => r.pause(reason),
        }
    }

    pub fn heartbeat(&self) -> Result<()> {
        match self {
            RunHandle::Local(r) => r.heartbeat(),
            RunHandle::Remote(r) => r.heartbeat(),
        }
    }

    /// A pause or cancel asked for while step `step` awaits: carried out now, as an error.
    pub fn check_control(&self, step: &str) -> Result<()> {
        match self {
            RunHandle::Local(r) => r.check_control(step),
            RunHandle::Remote(r) => r.check_control(step),
        }
    }

    pub fn execution(&self) -> Result<Execution> {
        match self {
            RunHandle::Local(r) => Ok(r.execution()),
            RunHandle::Remote(r) => r.execution(),
        }
    }

    /// Releases the run (a daemon that is gone has dropped it already).
    pub fn close(self) {
        if let RunHandle::Remote(r) = self {
            let _ = r.close();
        }
    }
}

/// The handling of one failure: in this process, or held by a daemon.
pub enum RecoveryHandle {
    Local(Box<Recovery>),
    Remote(RemoteRecovery),
}

impl RecoveryHandle {
    fn remote(r: &RemoteRecovery, method: &str, args: Value) -> Result<()> {
        r.call(method, args).map(drop)
    }

    /// The failure record as JSON.
    pub fn record(&mut self) -> Result<Value> {
        match self {
            RecoveryHandle::Local(r) => Ok(value(r.record())),
            RecoveryHandle::Remote(r) => r.call("record", json!({})),
        }
    }
}

impl Handling for RecoveryHandle {
    fn next_directive(&mut self) -> Result<Directive> {
        match self {
            RecoveryHandle::Local(r) => r.next_directive(),
            RecoveryHandle::Remote(r) => {
                let v = r.call("next_directive", json!({}))?;
                Directive::parse(v["name"].as_str().unwrap_or("fail"), &v["params"])
            }
        }
    }

    fn done(&mut self, ok: bool, note: Option<&str>) -> Result<()> {
        match self {
            RecoveryHandle::Local(r) => r.done(ok, note),
            RecoveryHandle::Remote(r) => Self::remote(r, "done", json!({"ok": ok, "note": note})),
        }
    }

    fn set_analysis(
        &mut self,
        root_cause: Option<String>,
        suggested_fix: Option<String>,
    ) -> Result<()> {
        match self {
            RecoveryHandle::Local(r) => r.set_analysis(root_cause, suggested_fix),
            RecoveryHandle::Remote(r) => Self::remote(
                r,
                "set_analysis",
                json!({"root_cause": root_cause, "suggested_fix": suggested_fix}),
            ),
        }
    }

    fn finish(&mut self, outcome: Outcome) -> Result<()> {
        match self {
            RecoveryHandle::Local(r) => Handling::finish(r.as_mut(), outcome),
            RecoveryHandle::Remote(r) => Self::remote(r, outcome.as_str(), json!({})),
        }
    }

    fn payload(&mut self, event: &str) -> Result<Value> {
        match self {
            RecoveryHandle::Local(r) => Ok(r.payload(event)),
            RecoveryHandle::Remote(r) => r.call("payload", json!({ "event": event })),
        }
    }

    fn webhooks(
        &mut self,
        channels: &[String],
        event: &str,
    ) -> Result<Vec<(String, Option<String>)>> {
        match self {
            RecoveryHandle::Local(r) => Handling::webhooks(r.as_mut(), channels, event),
            RecoveryHandle::Remote(r) => {
                let v = r.call(
                    "send_webhooks",
                    json!({"channels": channels, "event": event}),
                )?;
                Ok(serde_json::from_value(v).unwrap_or_default())
            }
        }
    }
}

/// Alert rules from text, their problems as an `invalid_argument` naming line and column.
fn alert_rules(text: &str, file: Option<&str>) -> Result<crate::alerts::Rules> {
    crate::alerts::parse(text, file).map_err(|p| Error::InvalidArgument {
        what: "alert rules",
        detail: p.to_string(),
    })
}
