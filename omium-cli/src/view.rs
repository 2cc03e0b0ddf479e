//! Rendering: aligned tables for people, JSON for scripts. The JSON views name fields as the
//! Rust API does and never dump state bytes (use `checkpoint --state` for those).

use std::io::Write;

use omium_core::{
    AuditEntry, AuditHead, Checkpoint, Execution, StateRef, StoreStats, VerifyReport,
};
use serde::Serialize;

pub fn json(out: &mut impl Write, v: &impl Serialize) {
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(v).expect("views serialize")
    );
}

pub fn table(out: &mut impl Write, header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(
        out,
        "{}",
        line(header.iter().map(|h| h.to_string()).collect())
    );
    for r in rows {
        let _ = writeln!(out, "{}", line(r));
    }
}

/// `2026-11-27T04:44:18.123Z` from Unix milliseconds.
pub fn time(ms: u64) -> String {
    omium_core::rfc3339_ms(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// An execution as `--json` prints it: the record view every binding and the HTTP API give
/// (`omium_core::json::execution`), plus the times as RFC 3339 text for people
/// (`created_at`, `updated_at`, `lease_expires_at`) and `checkpoints` (the count).
pub fn execution_json(e: &Execution) -> serde_json::Value {
    let mut v = omium_core::json::execution(e);
    v["created_at"] = time(e.created_at_ms).into();
    v["updated_at"] = time(e.updated_at_ms).into();
    v["lease_expires_at"] = e.lease.as_ref().map(|l| time(l.expires_at_ms)).into();
    v["checkpoints"] = e.checkpoint_count.into();
    v
}

/// A checkpoint as `--json` prints it: the record view (`omium_core::json::checkpoint`), plus
/// `created_at` as RFC 3339 text and `chunker` (null for a state stored inline).
pub fn checkpoint_json(c: &Checkpoint) -> serde_json::Value {
    let mut v = omium_core::json::checkpoint(c);
    v["created_at"] = time(c.created_at_ms).into();
    v["chunker"] = match &c.state {
        StateRef::Chunked(m) => m.params.chunker.clone().into(),
        StateRef::Inline(_) => serde_json::Value::Null,
    };
    v
}

/// An execution's fields for the human output.
pub struct ExecutionView<'a> {
    id: &'a str,
    workflow: &'a str,
    tenant: &'a str,
    status: &'static str,
    head: Option<String>,
    error: Option<&'a str>,
    attempts: u32,
    lease_owner: Option<&'a str>,
    lease_expires_at: Option<String>,
    labels: &'a std::collections::BTreeMap<String, String>,
    created_at: String,
    updated_at: String,
}

impl<'a> From<&'a Execution> for ExecutionView<'a> {
    fn from(e: &'a Execution) -> Self {
        ExecutionView {
            id: &e.id,
            workflow: &e.workflow,
            tenant: &e.tenant,
            status: e.status.as_str(),
            head: e.head.map(|h| h.to_string()),
            error: e.error.as_deref(),
            attempts: e.attempts,
            lease_owner: e.lease.as_ref().map(|l| l.owner.as_str()),
            lease_expires_at: e.lease.as_ref().map(|l| time(l.expires_at_ms)),
            labels: &e.labels,
            created_at: time(e.created_at_ms),
            updated_at: time(e.updated_at_ms),
        }
    }
}

/// A checkpoint's fields for the human output.
pub struct CheckpointView<'a> {
    id: String,
    execution_id: &'a str,
    agent: &'a str,
    name: &'a str,
    kind: &'static str,
    parent: Option<String>,
    seq: u64,
    global_seq: u64,
    key: Option<&'a str>,
    checksum: String,
    raw_size: u64,
    stored_size: u64,
    storage: String,
    checks_passed: bool,
    created_at: String,
}

impl<'a> From<&'a Checkpoint> for CheckpointView<'a> {
    fn from(c: &'a Checkpoint) -> Self {
        CheckpointView {
            id: c.id.to_string(),
            execution_id: &c.execution_id,
            agent: &c.agent,
            name: &c.name,
            kind: c.kind.as_str(),
            parent: c.parent.map(|p| p.to_string()),
            seq: c.seq,
            global_seq: c.global_seq,
            key: c.key.as_deref(),
            checksum: omium_core::hex(&c.checksum),
            raw_size: c.raw_size,
            stored_size: c.stored_size,
            storage: match &c.state {
                StateRef::Inline(_) => "inline".into(),
                StateRef::Chunked(m) => format!("{} chunks ({})", m.chunks.len(), m.params.chunker),
            },
            checks_passed: c.checks.passed(),
            created_at: time(c.created_at_ms),
        }
    }
}

