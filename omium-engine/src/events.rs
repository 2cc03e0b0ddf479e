//! The event feed: every change of a store as a typed event, in the order it was written, for
//! other systems to follow (a dashboard, a message broker, an alerting job).
//!
//! Events are the audit log read as a feed: each audit entry is written in the same batch as
//! the change it records (`omium-storage`'s group commit), so an event exists exactly when its
//! change does, and its `seq` — the audit entry's position — is a global, gap-free sequence
//! number that a consumer stores as its cursor. Nothing is written twice and nothing is lost
//! across restarts: a consumer that stored cursor N reads from N + 1.
//!
//! Each event has a type (`execution.started`, `checkpoint.created`, `failure.detected`, ...,
//! the table in `docs/operations.md`) and is shown in the CloudEvents 1.0 JSON format
//! ([`Event::cloud_event`]).

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::audit::AuditEntry;
use crate::error::{Error, Result};
use crate::Store;

/// The CloudEvents `type` prefix of every event (`io.omium.execution.started`).
pub const TYPE_PREFIX: &str = "io.omium.";

/// The event types, with the audit action each comes from. An action missing here (a newer
/// store's) becomes `audit.<action>`, so that nothing written is hidden from the feed.
pub const TYPES: &[(&str, &str, &str)] = &[
    (
        "execution.create",
        "execution.started",
        "An execution began its first run.",
    ),
    (
        "execution.resume",
        "execution.resumed",
        "A run began on an existing execution (a resume after a crash, a pause or a rollback).",
    ),
    (
        "execution.complete",
        "execution.completed",
        "The execution completed with its output.",
    ),
    (
        "execution.fail",
        "execution.failed",
        "The execution failed.",
    ),
    (
        "execution.pause",
        "execution.paused",
        "The execution paused (a recovery policy's pause).",
    ),
    (
        "execution.suspend",
        "execution.suspended",
        "A run stopped without finishing the execution; it is resumable.",
    ),
    (
        "execution.cancel",
        "execution.cancelled",
        "An operator cancelled the execution; it stopped at a step boundary or at once.",
    ),
    (
        "execution.release",
        "execution.released",
        "An operator resumed a paused execution: it is resumable.",
    ),
    (
        "execution.retry",
        "execution.retried",
        "An operator retried a failed or cancelled execution: it is resumable.",
    ),
    (
        "consensus.agree",
        "consensus.reached",
        "Consensus messages of the execution were agreed by their quorum (`data.messages`: each message, its acknowledgements and agreed value; one event per execution for the messages one state-machine write decided).",
    ),
    (
        "consensus.violate",
        "consensus.violated",
        "Consensus messages of the execution failed: a timeout or a split vote (`data.messages`: each message, reason and detail).",
    ),
    (
        "lease.takeover",
        "lease.taken_over",
        "A run took over an execution that a run now gone left running (its process died or its lease expired); `data` names the previous holder.",
    ),
    (
        "execution.recover",
        "execution.recovered",
        "An operator made the execution resumable again, whatever stopped it (a run that died, a failure, a cancel, a pause).",
    ),
    (
        "control.pause",
        "control.pause_requested",
        "An operator asked a running execution to pause at its next step boundary.",
    ),
    (
        "control.cancel",
        "control.cancel_requested",
        "An operator asked a running execution to stop at its next step boundary.",
    ),
    (
        "execution.delete",
        "execution.deleted",
        "The execution and its checkpoints were deleted; `data` says who asked and what was erased.",
    ),
    (
        "execution.pull",
        "execution.pulled",
        "The execution was pulled from a cluster into this store.",
    ),
    (
        "checkpoint.create",
        "checkpoint.created",
        "A step recorded its checkpoint.",
    ),
    (
        "rollback",
        "execution.rolled_back",
        "The execution was rolled back to a checkpoint.",
    ),
    (
        "fork",
        "execution.forked",
        "A new execution was forked from a checkpoint of another.",
    ),
    (
        "failure.record",
        "failure.detected",
        "A step failed; the failure is recorded with its type.",
    ),
    (
        "failure.update",
        "recovery.action_taken",
        "The recovery of a failure took an action or reached an outcome.",
    ),
    (
        "failure.resume",
        "recovery.resumed",
        "A person resumed a paused failure.",
    ),
    (
        "failure.escalate",
        "recovery.escalated",
        "An operator escalated a failure: it is settled as escalated and the channels of its policy were told.",
    ),
    (
        "policy.apply",
        "policy.applied",
        "A recovery policy version was applied.",
    ),
    ("gc", "store.gc", "Unreferenced chunks were collected."),
    (
        "alert.fire",
        "alert.firing",
        "An alert rule's condition held for its `for` duration: the alert fired (`data`: the value and where the notice went).",
    ),
    (
        "alert.repeat",
        "alert.repeated",
        "A firing, unacknowledged alert was notified again (`repeat`).",
    ),
    (
        "alert.resolve",
        "alert.resolved",
        "A firing alert's condition no longer holds: it resolved.",
    ),
    (
        "alert.ack",
        "alert.acknowledged",
        "An operator acknowledged a firing alert: no more repeats.",
    ),
    (
        "thread.checkpoint",
        "thread.checkpoint_created",
        "A framework (LangGraph, CrewAI) checkpoint was stored.",
    ),
    (
        "thread.writes",
        "thread.writes_stored",
        "A framework checkpoint's pending writes were stored.",
    ),
    (
        "thread.delete",
        "thread.deleted",
        "A framework thread was deleted.",
    ),
    (
        "thread.delete_runs",
        "thread.runs_deleted",
        "The framework checkpoints of some runs were deleted.",
    ),
    (
        "thread.copy",
        "thread.copied",
        "A framework thread was copied.",
    ),
    (
        "thread.prune",
        "thread.pruned",
        "Old framework checkpoints were pruned.",
    ),
];

