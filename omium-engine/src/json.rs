//! JSON documents of executions, checkpoints and verify reports, for the bindings that hand
//! records over as JSON (C) or as plain objects (Node). Field names are the Rust API's; times
//! are Unix milliseconds (`*_ms`), checksums lower-case hex; state bytes are never included.

use serde_json::{json, Value};

use crate::prelude::*;
use crate::{CheckResult, Checkpoint, Execution, StateRef, VerifyReport};

fn checks(list: &[CheckResult]) -> Value {
    list.iter()
        .map(|r| json!({"expression": r.expression, "passed": r.passed}))
        .collect()
}

/// A checkpoint's metadata (its state is read separately).
pub fn checkpoint(c: &Checkpoint) -> Value {
    let (storage, chunks) = match &c.state {
        StateRef::Inline(_) => ("inline", 0),
        StateRef::Chunked(m) => ("chunked", m.chunks.len()),
    };
    json!({
        "id": c.id.to_string(),
        "execution_id": c.execution_id,
        "agent": c.agent,
        "name": c.name,
        "kind": c.kind.as_str(),
        "parent": c.parent.map(|p| p.to_string()),
        "seq": c.seq,
        "global_seq": c.global_seq,
        "key": c.key,
        "checksum": crate::hex(&c.checksum),
        "raw_size": c.raw_size,
        "stored_size": c.stored_size,
        "storage": storage,
        "chunks": chunks,
        "checks_passed": c.checks.passed(),
        "checks": {
            "preconditions": checks(&c.checks.preconditions),
            "postconditions": checks(&c.checks.postconditions),
        },
        "metadata": c.metadata,
        "created_at_ms": c.created_at_ms,
    })
}

/// A list of [`checkpoint`] documents.
pub fn checkpoints(list: &[Checkpoint]) -> Value {
    list.iter().map(checkpoint).collect()
}

/// An execution: status, head, lease, labels, counts and times.
pub fn execution(e: &Execution) -> Value {
    json!({
        "id": e.id,
        "workflow": e.workflow,
        "tenant": e.tenant,
        "status": e.status.as_str(),
        "head": e.head.map(|h| h.to_string()),
        "error": e.error,
        "attempts": e.attempts,
        "lease_owner": e.lease.as_ref().map(|l| l.owner.as_str()),
        "lease_expires_at_ms": e.lease.as_ref().map(|l| l.expires_at_ms),
        "lease": e.lease.as_ref().map(|l| json!({
            "owner": l.owner, "host": l.host, "pid": l.pid, "token": l.token,
            "expires_at_ms": l.expires_at_ms,
        })),
        "labels": e.labels,
        "checkpoint_count": e.checkpoint_count,
        "has_input": e.has_input,
        "has_output": e.has_output,
        "created_at_ms": e.created_at_ms,
        "updated_at_ms": e.updated_at_ms,
    })
}

/// A list of [`execution`] documents.
pub fn executions(list: &[Execution]) -> Value {
    list.iter().map(execution).collect()
}

/// `{"ok", "executions", "checkpoints", "problems": [{"execution", "checkpoint", "error"}],
/// "audit": {"entries", "problems"}}`, as `omium verify --json` prints it.
pub fn verify_report(r: &VerifyReport) -> Value {
    json!({
        "ok": r.ok(),
        "executions": r.executions,
        "checkpoints": r.checkpoints,
        "problems": r.problems,
        "audit": r.audit,
    })
}

/// A span, as `omium.spans()` and `omium serve` show it (ids in hex).
pub fn span(s: &crate::trace::Span) -> Value {
    use crate::trace::StatusCode;
    let attrs = |a: &[(String, crate::trace::Value)]| {
        a.iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect::<serde_json::Map<_, _>>()
    };
    json!({
        "trace_id": crate::hex(&s.trace_id),
        "span_id": crate::hex(&s.span_id),
        "parent": s.parent.map(|p| crate::hex(&p)),
        "name": s.name, "kind": s.kind.as_str(), "span_type": s.span_type,
        "execution_id": s.execution_id, "agent": s.agent,
        "start_ns": s.start_ns, "end_ns": s.end_ns,
        "status": match s.status { StatusCode::Ok => "ok", StatusCode::Error => "error", StatusCode::Unset => "unset" },
        "status_message": s.status_message,
        "attributes": attrs(&s.attributes),
        "events": s.events.iter().map(|e| json!({
            "name": e.name, "time_ns": e.time_ns, "attributes": attrs(&e.attributes),
        })).collect::<Vec<_>>(),
    })
}

/// The spans of an execution after flushing what is queued.
pub fn spans(store: &crate::Store, execution_id: &str) -> crate::Result<Value> {
    store.flush_spans()?;
    Ok(Value::Array(
        store.spans(execution_id)?.iter().map(span).collect(),
    ))
}

/// Who handed work to whom in an execution's trace (`trace::view::agent_graph`): the agents in
/// the order they first started, and each hand-off with how often it happened.
pub fn agent_graph(store: &crate::Store, execution_id: &str) -> crate::Result<Value> {
    store.flush_spans()?;
    let (agents, edges) = crate::trace::view::agent_graph(&store.spans(execution_id)?);
    let edges: Vec<Value> = edges
        .into_iter()
        .map(|((from, to), count)| json!({"from": from, "to": to, "count": count}))
        .collect();
    Ok(json!({"agents": agents, "edges": edges}))
}

/// The policy defaults in force for a step, with the layers they come from.
pub fn policy_defaults(e: &crate::policy::Effective) -> Value {
    let layers: Vec<String> = e
        .layers
        .iter()
        .map(|(s, v, _)| format!("{s} v{v}"))
        .collect();
    let defaults = e.defaults();
    let mut d = json!(defaults);
    // The step timeout in milliseconds too, so no binding parses durations.
    d["step_timeout_ms"] = json!(defaults.step_timeout.map(|t| t.0.as_millis() as u64));
    json!({"defaults": d, "layers": layers})
}

/// Step diffs of two executions (`Store::diff_executions`), each with `differs`.
pub fn step_diffs(rows: &[crate::trace::view::StepDiff]) -> Value {
    rows.iter()
        .map(|r| {
            let mut j = serde_json::to_value(r).expect("records serialize");
            j["differs"] = r.differs().into();
            j
        })
        .collect()
}
