//! Errors and records: core values to the plain objects JS sees.

use napi::bindgen_prelude::*;
use omium_core::{Checkpoint, Execution, VerifyReport};
use serde_json::{json, Value};

/// Marks the JSON details a policy error carries after its message.
pub const DETAILS: &str = "\n--omium-details--\n";

/// A JS error for a core error: `[code] message` (policy problems add their details as JSON).
pub fn err(e: omium_core::Error) -> Error {
    let mut message = format!("[{}] {e}", e.code());
    if let omium_core::Error::Policy(p) = &e {
        let details = json!({
            "file": p.file, "line": p.at.line, "column": p.at.column, "path": p.path,
            "problem": p.message, "value": p.value, "expected": p.expected,
            "suggestion": p.suggestion,
        });
        message.push_str(DETAILS);
        message.push_str(&details.to_string());
    }
    Error::new(Status::GenericFailure, message)
}

/// A JS error with a code of our own (bad arguments found by this layer).
pub fn coded(code: &str, message: impl std::fmt::Display) -> Error {
    Error::new(Status::GenericFailure, format!("[{code}] {message}"))
}

/// Runs a store call on a worker thread of the blocking pool (never on the JS thread).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> omium_core::Result<T> + Send + 'static,
) -> Result<T> {
    spawn_blocking(f)
        .await
        .map_err(|e| coded("internal", format!("a worker thread failed: {e}")))?
        .map_err(err)
}

pub fn checkpoint(c: &Checkpoint) -> Value {
    let checks = |list: &[omium_core::CheckResult]| -> Vec<Value> {
        list.iter()
            .map(|r| json!([r.expression, r.passed]))
            .collect()
    };
    json!({
        "id": c.id.to_string(),
        "executionId": c.execution_id,
        "agent": c.agent,
        "name": c.name,
        "kind": c.kind.as_str(),
        "parent": c.parent.map(|p| p.to_string()),
        "seq": c.seq,
        "globalSeq": c.global_seq,
        "key": c.key,
        "checksum": omium_core::hex(&c.checksum),
        "rawSize": c.raw_size,
        "storedSize": c.stored_size,
        "checksPassed": c.checks.passed(),
        "preconditions": checks(&c.checks.preconditions),
        "postconditions": checks(&c.checks.postconditions),
        "metadata": c.metadata,
        "createdAtMs": c.created_at_ms,
    })
}

pub fn checkpoints(list: &[Checkpoint]) -> Value {
    Value::Array(list.iter().map(checkpoint).collect())
}

pub fn execution(e: &Execution) -> Value {
    json!({
        "id": e.id,
        "workflow": e.workflow,
        "tenant": e.tenant,
        "status": e.status.as_str(),
        "head": e.head.map(|h| h.to_string()),
        "error": e.error,
        "attempts": e.attempts,
        "leaseOwner": e.lease.as_ref().map(|l| l.owner.clone()),
        "leaseExpiresAtMs": e.lease.as_ref().map(|l| l.expires_at_ms),
        "labels": e.labels,
        "checkpointCount": e.checkpoint_count,
        "createdAtMs": e.created_at_ms,
        "updatedAtMs": e.updated_at_ms,
    })
}

pub fn executions(list: &[Execution]) -> Value {
    Value::Array(list.iter().map(execution).collect())
}

pub fn verify_report(r: &VerifyReport) -> Value {
    let problems: Vec<String> = r
        .problems
        .iter()
        .map(|p| {
            format!(
                "execution {:?} checkpoint {}: {}",
                p.execution,
                p.checkpoint.as_deref().unwrap_or("-"),
                p.error
            )
        })
        .chain(r.audit.problems.iter().cloned())
        .collect();
    json!({
        "ok": r.ok(),
        "executions": r.executions,
        "checkpoints": r.checkpoints,
        "auditEntries": r.audit.entries,
        "problems": problems,
    })
}

/// Any serializable core record, as is (snake_case keys, as the CLI's `--json` prints them).
pub fn record<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("core records serialize")
}
