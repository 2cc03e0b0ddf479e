//! `omium trace`, `omium diff`, `omium replay`: reading traces and recorded calls.

use std::io::Write;
use std::path::Path;

use omium_core::trace::view;
use omium_core::{Error, Store};

use crate::view::{json, table};
use omium_core::prelude::*;

/// `omium trace <exec> [--html FILE]`: a waterfall in the terminal, or one HTML file.
pub fn trace(
    out: &mut impl Write,
    as_json: bool,
    store: &Store,
    execution: &str,
    html: Option<&Path>,
    width: usize,
) -> Result<(), Error> {
    store.execution(execution)?;
    let spans = store.spans(execution)?;
    if let Some(path) = html {
        std::fs::write(path, view::html(execution, &spans)).map_err(|e| {
            Error::InvalidArgument {
                what: "--html",
                detail: format!("cannot write {}: {e}", path.display()),
            }
        })?;
        if as_json {
            json(
                out,
                &serde_json::json!({"execution": execution, "spans": spans.len(), "html": path.display().to_string()}),
            );
        } else {
            let _ = writeln!(out, "wrote {} ({} spans)", path.display(), spans.len());
        }
        return Ok(());
    }
    if as_json {
        let v: Vec<_> = view::tree(&spans)
            .into_iter()
            .map(|(depth, s)| {
                serde_json::json!({
                    "depth": depth, "name": s.name, "span_type": s.span_type, "kind": s.kind.as_str(),
                    "span_id": omium_core::hex(&s.span_id), "parent": s.parent.map(|p| omium_core::hex(&p)),
                    "trace_id": omium_core::hex(&s.trace_id), "agent": s.agent,
                    "start_ns": s.start_ns, "end_ns": s.end_ns, "duration_ns": s.duration_ns(),
                    "status": format!("{:?}", s.status).to_lowercase(), "status_message": s.status_message,
                    "attributes": s.attributes.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        json(out, &v);
    } else if spans.is_empty() {
        let _ = writeln!(out, "execution {execution} has no spans (tracing was off, or the spans were deleted by retention)");
    } else {
        let _ = write!(out, "{}", view::waterfall(&spans, width));
    }
    Ok(())
}

/// `omium diff <a> <b>`: step by step.
pub fn diff(
    out: &mut impl Write,
    as_json: bool,
    store: &Store,
    a: &str,
    b: &str,
) -> Result<(), Error> {
    let rows = store.diff_executions(a, b)?;
    if as_json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({"differs": r.differs(), "step": r}))
            .collect();
        json(out, &v);
        return Ok(());
    }
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let dur = |n: Option<u64>| n.map(|n| format!("{:.1}ms", n as f64 / 1e6));
    let tbl = rows
        .iter()
        .map(|r| {
            let mut what = Vec::new();
            if r.name_a != r.name_b {
                what.push("step");
            }
            if r.input_differs {
                what.push("input");
            }
            if r.output_differs {
                what.push("output");
            }
            if r.tokens_a != r.tokens_b {
                what.push("tokens");
            }
            if r.cost_a != r.cost_b {
                what.push("cost");
            }
            vec![
                r.seq.to_string(),
                opt(r.name_a.clone()),
                opt(r.name_b.clone()),
                if what.is_empty() {
                    "same".into()
                } else {
                    what.join(",")
                },
                format!(
                    "{} / {}",
                    opt(dur(r.duration_ns_a)),
                    opt(dur(r.duration_ns_b))
                ),
                format!(
                    "{} / {}",
                    opt(r.tokens_a.map(|t| t.to_string())),
                    opt(r.tokens_b.map(|t| t.to_string()))
                ),
                format!(
                    "{} / {}",
                    opt(r.cost_a.map(|c| format!("${c:.4}"))),
                    opt(r.cost_b.map(|c| format!("${c:.4}")))
                ),
            ]
        })
        .collect();
    table(
        out,
        &[
            "SEQ",
            &format!("STEP ({a})"),
            &format!("STEP ({b})"),
            "DIFFERS IN",
            "TIME A / B",
            "TOKENS A / B",
            "COST A / B",
        ],
        tbl,
    );
    Ok(())
}

/// `omium replay <exec>`: the recorded LLM and tool calls a replay answers from, in order.
pub fn replay(
    out: &mut impl Write,
    as_json: bool,
    store: &Store,
    execution: &str,
) -> Result<(), Error> {
    let calls: Vec<_> = store
        .history(execution)?
        .into_iter()
        .filter(|c| c.metadata.contains_key("omium.call"))
        .collect();
    if as_json {
        let v: Vec<_> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                serde_json::json!({
                    "index": i, "seq": c.seq, "name": c.name, "call": c.metadata["omium.call"],
                    "request_hash": c.metadata.get("omium.request_hash"),
                    "side_effect": c.metadata.get("omium.side_effect").is_some_and(|s| s == "true"),
                    "checkpoint": c.id.to_string(), "bytes": c.raw_size,
                })
            })
            .collect();
        json(out, &v);
        return Ok(());
    }
    let rows = calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            vec![
                i.to_string(),
                c.seq.to_string(),
                c.name.clone(),
                if c.metadata
                    .get("omium.side_effect")
                    .is_some_and(|s| s == "true")
                {
                    "yes".into()
                } else {
                    "no".into()
                },
                c.metadata
                    .get("omium.request_hash")
                    .map(|h| h[..16].to_string())
                    .unwrap_or_default(),
                c.id.to_string(),
            ]
        })
        .collect();
    table(
        out,
        &[
            "CALL",
            "SEQ",
            "NAME",
            "SIDE EFFECT",
            "REQUEST",
            "CHECKPOINT",
        ],
        rows,
    );
    let _ = writeln!(
        out,
        "{} recorded calls; omium.replay({execution:?}) re-runs the workflow answering them from here",
        calls.len()
    );
    Ok(())
}