/// The event type of an audit action.
pub fn event_type(action: &str) -> String {
    TYPES
        .iter()
        .find(|(a, _, _)| *a == action)
        .map(|(_, t, _)| (*t).to_string())
        .unwrap_or_else(|| format!("audit.{action}"))
}

/// One change of the store.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// The position in the store's feed: from 1, without gaps, in the order of writing.
    pub seq: u64,
    /// `execution.started`, `checkpoint.created`, ... ([`TYPES`]).
    #[serde(rename = "type")]
    pub kind: String,
    pub time_ms: u64,
    /// Who made the change (the store handle's actor).
    pub actor: String,
    /// The execution (or framework thread) it concerns, when it concerns one.
    pub subject: Option<String>,
    /// `execution/<id>`, `checkpoint/<id>`, `failure/<id>`, `thread/<id>`, `store`, ...
    pub resource: String,
    /// What the change was: the audit entry's detail (an object).
    pub data: Value,
}

impl Event {
    /// The event an audit entry records.
    pub fn of(entry: &AuditEntry) -> Event {
        let data = match serde_json::from_str::<Value>(&entry.detail) {
            Ok(v @ Value::Object(_)) => v,
            Ok(other) => json!({ "detail": other }),
            Err(_) => json!({ "detail": entry.detail }),
        };
        let field = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
        let subject = match entry.resource.split_once('/') {
            Some(("execution" | "thread", id)) => Some(id.to_string()),
            Some(("checkpoint" | "failure", _)) => field("execution"),
            _ => None,
        };
        Event {
            seq: entry.seq,
            kind: event_type(&entry.action),
            time_ms: entry.at_ms,
            actor: entry.actor.clone(),
            subject,
            resource: entry.resource.clone(),
            data,
        }
    }

    /// The event in the CloudEvents 1.0 JSON format: `id` is the seq (unique within
    /// `source`), `type` is `io.omium.<type>`, and the extension attributes `omiumseq` and
    /// `omiumactor` carry the seq as a number and the actor.
    pub fn cloud_event(&self, source: &str) -> Value {
        let mut m = Map::new();
        m.insert("specversion".into(), json!("1.0"));
        m.insert("id".into(), json!(self.seq.to_string()));
        m.insert("source".into(), json!(source));
        m.insert("type".into(), json!(format!("{TYPE_PREFIX}{}", self.kind)));
        if let Some(s) = &self.subject {
            m.insert("subject".into(), json!(s));
        }
        m.insert("time".into(), json!(crate::rfc3339_ms(self.time_ms as i64)));
        m.insert("datacontenttype".into(), json!("application/json"));
        m.insert("omiumseq".into(), json!(self.seq));
        m.insert("omiumactor".into(), json!(self.actor));
        m.insert("omiumresource".into(), json!(self.resource));
        m.insert("data".into(), self.data.clone());
        Value::Object(m)
    }
}

/// The CloudEvents `source` of a store's events: `urn:omium:store:<store id>`.
pub fn source(store: &Store) -> String {
    match store.store_id() {
        Ok(id) => format!("urn:omium:store:{id}"),
        // A read-only handle of a store never named: its path is all there is.
        Err(_) => format!("urn:omium:store:path:{}", store.path().display()),
    }
}

/// Which events a reader wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Types to keep: `execution.failed` exactly, or `execution.` / `execution.*` for a family;
    /// empty keeps every type.
    pub types: Vec<String>,
    /// Only the events of this execution.
    pub execution: Option<String>,
}