pub fn executions(out: &mut impl Write, as_json: bool, list: &[Execution]) {
    if as_json {
        return json(out, &list.iter().map(execution_json).collect::<Vec<_>>());
    }
    let rows = list
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                e.workflow.clone(),
                e.status.to_string(),
                e.checkpoint_count.to_string(),
                e.attempts.to_string(),
                time(e.updated_at_ms),
            ]
        })
        .collect();
    table(
        out,
        &[
            "EXECUTION",
            "WORKFLOW",
            "STATUS",
            "CHECKPOINTS",
            "ATTEMPTS",
            "UPDATED",
        ],
        rows,
    );
}

/// Characters of the head's state `omium show` prints in its table form.
const STATE_PREVIEW: usize = 200;

/// `omium show`: the execution, its head's state decoded (or why it cannot be), its history.
pub fn execution(
    out: &mut impl Write,
    as_json: bool,
    e: &Execution,
    history: &[Checkpoint],
    head_state: Option<Result<serde_json::Value, String>>,
) {
    if as_json {
        let mut show = execution_json(e);
        match head_state {
            Some(Ok(v)) => show["head_state"] = v,
            Some(Err(e)) => show["head_state_error"] = e.into(),
            None => {}
        }
        show["history"] = history.iter().map(checkpoint_json).collect();
        return json(out, &show);
    }
    let v = ExecutionView::from(e);
    let mut field = |k: &str, val: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{k:<11} {val}");
    };
    field("execution", &v.id);
    field("workflow", &v.workflow);
    field("tenant", &v.tenant);
    field("status", &v.status);
    if let Some(err) = v.error {
        field("error", &err);
    }
    field("head", &v.head.as_deref().unwrap_or("-"));
    match head_state {
        Some(Ok(state)) => {
            let text = state.to_string();
            let shown = match text.char_indices().nth(STATE_PREVIEW) {
                Some((i, _)) => format!("{}… (omium checkpoint HEAD --value)", &text[..i]),
                None => text,
            };
            field("state", &shown);
        }
        Some(Err(e)) => field("state", &format!("({e})")),
        None => {}
    }
    field("attempts", &v.attempts);
    if let (Some(o), Some(x)) = (v.lease_owner, &v.lease_expires_at) {
        field("lease", &format!("{o} until {x}"));
    }
    for (k, val) in v.labels {
        field("label", &format!("{k}={val}"));
    }
    field("created", &v.created_at);
    field("updated", &v.updated_at);
    field(
        "checkpoints",
        &format!(
            "{} ({} on the live branch)",
            e.checkpoint_count,
            history.len()
        ),
    );
    let _ = writeln!(out);
    checkpoints(out, false, history);
}

pub fn checkpoints(out: &mut impl Write, as_json: bool, list: &[Checkpoint]) {
    if as_json {
        return json(out, &list.iter().map(checkpoint_json).collect::<Vec<_>>());
    }
    let rows = list
        .iter()
        .map(|c| {
            vec![
                c.seq.to_string(),
                c.id.to_string(),
                c.name.clone(),
                c.kind.as_str().to_string(),
                c.agent.clone(),
                c.raw_size.to_string(),
                c.stored_size.to_string(),
                if c.checks.passed() { "ok" } else { "FAILED" }.to_string(),
                time(c.created_at_ms),
            ]
        })
        .collect();
    table(
        out,
        &[
            "SEQ",
            "CHECKPOINT",
            "NAME",
            "KIND",
            "AGENT",
            "RAW",
            "STORED",
            "CHECKS",
            "CREATED",
        ],
        rows,
    );
}

pub fn checkpoint(out: &mut impl Write, as_json: bool, c: &Checkpoint) {
    if as_json {
        return json(out, &checkpoint_json(c));
    }
    let v = CheckpointView::from(c);
    let rows: Vec<(&str, String)> = vec![
        ("checkpoint", v.id.clone()),
        ("execution", v.execution_id.into()),
        ("name", v.name.into()),
        ("kind", v.kind.into()),
        ("agent", v.agent.into()),
        ("parent", v.parent.clone().unwrap_or_else(|| "-".into())),
        ("seq", v.seq.to_string()),
        ("global seq", v.global_seq.to_string()),
        ("key", v.key.unwrap_or("-").into()),
        ("checksum", format!("blake3:{}", v.checksum)),
        (
            "size",
            format!("{} raw, {} stored", v.raw_size, v.stored_size),
        ),
        ("storage", v.storage.clone()),
        (
            "checks",
            if v.checks_passed {
                "passed".into()
            } else {
                "FAILED".into()
            },
        ),
        ("created", v.created_at.clone()),
    ];
    for (k, val) in rows {
        let _ = writeln!(out, "{k:<11} {val}");
    }
    for r in c
        .checks
        .preconditions
        .iter()
        .map(|r| ("pre", r))
        .chain(c.checks.postconditions.iter().map(|r| ("post", r)))
    {
        let _ = writeln!(
            out,
            "{:<11} {} {}",
            r.0,
            if r.1.passed { "ok    " } else { "FAILED" },
            r.1.expression
        );
    }
    for (k, val) in &c.metadata {
        let _ = writeln!(out, "{:<11} {k}={val}", "metadata");
    }
}

pub fn verify(out: &mut impl Write, as_json: bool, r: &VerifyReport) {
    if as_json {
        #[derive(Serialize)]
        struct V<'a> {
            ok: bool,
            #[serde(flatten)]
            report: &'a VerifyReport,
        }
        return json(
            out,
            &V {
                ok: r.ok(),
                report: r,
            },
        );
    }
    for p in &r.problems {
        let _ = writeln!(
            out,
            "CORRUPT  execution {:?} checkpoint {}: {}",
            p.execution,
            p.checkpoint.as_deref().unwrap_or("-"),
            p.error
        );
    }
    for p in &r.audit.problems {
        let _ = writeln!(out, "CORRUPT  {p}");
    }
    let verdict = if r.ok() { "ok" } else { "FAILED" };
    let _ = writeln!(
        out,
        "{verdict}: {} executions, {} checkpoints, {} audit entries verified; {} problems",
        r.executions,
        r.checkpoints,
        r.audit.entries,
        r.problems.len() + r.audit.problems.len()
    );
}

pub fn stats(out: &mut impl Write, as_json: bool, s: &StoreStats) {
    if as_json {
        return json(out, s);
    }
    let stored = s.inline_bytes + s.chunk_bytes;
    let ratio = if stored > 0 {
        s.raw_state_bytes as f64 / stored as f64
    } else {
        0.0
    };
    let _ = writeln!(out, "executions      {}", s.executions);
    let _ = writeln!(out, "checkpoints     {}", s.checkpoints);
    let _ = writeln!(out, "raw state       {} bytes", s.raw_state_bytes);
    let _ = writeln!(
        out,
        "stored state    {stored} bytes ({} inline, {} in {} chunks); {ratio:.1}x smaller",
        s.inline_bytes, s.chunk_bytes, s.chunks
    );
    let _ = writeln!(out, "on disk         {} bytes", s.disk_bytes);
}

/// `SEQ:HASH`, or JSON `{"seq", "hash"}` (`null` for an empty log).
pub fn audit_head(out: &mut impl Write, as_json: bool, head: Option<&AuditHead>) {
    if as_json {
        return json(out, &head);
    }
    match head {
        Some(h) => {
            let _ = writeln!(out, "{h}");
        }
        None => eprintln!("(the audit log is empty)"),
    }
}

pub fn audit(out: &mut impl Write, as_json: bool, entries: &[AuditEntry]) {
    if as_json {
        return json(out, &entries);
    }
    let rows = entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                time(e.at_ms),
                e.actor.clone(),
                e.action.clone(),
                e.resource.clone(),
                e.detail.clone(),
            ]
        })
        .collect();
    table(
        out,
        &["SEQ", "AT", "ACTOR", "ACTION", "RESOURCE", "DETAIL"],
        rows,
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_times() {
        assert_eq!(super::time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::time(1_795_754_658_123), "2026-11-27T04:44:18.123Z");
    }
}