impl EventFilter {
    /// Checks the type patterns: each is a known type, a known family (`execution.`,
    /// `execution.*`), or `audit.<action>`.
    pub fn new(types: Vec<String>, execution: Option<String>) -> Result<EventFilter> {
        for t in &types {
            let family = t.strip_suffix('*').unwrap_or(t);
            let known = t.starts_with("audit.")
                || TYPES.iter().any(|(_, k, _)| {
                    if family.ends_with('.') {
                        k.starts_with(family)
                    } else {
                        *k == t.as_str()
                    }
                });
            if !known {
                let mut names: Vec<&str> = TYPES.iter().map(|(_, k, _)| *k).collect();
                names.sort_unstable();
                return Err(Error::InvalidArgument {
                    what: "event type",
                    detail: format!(
                        "{t:?} is no event type; expected one of {}, a family such as \
                         \"execution.*\", or \"audit.<action>\"",
                        names.join(", ")
                    ),
                });
            }
        }
        Ok(EventFilter { types, execution })
    }

    pub fn matches(&self, e: &Event) -> bool {
        let type_ok = self.types.is_empty()
            || self.types.iter().any(|t| {
                let family = t.strip_suffix('*').unwrap_or(t);
                if family.ends_with('.') {
                    e.kind.starts_with(family)
                } else {
                    e.kind == *t
                }
            });
        type_ok
            && self
                .execution
                .as_ref()
                .is_none_or(|x| e.subject.as_deref() == Some(x.as_str()))
    }
}

/// Events read from a cursor, and the cursor to read from next.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// The seq of the last entry read (events filtered out advance it too): pass it as the
    /// next `since`.
    pub cursor: u64,
}

/// Entries read per scan of the log.
const SCAN: usize = 1024;

/// Reading a store's event feed (`use omium_core::prelude::*`).
pub trait EventStore: AsRef<Store> {
    /// The events after `since` that pass `filter`, at most `limit`, oldest first.
    fn events(&self, since: u64, limit: usize, filter: &EventFilter) -> Result<EventPage> {
        let store: &Store = self.as_ref();
        let mut page = EventPage {
            events: Vec::new(),
            cursor: since,
        };
        while page.events.len() < limit {
            let entries = store.audit_entries(page.cursor + 1, SCAN)?;
            let Some(last) = entries.last() else { break };
            let last = last.seq;
            for entry in &entries {
                let e = Event::of(entry);
                page.cursor = e.seq;
                if filter.matches(&e) {
                    page.events.push(e);
                    if page.events.len() >= limit {
                        return Ok(page);
                    }
                }
            }
            page.cursor = last;
            if entries.len() < SCAN {
                break;
            }
        }
        Ok(page)
    }

    /// [`EventStore::events`], waiting up to `timeout` for the first matching event when there
    /// is none yet (a follower's long poll). An empty page means that none came in time; its
    /// cursor has still advanced past what was filtered out.
    fn follow_events(
        &self,
        since: u64,
        limit: usize,
        filter: &EventFilter,
        timeout: Duration,
    ) -> Result<EventPage> {
        let store: &Store = self.as_ref();
        let deadline = std::time::Instant::now() + timeout;
        let mut page = store.events(since, limit, filter)?;
        while page.events.is_empty() {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            let head =
                store.wait_for_audit(page.cursor, deadline - now, Duration::from_millis(100))?;
            if head <= page.cursor {
                break;
            }
            page = store.events(page.cursor, limit, filter)?;
        }
        Ok(page)
    }
}

impl EventStore for Store {}

/// The event feed as JSON: `{"events": [CloudEvent...], "cursor"}`.
pub fn page_json(store: &Store, page: &EventPage) -> Value {
    let source = source(store);
    let mut seen = std::collections::HashMap::new();
    json!({
        "events": page.events.iter().map(|e| {
            let mut ce = e.cloud_event(&source);
            annotate(store, &mut ce, &mut seen);
            ce
        }).collect::<Vec<_>>(),
        "cursor": page.cursor,
    })
}

/// Adds the workflow and tenant of the execution a CloudEvent names as the extensions
/// `omiumworkflow` and `omiumtenant`, so that a consumer (the dashboard's feed) filters without
/// looking each execution up; `seen` remembers them across the events of one answer. An event
/// of an execution deleted since has neither.
pub fn annotate(
    store: &Store,
    ce: &mut Value,
    seen: &mut std::collections::HashMap<String, Option<(String, String)>>,
) {
    let Some(id) = ce
        .get("subject")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return;
    };
    let of = seen
        .entry(id)
        .or_insert_with_key(|id| store.execution(id).ok().map(|e| (e.workflow, e.tenant)));
    if let (Some((workflow, tenant)), Value::Object(m)) = (of.clone(), ce) {
        m.insert("omiumworkflow".into(), json!(workflow));
        m.insert("omiumtenant".into(), json!(tenant));
    }
}
